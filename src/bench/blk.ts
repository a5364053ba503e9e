// `ringside bench blk`: fio over NBD into a guest's disk, and in the same run fio against
// `nbdkit file` serving the same image (the peer to beat), job by job, as a ratio. The guest's
// export is served by blkfront -> blkif ring -> blkback in another process -> the image; nbdkit
// reads the file directly, so the ratio is what the driver-domain split costs.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { runTool } from '../tools/run.js';

export interface BlkBenchJob {
  name: string;
  rw: 'randread' | 'randwrite' | 'read' | 'write';
  bs: string;
  iodepth: number;
}

export const BLK_BENCH_JOBS: readonly BlkBenchJob[] = [
  { name: '4k randread qd1', rw: 'randread', bs: '4k', iodepth: 1 },
  { name: '4k randread qd32', rw: 'randread', bs: '4k', iodepth: 32 },
  { name: '4k randwrite qd1', rw: 'randwrite', bs: '4k', iodepth: 1 },
  { name: '4k randwrite qd32', rw: 'randwrite', bs: '4k', iodepth: 32 },
  { name: '1M seq read qd8', rw: 'read', bs: '1M', iodepth: 8 },
  { name: '1M seq write qd8', rw: 'write', bs: '1M', iodepth: 8 },
];

export interface FioFigures {
  iops: number;
  mbps: number;
  p50us: number;
  p99us: number;
}

export interface BlkBenchLine {
  job: BlkBenchJob;
  ringside: FioFigures;
  nbdkit: FioFigures;
  /** ringside IOPS / nbdkit IOPS */
  ratio: number;
}

export interface BlkBenchReport {
  image: string;
  sizeBytes: number;
  runtimeSec: number;
  lines: BlkBenchLine[];
}

export interface BlkBenchOptions {
  /** Unix socket of the guest's NBD export (served through blkfront/blkback) */
  guestSocket: string;
  /** the raw image behind that disk; nbdkit serves the same file */
  image: string;
  /** bytes of the disk the jobs touch (from offset 0) */
  sizeBytes: number;
  /** where nbdkit's socket goes */
  workdir: string;
  /** seconds per fio run (default 5) */
  runtimeSec?: number;
  jobs?: readonly BlkBenchJob[];
  /** progress lines */
  progress?: (line: string) => void;
}

const uri = (sock: string) => `nbd+unix:///?socket=${sock}`;

/** One fio job over NBD against the export at `sock` (no peer run). */
export async function fio(sock: string, job: BlkBenchJob, sizeBytes: number, runtimeSec: number): Promise<FioFigures> {
  const args = [
    `--name=${job.rw}`, '--ioengine=nbd', `--uri=${uri(sock)}`, `--rw=${job.rw}`, `--bs=${job.bs}`, `--iodepth=${job.iodepth}`,
    // one second unmeasured first: JIT warm-up in the domains, so the first job on a path is not
    // charged for it (both sides of every ratio get the same)
    `--size=${sizeBytes}`, '--time_based', `--runtime=${runtimeSec}`, '--ramp_time=1', '--percentile_list=50:99',
    '--randrepeat=0', '--output-format=json',
  ];
  const r = await runTool('fio', args, { timeoutMs: (runtimeSec + 60) * 1000 });
  if (r.code !== 0) throw new Error(`fio ${job.name} on ${sock} failed: ${r.stderr.trim() || r.spawnError || `exit ${r.code}${r.signal ? ` (${r.signal})` : ''}`}`);
  try {
    return parseFio(r.stdout, job.rw);
  } catch (e) {
    throw new Error(`fio ${job.name}: cannot read its JSON output: ${(e as Error).message}`);
  }
}

interface FioSide {
  iops: number;
  bw_bytes: number;
  clat_ns?: { percentile?: Record<string, number> };
}

/** the figures of fio's JSON report for the direction `rw` exercises */
export function parseFio(stdout: string, rw: BlkBenchJob['rw']): FioFigures {
  const j = JSON.parse(stdout.slice(stdout.indexOf('{'))) as { jobs: ({ read: FioSide; write: FioSide; error: number })[] };
  const job = j.jobs[0];
  if (!job) throw new Error('no job in the report');
  if (job.error) throw new Error(`fio reported error ${job.error}`);
  const side = rw === 'randread' || rw === 'read' ? job.read : job.write;
  const pct = side.clat_ns?.percentile ?? {};
  const p = (k: string) => (pct[k] ?? 0) / 1000;
  return { iops: side.iops, mbps: side.bw_bytes / 1e6, p50us: p('50.000000'), p99us: p('99.000000') };
}

async function startNbdkit(image: string, sock: string): Promise<ChildProcess> {
  if (existsSync(sock)) rmSync(sock);
  const child = spawn('nbdkit', ['-f', '--exit-with-parent', '-U', sock, 'file', `file=${image}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
  const end = Date.now() + 10_000;
  while (!existsSync(sock)) {
    if (child.exitCode !== null) throw new Error(`nbdkit exited: ${stderr.trim()}`);
    if (Date.now() > end) {
      child.kill('SIGKILL');
      throw new Error(`nbdkit did not create ${sock}: ${stderr.trim()}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return child;
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  await gone;
}

/**
 * Runs every job against the guest's export, then the same job against nbdkit on the same image
 * (never both at once: they share the file and the CPUs).
 */
export async function benchBlk(opts: BlkBenchOptions): Promise<BlkBenchReport> {
  const runtimeSec = opts.runtimeSec ?? 5;
  const jobs = opts.jobs ?? BLK_BENCH_JOBS;
  const progress = opts.progress ?? (() => undefined);
  const sock = join(opts.workdir, `nbdkit-bench-${process.pid}.sock`);
  const lines: BlkBenchLine[] = [];
  const nbdkit = await startNbdkit(opts.image, sock);
  try {
    for (const job of jobs) {
      progress(`bench blk: ${job.name}: ringside…`);
      const ours = await fio(opts.guestSocket, job, opts.sizeBytes, runtimeSec);
      progress(`bench blk: ${job.name}: nbdkit…`);
      const peer = await fio(sock, job, opts.sizeBytes, runtimeSec);
      lines.push({ job, ringside: ours, nbdkit: peer, ratio: peer.iops > 0 ? ours.iops / peer.iops : 0 });
    }
  } finally {
    await stop(nbdkit);
    if (existsSync(sock)) rmSync(sock);
  }
  return { image: opts.image, sizeBytes: opts.sizeBytes, runtimeSec, lines };
}

/** The human table; `--json` prints the report itself. */
export function formatBlkBench(r: BlkBenchReport): string {
  const head = ['job', 'ringside IOPS', 'MB/s', 'p50 us', 'p99 us', 'nbdkit IOPS', 'MB/s', 'p50 us', 'p99 us', 'ratio'];
  const rows = r.lines.map((l) => [
    l.job.name,
    l.ringside.iops.toFixed(0), l.ringside.mbps.toFixed(1), l.ringside.p50us.toFixed(0), l.ringside.p99us.toFixed(0),
    l.nbdkit.iops.toFixed(0), l.nbdkit.mbps.toFixed(1), l.nbdkit.p50us.toFixed(0), l.nbdkit.p99us.toFixed(0),
    `${l.ratio.toFixed(2)}x`,
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const fmt = (row: string[]) => row.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ');
  return [
    `blk: fio over NBD, guest disk (blkfront -> blkif -> blkback -> ${r.image}) vs nbdkit file on the same image; ${r.runtimeSec}s per run`,
    fmt(head),
    ...rows.map(fmt),
  ].join('\n');
}
