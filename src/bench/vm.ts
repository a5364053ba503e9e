// `ringside bench vm`: one VM, booted three ways on the same image, running the same fio jobs inside
// the guest: its disk served by ringside's blkdom over vhost-user, by qemu-storage-daemon's
// vhost-user-blk export (the peer written by QEMU's authors), and by QEMU's built-in virtio-blk.
// The guest, its kernel and the accelerator are the same each time, so the ratios are the backends'.
import { closeSync, openSync, writeSync, ftruncateSync } from 'node:fs';
import { join } from 'node:path';
import { VmConsole } from '../vm/console.js';
import { bootQemu, StorageDaemon, type QemuVm } from '../vm/launch.js';
import type { VmImage } from '../vm/image.js';
import { BLK_BENCH_JOBS, parseFio, type BlkBenchJob, type FioFigures } from './blk.js';

/** bench blk's jobs, less the 1M sequential write: 4k random at QD1 and QD32 both ways, 1M sequential read */
export const VM_BENCH_JOBS: readonly BlkBenchJob[] = BLK_BENCH_JOBS.filter((j) => j.rw !== 'write');

export const VM_BENCH_WAYS = ['ringside', 'qsd', 'builtin'] as const;
export type VmBenchWay = (typeof VM_BENCH_WAYS)[number];

export const VM_BENCH_SHAPE = { memoryMiB: 256, vcpus: 2 } as const;

/** What the caller starts for the ringside way: a system with blkdom and the VM on `disk`. */
export type StartRingsideVm = (disk: string) => Promise<{ consoleSocket: string; stop(): Promise<void> }>;

export interface VmBenchOptions {
  image: VmImage;
  workdir: string;
  diskMiB: number;
  runtimeSec: number;
  jobs: readonly BlkBenchJob[];
  ringside: StartRingsideVm;
  progress: (line: string) => void;
}

export interface VmBenchLine {
  job: BlkBenchJob;
  figures: Record<VmBenchWay, FioFigures>;
  /** ringside IOPS over qemu-storage-daemon's and over built-in virtio-blk's */
  vsQsd: number;
  vsBuiltin: number;
}

export interface VmBenchReport {
  accel: 'tcg';
  diskMiB: number;
  runtimeSec: number;
  bootMs: Record<VmBenchWay, number>;
  lines: VmBenchLine[];
}

/** Every byte written, so a read job reads data, not holes the filesystem answers without I/O. */
function prefill(path: string, mib: number): void {
  const fd = openSync(path, 'w');
  try {
    ftruncateSync(fd, mib << 20);
    const chunk = Buffer.alloc(1 << 20);
    for (let i = 0; i < chunk.length; i += 4) chunk.writeUInt32LE((i * 2654435761) >>> 0, i);
    for (let m = 0; m < mib; m++) writeSync(fd, chunk, 0, chunk.length, m << 20);
  } finally {
    closeSync(fd);
  }
}

/** One job inside the guest; fio's JSON comes back over the console. */
async function guestFio(con: VmConsole, job: BlkBenchJob, diskMiB: number, runtimeSec: number): Promise<FioFigures> {
  const cmd = [
    'fio', '--name=b', '--filename=/dev/vda', `--rw=${job.rw}`, `--bs=${job.bs}`, `--iodepth=${job.iodepth}`, '--ioengine=libaio', '--direct=1',
    `--size=${diskMiB}M`, '--time_based', `--runtime=${runtimeSec}`, '--ramp_time=1', '--percentile_list=50:99', '--output-format=json',
  ].join(' ');
  const r = await con.run(cmd, { timeoutMs: (runtimeSec + 120) * 1000 });
  if (r.code !== 0) throw new Error(`fio ${job.name} in the guest exited with ${r.code}: ${r.output.slice(-500)}`);
  return parseFio(r.output.slice(r.output.indexOf('{'), r.output.lastIndexOf('}') + 1), job.rw);
}

