// `ringside bench net`: iperf3 TCP throughput and a small-packet rate between two guests through
// netdom (TAP -> netfront -> netback + switch -> netfront -> TAP), and in the same run across a
// direct veth pair between two namespaces, the physical limit here. CPU is whole-machine busy
// time from /proc/stat (kernel, iperf3 and every domain), so the two paths are charged alike;
// the per-domain split says where ringside's time goes.
import { readFileSync } from 'node:fs';
import type { DomainRow } from '../control/wire.js';
import { iperf3, type Iperf3End } from '../netns/iperf3.js';
import { CLOCK_TICKS, cpuTicks } from '../tools/proc.js';
import { hasTool, mustRun, runTool } from '../tools/run.js';

export interface NetBenchOptions {
  /** seconds per measurement (default 5) */
  seconds?: number;
  /** brings up the system under test (the CLI does it with `ringside up` in a throwaway directory) */
  withSystem: WithSystem;
  /** UDP payload bytes for the small-packet rate (default 64) */
  udpLen?: number;
  log?: (line: string) => void;
}

export interface NetBenchPath {
  /** single-stream TCP, client -> server */
  tcpGbps: number;
  /** small UDP datagrams delivered per second */
  pps: number;
  /** whole-machine CPU seconds spent per GB moved in the TCP run */
  cpuSecPerGB: number;
}

export interface NetBenchReport {
  seconds: number;
  udpLen: number;
  veth: NetBenchPath;
  ringside: NetBenchPath & {
    /** CPU seconds during the TCP run, by who spent them */
    cpu: { hv: number; netdom: number; guests: number; kernelAndIperf: number; total: number };
    /** netdom's grant-copy batches (ring kicks and hypercalls) and copy ops per GB, as hv counted them */
    copyCallsPerGB: number;
    copyOpsPerGB: number;
  };
  ratio: { tcp: number; pps: number };
}

const sh = (cmd: string, args: string[]) => runTool(cmd, args, { timeoutMs: 60_000 });
const must = (cmd: string, args: string[]) => mustRun(cmd, args, { timeoutMs: 60_000 });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** busy CPU seconds of the whole machine so far */
function machineCpu(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return (total - idle) / 100;
}

type Endpoint = Iperf3End;

/** A TCP run, with the machine's busy CPU seconds over it (the retry waits before it are idle). */
async function iperfTcp(client: Endpoint, server: Endpoint, secs: number, port: number): Promise<{ bps: number; bytes: number; cpu: number }> {
  const c0 = machineCpu();
  const r = await iperf3(client, server, { seconds: secs, port, bind: true });
  return { bps: r.bps, bytes: r.bytes, cpu: machineCpu() - c0 };
}

async function udpRate(client: Endpoint, server: Endpoint, secs: number, port: number, len: number): Promise<number> {
  const r = await iperf3(client, server, { seconds: secs, port, bind: true, extra: ['-u', '-b', '0', '-l', String(len)] });
  const sum = (r.json.end as { sum: { packets: number; lost_packets: number; seconds: number } }).sum;
  return (sum.packets - sum.lost_packets) / (sum.seconds || secs);
}

/** What runNetBench needs of the system it measures, once `ringside up` has brought it up. */
export interface NetBenchSystem {
  list(): Promise<DomainRow[]>;
  hvPid: number;
}

/** Brings up a system from `files` (config file name -> text), runs `body` on it, and always takes it down. */
export type WithSystem = <T>(files: Record<string, string>, body: (sys: NetBenchSystem) => Promise<T>) => Promise<T>;

const NETDOM = 'benchnet';
const GUESTS = ['benchg1', 'benchg2'] as const;

