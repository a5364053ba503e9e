// `ringside bench net`: iperf3 TCP throughput and a small-packet rate between two guests through
// netdom (TAP -> netfront -> netback + switch -> netfront -> TAP), and in the same run across a
// direct veth pair between two namespaces, the physical limit here. CPU is whole-machine busy
// time from /proc/stat (kernel, iperf3 and every domain), so the two paths are charged alike;
// the per-domain split says where ringside's time goes.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { CommandClient } from '../control/command-client.js';
import { fileURLToPath } from 'node:url';
import { pack } from 'msgpackr';
import { Hypervisor } from '../../domains/hv/hypervisor.js';
import { HypercallClient } from '../hypercall/client.js';
import { waitForSocket } from '../control/unix.js';
import { iperf3, type Iperf3End } from '../netns/iperf3.js';
import { hasTool, mustRun, runTool } from '../tools/run.js';

export interface NetBenchOptions {
  /** seconds per measurement (default 5) */
  seconds?: number;
  /** the dist/ directory holding domains/ and test-domains/ bundles (default: found from this module) */
  distDir?: string;
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
    /** grant-copy hypercall batches and netback rounds per GB */
    copyCallsPerGB: number;
    roundsPerGB: number;
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

function findDist(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'test-domains', 'nettest.js'))) return dir;
    if (existsSync(join(dir, 'dist', 'test-domains', 'nettest.js'))) return join(dir, 'dist');
    const up = dirname(dir);
    if (up === dir) throw new Error('bench net: dist/test-domains/nettest.js not found: run `npm run build`');
    dir = up;
  }
}

/** a JSON-lines control connection to a bench domain */
class Control {
  private readonly client: CommandClient;
  constructor(readonly domid: number, sock: Socket) {
    this.client = new CommandClient(sock);
  }
  async cmd(cmd: string, args: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    const r = await this.client.request(cmd, args);
    if (!r.ok) throw new Error(`bench domain ${this.domid} ${cmd}: ${String(r.error)}`);
    return r;
  }
  close(): void {
    this.client.close();
  }
}

const waitConnect = (path: string): Promise<Socket> => waitForSocket(path, 15_000, 'bench domain socket');

const cpuOf = (r: Record<string, unknown>) => {
  const c = r.cpu as { user: number; system: number };
  return (c.user + c.system) / 1e6;
};

