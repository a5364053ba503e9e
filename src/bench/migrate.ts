// `ringside bench migrate`: one VM shape, migrated twice (idle, then under a write loop on its disk)
// two ways in one run: with QEMU's built-in virtio-blk and virtio-net (the baseline: two QEMUs on
// this machine and nothing else), and with its disk and NIC on ringside's blkdom and netdom between
// two ringside hosts. Besides what QEMU reports, the guest ticks on its serial console every 10 ms
// and the host stamps each tick as it arrives, from the source's console and then the
// destination's: the longest silence is the downtime the guest saw, devices' hand-over included.
import { join } from 'node:path';
import { VmConsole } from '../vm/console.js';
import { bootQemu, type QemuVm } from '../vm/launch.js';
import { LOCAL_LINK, migrate, type MigrationSummary } from '../vm/migration.js';
import type { VmImage } from '../vm/image.js';

export const MIGRATE_BENCH_SHAPE = { memoryMiB: 256, vcpus: 1, diskMiB: 64, mac: '52:54:00:12:34:56' } as const;
export const MIGRATE_BENCH_WORKLOADS = ['idle', 'write'] as const;
export type MigrateWorkload = (typeof MIGRATE_BENCH_WORKLOADS)[number];
export const MIGRATE_BENCH_WAYS = ['builtin', 'ringside'] as const;
export type MigrateWay = (typeof MIGRATE_BENCH_WAYS)[number];

const TICK = 'RSTICK';
/** the guest's tick loop and write loop; each leaves its pid in /tmp */
const TICKER = `(while :; do echo ${TICK}; usleep 10000; done) & echo $! > /tmp/tick.pid`;
const WRITER = `(i=0; while :; do dd if=/dev/urandom of=/dev/vda bs=65536 count=16 seek=$(( (i % 64) * 16 )) oflag=direct conv=fsync 2>/dev/null || echo WERR; i=$((i+1)); done) > /dev/null 2>&1 & echo $! > /tmp/write.pid`;

/** A VM one way can move: where its console is, and how to send it to the other side. */
export interface MigratingVm {
  consolePath: string;
  /** readies the destination and starts the move; `destConsole` is where the VM's console will be once it has moved */
  move(): Promise<{ destConsole: string; done: Promise<MigrationSummary> }>;
  stop(): Promise<void>;
}

export interface MigrateFigures extends MigrationSummary {
  /** the longest gap between two ticks the host received while the migration ran */
  guestGapMs: number;
}

export interface MigrateBenchLine {
  workload: MigrateWorkload;
  /** each figure's median over the runs */
  figures: Record<MigrateWay, MigrateFigures>;
  runs: Record<MigrateWay, MigrateFigures[]>;
  /** ringside over built-in: total time, QEMU's downtime, the guest-seen gap */
  totalRatio: number;
  downtimeRatio: number;
  gapRatio: number;
}

export interface MigrateBenchReport {
  accel: 'tcg';
  memoryMiB: number;
  /** moves per way and workload */
  runs: number;
  lines: MigrateBenchLine[];
  goal: { downtimeRatio: number; totalRatio: number };
}

/** Tick arrival times, stamped by the host as each console chunk arrives. */
class TickLog {
  readonly at: number[] = [];
  watch(con: VmConsole): () => void {
    let carry = '';
    return con.onOutput((chunk) => {
      const now = performance.now();
      const text = carry + chunk;
      const n = text.split(TICK).length - 1;
      carry = text.slice(Math.max(0, text.length - TICK.length + 1));
      if (text.endsWith(TICK)) carry = '';
      for (let i = 0; i < n; i++) this.at.push(now);
    });
  }
  /** the longest silence within [from, to] */
  longestGap(from: number, to: number): number {
    const t = this.at.filter((x) => x >= from && x <= to).sort((a, b) => a - b);
    let gap = 0;
    for (let i = 1; i < t.length; i++) gap = Math.max(gap, (t[i] as number) - (t[i - 1] as number));
    return Math.round(gap);
  }
}