/** The bench's system: a net driver domain and two guests, each vif a TAP with its address in its own namespace. */
export function netBenchFiles(netns: readonly [string, string], ips: readonly [string, string]): Record<string, string> {
  const head = '# written by ringside bench net; removed when it ends';
  const files: Record<string, string> = { [`${NETDOM}.cfg`]: [head, `name = "${NETDOM}"`, 'memory = 128', 'driver_domain = 1', 'role = "net"', ''].join('\n') };
  GUESTS.forEach((g, i) => {
    files[`${g}.cfg`] = [head, `name = "${g}"`, 'memory = 128', `vif = [ 'backend=${NETDOM}, mac=00:16:3e:5b:00:0${i + 1}, ip=${ips[i]}/24, netns=${netns[i]}' ]`, ''].join('\n');
  });
  return files;
}

/** CPU seconds of a process so far (0 once it is gone: the bench then reports what it saw) */
const cpuSec = (pid: number | null) => (pid === null ? 0 : (cpuTicks(pid) ?? 0) / CLOCK_TICKS);

/** Waits until the guest's TAP in `ns` carries `ip` (the guest configures it once its vif connects). */
async function tapReady(ns: string, ip: string): Promise<void> {
  const end = Date.now() + 60_000;
  for (;;) {
    const r = await sh('ip', ['-n', ns, '-o', 'addr', 'show', 'dev', 'eth0']);
    if (r.code === 0 && r.stdout.includes(`${ip}/`)) return;
    if (Date.now() > end) throw new Error(`the guest's TAP in ${ns} has no address ${ip} after 60 s: ${(r.stderr || r.stdout).trim()}`);
    await sleep(100);
  }
}