export async function runNetBench(opts: NetBenchOptions = {}): Promise<NetBenchReport> {
  const secs = opts.seconds ?? 5;
  if (!Number.isInteger(secs) || secs < 1 || secs > 600) throw new RangeError('bench net: --seconds must be 1..600');
  const udpLen = opts.udpLen ?? 64;
  const log = opts.log ?? (() => {});
  if (process.getuid?.() !== 0) throw new Error('bench net needs root (network namespaces, TAP devices)');
  if (!(await hasTool('iperf3'))) throw new Error('bench net needs iperf3 (apt-get install iperf3)');
  const dist = opts.distDir ?? findDist();
  const tag = `${process.pid % 100000}`;
  const nsA = `rsb${tag}a`;
  const nsB = `rsb${tag}b`;
  const nsG1 = `rsb${tag}g1`;
  const nsG2 = `rsb${tag}g2`;
  const va = `rsb${tag}va`;
  const vb = `rsb${tag}vb`;
  const cleanups: (() => Promise<unknown>)[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'ringside-bench-'));
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

    // ---- ringside: hv in this process, netdom and two guests as processes ----
    log('bench net: starting hv, netdom and two guests');
    const hvLog: string[] = [];
    const hv = new Hypervisor({ bundleDirs: [join(dist, 'domains'), join(dist, 'test-domains')], log: (l) => hvLog.push(l) });
    const dom0 = new HypercallClient(hv.attachControlDomain());
    const ctls: Control[] = [];
    cleanups.push(async () => {
      // Killing a domain closes its TAP; the namespaces go below.
      for (const c of ctls) c.close();
      const gone = new Promise<void>((r) => {
        const t = setInterval(() => {
          if (hv.list().every((d) => d.domid === 0)) {
            clearInterval(t);
            r();
          }
        }, 10);
      });
      for (const d of hv.list()) if (d.domid !== 0) hv.kill(d, 'bench done');
      await gone;
      dom0.close();
    });
    const start = async (name: string, ioFrames: number): Promise<Control> => {
      const { result } = await dom0.call('domain_create', { name: `${name}${tag}`, kind: 'nettest', memoryMiB: 256, ioFrames, grantFrames: 8 });
      const control = join(dir, `${name}.sock`);
      await dom0.call('domain_unpause', { domid: result.domid, bootArgs: pack({ control }) });
      const c = new Control(result.domid, await waitConnect(control));
      ctls.push(c);
      return c;
    };
    const nd = await start('netdom', 1024);
    await nd.cmd('backInit', { opts: {} });
    const guests: Control[] = [];
    for (const [i, ns] of [[1, nsG1], [2, nsG2]] as const) {
      const g = await start(`guest${i}`, 1200);
      const mac = `00:16:3e:5b:00:0${i}`;
      const { info } = (await g.cmd('frontInit', { backendDomid: nd.domid, mac, txBuffers: 32 })) as { info: { queues: unknown; features: unknown } };
      await nd.cmd('backConnect', { params: { frontendDomid: g.domid, name: `vif${g.domid}.0`, mac, queues: info.queues, features: info.features, rate: null } });
      cleanups.push(() => sh('ip', ['netns', 'del', ns]));
      await g.cmd('tap', { netns: ns, mac, ip: `10.215.0.${i}/24`, mtu: 1500 });
      guests.push(g);
    }
    const g1 = { ns: nsG1, ip: '10.215.0.1' };
    const g2 = { ns: nsG2, ip: '10.215.0.2' };
    const before = await Promise.all([nd.cmd('backStats'), ...guests.map((g) => g.cmd('frontStats'))]);
    const hv0 = process.cpuUsage();
    const m0 = machineCpu();
    const rt = await iperfTcp(g1, g2, secs, 5211);
    const hv1 = process.cpuUsage(hv0);
    const after = await Promise.all([nd.cmd('backStats'), ...guests.map((g) => g.cmd('frontStats'))]);
    // the split is over the same window as the per-domain counters (set-up included)
    const window = machineCpu() - m0;
    const rp = await udpRate(g1, g2, secs, 5212, udpLen);
    const gb = rt.bytes / 1e9;
    const netdomCpu = cpuOf(after[0]) - cpuOf(before[0]);
    const guestCpu = cpuOf(after[1]) - cpuOf(before[1]) + cpuOf(after[2]) - cpuOf(before[2]);
    const hvCpu = (hv1.user + hv1.system) / 1e6;
    const ringside = {
      tcpGbps: rt.bps / 1e9,
      pps: rp,
      cpuSecPerGB: rt.cpu / gb,
      cpu: { hv: hvCpu, netdom: netdomCpu, guests: guestCpu, kernelAndIperf: Math.max(0, window - hvCpu - netdomCpu - guestCpu), total: window },
      copyCallsPerGB: (Number(after[0].copyCalls) - Number(before[0].copyCalls)) / gb,
      roundsPerGB: (Number(after[0].rounds) - Number(before[0].rounds)) / gb,
    };
    log(`bench net: ringside ${ringside.tcpGbps.toFixed(2)} Gbit/s, ${Math.round(rp)} pkt/s`);
    return {
      seconds: secs,
      udpLen,
      veth,
      ringside,
      ratio: { tcp: ringside.tcpGbps / veth.tcpGbps, pps: ringside.pps / veth.pps },
    };
  } finally {
    for (const c of cleanups.reverse()) await c().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
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
      `${r.ringside.copyCallsPerGB.toFixed(0)} grant-copy batches/GB, ${r.ringside.roundsPerGB.toFixed(0)} netback rounds/GB`,
  ].join('\n');
}