async function runJobs(con: VmConsole, o: VmBenchOptions, way: VmBenchWay, out: Map<BlkBenchJob, Partial<Record<VmBenchWay, FioFigures>>>): Promise<void> {
  for (const job of o.jobs) {
    o.progress(`bench vm: ${way}: ${job.name}`);
    const f = await guestFio(con, job, o.diskMiB, o.runtimeSec);
    out.set(job, { ...out.get(job), [way]: f });
  }
}

export async function runVmBench(o: VmBenchOptions): Promise<VmBenchReport> {
  const disk = join(o.workdir, 'vm-bench.img');
  prefill(disk, o.diskMiB);
  const out = new Map<BlkBenchJob, Partial<Record<VmBenchWay, FioFigures>>>();
  const bootMs = {} as Record<VmBenchWay, number>;
  const shape = { image: o.image, ...VM_BENCH_SHAPE };

  o.progress('bench vm: ringside: blkdom serves the disk over vhost-user to a VM dom0 runs');
  const started = Date.now();
  const sys = await o.ringside(disk);
  try {
    const con = await VmConsole.connect(sys.consoleSocket);
    try {
      await con.waitReady();
      bootMs.ringside = Date.now() - started;
      await runJobs(con, o, 'ringside', out);
    } finally {
      con.close();
    }
  } finally {
    await sys.stop();
  }

  o.progress('bench vm: qsd: qemu-storage-daemon exports the same image as vhost-user-blk');
  const socket = join(o.workdir, 'qsd.sock');
  const qsd = await StorageDaemon.start({ image: disk, socket, queues: VM_BENCH_SHAPE.vcpus });
  try {
    await withVm(bootQemu({ ...shape, disks: [{ kind: 'vhost-user', socket, queues: VM_BENCH_SHAPE.vcpus }] }), async (vm) => {
      bootMs.qsd = vm.bootMs;
      await runJobs(vm.console, o, 'qsd', out);
    });
  } finally {
    await qsd.kill();
  }

  o.progress("bench vm: builtin: QEMU's own virtio-blk on the same image");
  await withVm(bootQemu({ ...shape, disks: [{ kind: 'file', path: disk }] }), async (vm) => {
    bootMs.builtin = vm.bootMs;
    await runJobs(vm.console, o, 'builtin', out);
  });

  const lines = o.jobs.map((job): VmBenchLine => {
    const figures = out.get(job) as Record<VmBenchWay, FioFigures>;
    return { job, figures, vsQsd: figures.ringside.iops / figures.qsd.iops, vsBuiltin: figures.ringside.iops / figures.builtin.iops };
  });
  return { accel: 'tcg', diskMiB: o.diskMiB, runtimeSec: o.runtimeSec, bootMs, lines };
}

async function withVm(booting: Promise<QemuVm>, body: (vm: QemuVm) => Promise<void>): Promise<void> {
  const vm = await booting;
  try {
    await body(vm);
  } finally {
    await vm.close();
  }
}

export function formatVmBench(r: VmBenchReport): string {
  const head = ['job', 'ringside IOPS', 'p99 us', 'qsd IOPS', 'p99 us', 'built-in IOPS', 'p99 us', 'vs qsd', 'vs built-in'];
  const rows = r.lines.map((l) => [
    l.job.name,
    l.figures.ringside.iops.toFixed(0), l.figures.ringside.p99us.toFixed(0),
    l.figures.qsd.iops.toFixed(0), l.figures.qsd.p99us.toFixed(0),
    l.figures.builtin.iops.toFixed(0), l.figures.builtin.p99us.toFixed(0),
    `${l.vsQsd.toFixed(2)}x`, `${l.vsBuiltin.toFixed(2)}x`,
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const fmt = (row: string[]) => row.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ');
  return [
    `vm: fio inside one ${VM_BENCH_SHAPE.vcpus}-vCPU ${VM_BENCH_SHAPE.memoryMiB} MiB guest under ${r.accel.toUpperCase()}, ${r.diskMiB} MiB disk, ${r.runtimeSec}s per job; ` +
      `boot ${r.bootMs.ringside} / ${r.bootMs.qsd} / ${r.bootMs.builtin} ms (ringside blkdom / qemu-storage-daemon / built-in)`,
    fmt(head),
    ...rows.map(fmt),
  ].join('\n');
}