export async function runNetBench(opts: NetBenchOptions): Promise<NetBenchReport> {
  const secs = opts.seconds ?? 5;
  if (!Number.isInteger(secs) || secs < 1 || secs > 600) throw new RangeError('bench net: --seconds must be 1..600');
  const udpLen = opts.udpLen ?? 64;
  const log = opts.log ?? (() => {});
  if (process.getuid?.() !== 0) throw new Error('bench net needs root (network namespaces, TAP devices)');
  if (!(await hasTool('iperf3'))) throw new Error('bench net needs iperf3 (apt-get install iperf3)');
  const withSystem = opts.withSystem;
  const tag = `${process.pid % 100000}`;
  const nsA = `rsb${tag}a`;
  const nsB = `rsb${tag}b`;
  const nsG1 = `rsb${tag}g1`;
  const nsG2 = `rsb${tag}g2`;
  const va = `rsb${tag}va`;
  const vb = `rsb${tag}vb`;
  const cleanups: (() => Promise<unknown>)[] = [];
  try {
    // ---- baseline: a veth pair between two namespaces ----
    log('bench net: veth baseline');
    for (const ns of [nsA, nsB]) {
      await must('ip', ['netns', 'add', ns]);
      cleanups.push(() => sh('ip', ['netns', 'del', ns]));
    }
    await must('ip', ['link', 'add', va, 'netns', nsA, 'type', 'veth', 'peer', 'name', vb, 'netns', nsB]);
    await must('ip', ['-n', nsA, 'addr', 'add', '10.214.0.1/24', 'dev', va]);
    await must('ip', ['-n', nsB, 'addr', 'add', '10.214.0.2/24', 'dev', vb]);
    for (const [ns, d] of [[nsA, va], [nsB, vb]]) {
      await must('ip', ['-n', ns, 'link', 'set', 'dev', d, 'up']);
      await must('ip', ['-n', ns, 'link', 'set', 'dev', 'lo', 'up']);
    }
    const vA = { ns: nsA, ip: '10.214.0.1' };
    const vB = { ns: nsB, ip: '10.214.0.2' };
    const vt = await iperfTcp(vA, vB, secs, 5201);
    const vp = await udpRate(vA, vB, secs, 5202, udpLen);
    const veth: NetBenchPath = { tcpGbps: vt.bps / 1e9, pps: vp, cpuSecPerGB: vt.cpu / (vt.bytes / 1e9) };
    log(`bench net: veth ${veth.tcpGbps.toFixed(2)} Gbit/s, ${Math.round(vp)} pkt/s`);

    // ---- ringside: the same two endpoints as guests of a system `ringside up` brought up ----
    log('bench net: starting netdom and two guests (ringside up)');
    const ringside = await withSystem(netBenchFiles([nsG1, nsG2], ['10.215.0.1', '10.215.0.2']), async (sys) => {
      await tapReady(nsG1, '10.215.0.1');
      await tapReady(nsG2, '10.215.0.2');
      const sample = async () => {
        const rows = await sys.list();
        const row = (name: string) => {
          const r = rows.find((d) => d.name === name);
          if (!r) throw new Error(`bench net: the system has no domain ${name}`);
          return r;
        };
        const nd = row(NETDOM);
        return { hv: cpuSec(sys.hvPid), netdom: cpuSec(nd.pid), guests: GUESTS.reduce((a, g) => a + cpuSec(row(g).pid), 0), batches: nd.copyBatches, ops: nd.copyOps };
      };
      const g1 = { ns: nsG1, ip: '10.215.0.1' };
      const g2 = { ns: nsG2, ip: '10.215.0.2' };
      const before = await sample();
      const m0 = machineCpu();
      const rt = await iperfTcp(g1, g2, secs, 5211);
      const after = await sample();
      // the split is over the same window as the per-domain counters
      const window = machineCpu() - m0;
      const rp = await udpRate(g1, g2, secs, 5212, udpLen);
      const gb = rt.bytes / 1e9;
      const hv = after.hv - before.hv;
      const netdom = after.netdom - before.netdom;
      const guests = after.guests - before.guests;
      return {
        tcpGbps: rt.bps / 1e9,
        pps: rp,
        cpuSecPerGB: rt.cpu / gb,
        cpu: { hv, netdom, guests, kernelAndIperf: Math.max(0, window - hv - netdom - guests), total: window },
        copyCallsPerGB: (after.batches - before.batches) / gb,
        copyOpsPerGB: (after.ops - before.ops) / gb,
      };
    });
    log(`bench net: ringside ${ringside.tcpGbps.toFixed(2)} Gbit/s, ${Math.round(ringside.pps)} pkt/s`);
    return {
      seconds: secs,
      udpLen,
      veth,
      ringside,
      ratio: { tcp: ringside.tcpGbps / veth.tcpGbps, pps: ringside.pps / veth.pps },
    };
  } finally {
    for (const c of cleanups.reverse()) await c().catch(() => {});
  }
}

export function formatNetBench(r: NetBenchReport): string {
  const row = (name: string, p: NetBenchPath) =>
    `${name.padEnd(22)} ${p.tcpGbps.toFixed(2).padStart(8)} Gbit/s ${Math.round(p.pps).toString().padStart(10)} pkt/s ${p.cpuSecPerGB.toFixed(2).padStart(8)} CPU-s/GB`;
  const c = r.ringside.cpu;
  const pct = (x: number) => `${((100 * x) / (c.total || 1)).toFixed(0)}%`;
  return [
    `net bench: iperf3 TCP single stream ${r.seconds} s, UDP ${r.udpLen}-byte datagrams ${r.seconds} s`,
    row('veth pair (limit)', r.veth),
    row('ringside via netdom', r.ringside),
    `ratio to veth: TCP ${r.ratio.tcp.toFixed(3)}x, packets ${r.ratio.pps.toFixed(3)}x`,
    `ringside CPU in the TCP run (${c.total.toFixed(1)} s): hv ${pct(c.hv)}, netdom ${pct(c.netdom)}, guests ${pct(c.guests)}, kernel+iperf3 ${pct(c.kernelAndIperf)}; ` +
      `${r.ringside.copyCallsPerGB.toFixed(0)} grant-copy batches/GB (${r.ringside.copyOpsPerGB.toFixed(0)} ops/GB)`,
  ].join('\n');
}