/** Moves the VM once while ticks are stamped; returns QEMU's figures and the gap, and the console it now has. */
async function measuredMove(vm: MigratingVm, con: VmConsole, ticks: TickLog): Promise<{ figures: MigrateFigures; con: VmConsole }> {
  const stopSrc = ticks.watch(con);
  const started = performance.now();
  const { destConsole, done } = await vm.move();
  const dest = VmConsole.connect(destConsole, { timeoutMs: 60_000 }).then((c) => (ticks.watch(c), c));
  let summary: MigrationSummary;
  let there: VmConsole;
  try {
    summary = await done;
    there = await dest;
  } catch (e) {
    void dest.then((c) => c.close(), () => undefined);
    throw e;
  } finally {
    stopSrc();
  }
  // the gap ends with the first tick at the destination: wait for a few
  const seen = ticks.at.length;
  await there.waitFor('ticks from the destination', () => (ticks.at.length >= seen + 20 ? true : undefined), 60_000);
  con.close();
  return { figures: { ...summary, guestGapMs: ticks.longestGap(started, performance.now()) }, con: there };
}

/** Each figure's median over the runs (the throttle's highest): one slow move on a shared machine does not make the line. */
export function medianFigures(runs: readonly MigrateFigures[]): MigrateFigures {
  if (runs.length === 0) throw new Error('no runs to take the median of');
  const med = (k: 'totalMs' | 'downtimeMs' | 'setupMs' | 'transferredBytes' | 'rounds' | 'guestGapMs') => {
    const v = runs.map((r) => r[k]).sort((a, b) => a - b);
    return v.length % 2 ? (v[v.length >> 1] as number) : ((v[v.length / 2 - 1] as number) + (v[v.length / 2] as number)) / 2;
  };
  return {
    totalMs: med('totalMs'), downtimeMs: med('downtimeMs'), setupMs: med('setupMs'), transferredBytes: med('transferredBytes'), rounds: med('rounds'), guestGapMs: med('guestGapMs'),
    throttlePct: Math.max(...runs.map((r) => r.throttlePct)), convergence: runs[0]!.convergence,
  };
}

/** One way: boot, start the ticker, move idle `runs` times, start the writer, move under it `runs` times, check the writer lived through it all. */
async function runWay(way: MigrateWay, vm: MigratingVm, runs: number, progress: (l: string) => void): Promise<Record<MigrateWorkload, MigrateFigures[]>> {
  let con = await VmConsole.connect(vm.consolePath, { timeoutMs: 60_000 });
  await con.waitReady();
  const started = await con.run(TICKER);
  if (started.code !== 0) throw new Error(`the guest's ticker did not start: ${started.output.slice(-300)}`);
  const ticks = new TickLog();
  const out: Partial<Record<MigrateWorkload, MigrateFigures[]>> = {};
  for (const w of MIGRATE_BENCH_WORKLOADS) {
    if (w === 'write') {
      const r = await con.run(WRITER);
      if (r.code !== 0) throw new Error(`the guest's write loop did not start: ${r.output.slice(-300)}`);
    }
    out[w] = [];
    for (let i = 0; i < runs; i++) {
      progress(`bench migrate: ${way}: ${w} (${i + 1} of ${runs})`);
      const m = await measuredMove(vm, con, ticks);
      con = m.con;
      out[w].push(m.figures);
    }
  }
  const alive = await con.run('kill $(cat /tmp/write.pid) && kill $(cat /tmp/tick.pid)');
  con.close();
  if (alive.code !== 0) throw new Error(`${way}: the guest's write loop did not survive the moves: ${alive.output.slice(-300)}`);
  return out as Record<MigrateWorkload, MigrateFigures[]>;
}

export interface MigrateBenchOptions {
  image: VmImage;
  workdir: string;
  /** the ringside way: two hosts with the VM on the first, its disk on `disk` */
  ringside: (disk: string) => Promise<MigratingVm>;
  runs: number;
  progress: (line: string) => void;
}

/** QEMU alone: a source and, per move, a fresh destination waiting on a Unix socket. */
async function builtinVm(o: MigrateBenchOptions, disk: string): Promise<MigratingVm> {
  const boot = (incoming?: string) =>
    bootQemu({
      image: o.image,
      memoryMiB: MIGRATE_BENCH_SHAPE.memoryMiB,
      vcpus: MIGRATE_BENCH_SHAPE.vcpus,
      sharedMemory: true,
      disks: [{ kind: 'file', path: disk, format: 'raw' }],
      extraArgs: ['-netdev', 'user,id=bn0', '-device', `virtio-net-pci,netdev=bn0,mac=${MIGRATE_BENCH_SHAPE.mac}`],
      waitReady: false,
      ...(incoming !== undefined ? { incoming } : {}),
    });
  let cur: QemuVm = await boot();
  let n = 0;
  const vm: MigratingVm = {
    consolePath: cur.consolePath,
    async move() {
      const incoming = join(o.workdir, `incoming-${n++}.sock`);
      const d = await boot(incoming);
      // the console client bootQemu holds would keep the bench's out (QEMU serves one at a time)
      d.console.close();
      const done = (async () => {
        try {
          const s = await migrate(cur.qmp, `unix:${incoming}`, LOCAL_LINK);
          const old = cur;
          cur = d;
          vm.consolePath = d.consolePath;
          await old.kill();
          return s;
        } catch (e) {
          await d.kill();
          throw e;
        }
      })();
      return { destConsole: d.consolePath, done };
    },
    stop: async () => cur.kill(),
  };
  cur.console.close();
  return vm;
}

/** Both ways, one after the other on the same image, and their ratios. */
export async function runMigrateBench(o: MigrateBenchOptions, disk: string): Promise<MigrateBenchReport> {
  const figures: Partial<Record<MigrateWay, Record<MigrateWorkload, MigrateFigures[]>>> = {};
  for (const way of MIGRATE_BENCH_WAYS) {
    o.progress(`bench migrate: ${way}: starting the VM`);
    const vm = way === 'builtin' ? await builtinVm(o, disk) : await o.ringside(disk);
    try {
      figures[way] = await runWay(way, vm, o.runs, o.progress);
    } finally {
      await vm.stop();
    }
  }
  const f = figures as Record<MigrateWay, Record<MigrateWorkload, MigrateFigures[]>>;
  // a figure of 0 ms (QEMU rounds) counts as 1 ms, so a ratio is always a number
  const ratio = (a: number, b: number) => Math.max(a, 1) / Math.max(b, 1);
  return {
    accel: 'tcg',
    memoryMiB: MIGRATE_BENCH_SHAPE.memoryMiB,
    runs: o.runs,
    goal: { downtimeRatio: 1.2, totalRatio: 1.5 },
    lines: MIGRATE_BENCH_WORKLOADS.map((workload) => {
      const b = medianFigures(f.builtin[workload]);
      const r = medianFigures(f.ringside[workload]);
      return { workload, figures: { builtin: b, ringside: r }, runs: { builtin: f.builtin[workload], ringside: f.ringside[workload] }, totalRatio: ratio(r.totalMs, b.totalMs), downtimeRatio: ratio(r.downtimeMs, b.downtimeMs), gapRatio: ratio(r.guestGapMs, b.guestGapMs) };
    }),
  };
}

export function formatMigrateBench(r: MigrateBenchReport): string {
  const rows = [`live migration of a ${r.memoryMiB} MiB TCG VM on this machine, median of ${r.runs} move(s) each: QEMU's built-in virtio-blk/net vs ringside's blkdom/netdom over vhost-user`];
  rows.push('workload  way        total ms  downtime ms  guest gap ms  rounds  MiB sent');
  for (const l of r.lines) {
    for (const way of MIGRATE_BENCH_WAYS) {
      const x = l.figures[way];
      rows.push(`${l.workload.padEnd(9)} ${way.padEnd(10)} ${String(x.totalMs).padStart(8)} ${String(x.downtimeMs).padStart(12)} ${String(x.guestGapMs).padStart(13)} ${String(x.rounds).padStart(7)} ${(x.transferredBytes / (1 << 20)).toFixed(1).padStart(9)}`);
    }
    rows.push(`${l.workload.padEnd(9)} ratio      ${l.totalRatio.toFixed(2).padStart(7)}x ${l.downtimeRatio.toFixed(2).padStart(11)}x ${l.gapRatio.toFixed(2).padStart(12)}x   (goal: total <= ${r.goal.totalRatio}x, downtime <= ${r.goal.downtimeRatio}x)`);
  }
  return rows.join('\n');
}
