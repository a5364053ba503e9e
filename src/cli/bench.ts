// `ringside bench ring|blk|net|iommu`: the measurements, each one self-contained. Progress goes to
// stderr so stdout stays the table (or, with --json, one JSON document a script can read).
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ringBenchMain } from '../bench/ring/index.js';
import { BLK_BENCH_JOBS, benchBlk, fio, formatBlkBench, type BlkBenchJob, type FioFigures } from '../bench/blk.js';
import { runNetBench, formatNetBench, type WithSystem } from '../bench/net.js';
import { runIommuBench, formatIommuBench } from '../bench/iommu.js';
import { runBlockPathBench, type BlockPathBench } from '../bench/blk-path.js';
import { up, down } from './lifecycle.js';
import { hasTool } from '../tools/run.js';
import { VM_BENCH_JOBS, VM_BENCH_SHAPE, runVmBench, formatVmBench } from '../bench/vm.js';
import { buildVmImage } from '../vm/image.js';
import { VM_CMDLINE } from '../vm/init.js';
import { vmConsoleSocket } from '../control/paths.js';
import { statePaths } from './paths.js';
import { control } from './control.js';
import { MIGRATE_BENCH_SHAPE, formatMigrateBench, runMigrateBench } from '../bench/migrate.js';
import { CliError } from './errors.js';

export const BENCH_USAGE = `usage: ringside bench <ring|blk|net|iommu|vm|migrate> [options]

  ring [options] [--json] [--html FILE]   ring throughput lab: TypeScript ring vs Xen's ring.h in C and
                                          Node transports ('ringside bench ring --help' lists options)
  blk [--seconds N] [--jobs LIST] [--path file|device|both] [--timeout S] [--json]
                                          fio over NBD into a guest disk served by a blk driver domain,
                                          vs nbdkit on the same image; starts and stops its own system
  net [--seconds N] [--timeout S] [--json]
                                          iperf3 between two guests through a net driver domain vs a
                                          veth pair (needs root and iperf3); starts and stops its own system
  iommu [--duration MS] [--fio S] [--json]
                                          VT-d translation rates, the block path through the NVMe
                                          model + IOMMU vs the same reads straight from the file, and
                                          fio over NBD on both blk paths (as blk --path both)
  vm [--seconds N] [--jobs LIST] [--image DIR] [--timeout S] [--json]
                                          fio inside one VM booted three ways on the same image: disk
                                          from ringside's blkdom over vhost-user, from qemu-storage-daemon
                                          over vhost-user, and QEMU's built-in virtio-blk
  migrate [--runs N] [--image DIR] [--timeout S] [--json]
                                          one VM live-migrated idle and under a write loop, with QEMU's
                                          built-in virtio-blk/net between two QEMUs and with blkdom/netdom
                                          between two ringside hosts: total, downtime, guest-seen gap

  --seconds N     blk: seconds per fio run (1..600, default 5); net: seconds per measurement (1..600, default 5)
  --jobs LIST     blk: comma-separated jobs (default all): ${BLK_BENCH_JOBS.map(jobSlug).join(', ')}
                  vm: ${VM_BENCH_JOBS.map(jobSlug).join(', ')}
  --runs N        migrate: moves per way and workload, the median reported (1..50, default 5)
  --image DIR     vm, migrate: where the guest kernel and initramfs are built or found (default .ringside/vm-image)
  --path P        blk: file (raw image served by blkback), device (NVMe controller behind the IOMMU)
                  or both, side by side with their ratio (default file)
  --timeout S     blk, iommu --fio, vm, migrate: seconds the bench system may take to come up (1..3600, default 60)
  --duration MS   iommu: time per figure (20..60000; default 300 for translation, 1000 for the block path)
  --fio S         iommu: seconds per fio run over NBD, file path vs device path (0..600, default 3; 0: not run)`;

type Options = NonNullable<ParseArgsConfig['options']>;

/** A job's name as typed on the command line: '4k randread qd1' -> '4k-randread-qd1'. */
export function jobSlug(j: BlkBenchJob): string {
  return j.name.toLowerCase().replace(/\s+/g, '-');
}

function usageError(sub: string, problem: string): CliError {
  return new CliError(`ringside bench ${sub}: ${problem}\n\n${BENCH_USAGE}`, 2);
}

function parse(sub: string, args: string[], options: Options) {
  let r;
  try {
    r = parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (e) {
    // node's message names the option ("Unknown option '--foo'", "Option '--seconds <value>' argument missing")
    throw usageError(sub, (e as Error).message);
  }
  if (r.positionals.length > 0) throw usageError(sub, `unexpected argument '${r.positionals[0]}'`);
  return r.values;
}

/** A whole number in [min, max] from option `name`, or a usage error that says what is allowed. */
function intOption(sub: string, name: string, raw: string | boolean | (string | boolean)[] | undefined, min: number, max: number, dflt: number): number {
  if (raw === undefined) return dflt;
  const text = String(raw);
  if (!/^\d+$/.test(text)) throw usageError(sub, `--${name} must be a whole number from ${min} to ${max}, got '${text}'`);
  const n = Number(text);
  if (n < min || n > max) throw usageError(sub, `--${name} must be from ${min} to ${max}, got ${n}`);
  return n;
}

/** `--jobs` entries by slug or by the name as printed (case-insensitive), each at most once. */
export function selectBlkJobs(list: string, known: readonly BlkBenchJob[] = BLK_BENCH_JOBS, sub = 'blk'): BlkBenchJob[] {
  const items = list.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (items.length === 0) throw usageError(sub, `--jobs needs at least one job: ${known.map(jobSlug).join(', ')}`);
  const out: BlkBenchJob[] = [];
  for (const item of items) {
    const key = item.toLowerCase().replace(/\s+/g, '-');
    const job = known.find((j) => jobSlug(j) === key);
    if (!job) throw usageError(sub, `--jobs: unknown job '${item}'; the jobs are ${known.map(jobSlug).join(', ')}`);
    if (!out.includes(job)) out.push(job);
  }
  return out;
}

const progress = (line: string): void => {
  process.stderr.write(`ringside: ${line}\n`);
};

export async function benchCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  switch (sub) {
    case 'ring':
      // the lab parses its own options and prints its own usage errors (exit 2)
      return ringBenchMain(rest);
    case 'blk':
      return benchBlkCommand(rest);
    case 'net':
      return benchNetCommand(rest);
    case 'iommu':
      return benchIommuCommand(rest);
    case 'vm':
      return benchVmCommand(rest);
    case 'migrate':
      return benchMigrateCommand(rest);
    case undefined:
      throw new CliError(`ringside bench: say what to measure: ring, blk, net, iommu, vm or migrate\n\n${BENCH_USAGE}`, 2);
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(BENCH_USAGE + '\n');
      return 0;
    default:
      throw new CliError(`ringside bench: unknown benchmark '${sub}'; choose ring, blk, net, iommu, vm or migrate\n\n${BENCH_USAGE}`, 2);
  }
}

// ---- vm ----

/** The VM's disk in `bench vm`; the jobs touch all of it. */
const VM_BENCH_DISK_MIB = 128;

async function benchVmCommand(args: string[]): Promise<number> {
  const v = parse('vm', args, { seconds: { type: 'string' }, jobs: { type: 'string' }, image: { type: 'string' }, timeout: { type: 'string' }, json: { type: 'boolean', default: false } });
  const runtimeSec = intOption('vm', 'seconds', v.seconds, 1, 600, 5);
  const timeoutS = intOption('vm', 'timeout', v.timeout, 1, 3600, 120);
  const jobs = v.jobs === undefined ? [...VM_BENCH_JOBS] : selectBlkJobs(String(v.jobs), VM_BENCH_JOBS, 'vm');
  for (const tool of ['qemu-system-x86_64', 'qemu-storage-daemon']) {
    if (!(await hasTool(tool))) throw new CliError(`ringside bench vm: needs ${tool} on PATH (apt-get install qemu-system-x86)`);
  }
  const image = await buildVmImage({ outDir: String(v.image ?? '.ringside/vm-image'), progress });
  const work = mkdtempSync(join(tmpdir(), 'ringside-benchvm-'));
  try {
    const report = await runVmBench({
      image,
      workdir: work,
      diskMiB: VM_BENCH_DISK_MIB,
      runtimeSec,
      jobs,
      progress,
      ringside: async (disk) => {
        const systemDir = join(work, 'system');
        const stateDir = join(work, 'state');
        writeVmBenchSystem(systemDir, disk, image);
        await up({ system: systemDir, stateDir, detach: true, timeoutMs: timeoutS * 1000, progress });
        return {
          consoleSocket: vmConsoleSocket(statePaths(stateDir), 'benchvm'),
          stop: async () => {
            for (const n of await down(stateDir)) progress(n);
          },
        };
      },
    });
    process.stdout.write((v.json ? JSON.stringify(report, null, 2) : formatVmBench(report)) + '\n');
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return 0;
}

/** blkdom serving the raw image to the bench VM, the VM shaped as the baselines are (TCG like them). */
export function writeVmBenchSystem(dir: string, disk: string, image: { kernel: string; initrd: string }): void {
  mkdirSync(dir, { recursive: true });
  const head = '# written by ringside bench vm; removed when it ends';
  writeFileSync(join(dir, 'benchblk.cfg'), [head, 'name = "benchblk"', 'memory = 128', 'driver_domain = 1', 'role = "blk"', ''].join('\n'));
  writeFileSync(
    join(dir, 'benchvm.cfg'),
    [
      head, 'name = "benchvm"', 'type = "hvm"', `memory = ${VM_BENCH_SHAPE.memoryMiB}`, `vcpus = ${VM_BENCH_SHAPE.vcpus}`, 'accel = "tcg"',
      `kernel = "${image.kernel}"`, `ramdisk = "${image.initrd}"`, `cmdline = "${VM_CMDLINE}"`,
      `disk = [ 'backend=benchblk, vdev=xvda, target=${disk}, format=raw, access=rw' ]`, '',
    ].join('\n'),
  );
}

// ---- migrate ----

async function benchMigrateCommand(args: string[]): Promise<number> {
  const v = parse('migrate', args, { runs: { type: 'string' }, image: { type: 'string' }, timeout: { type: 'string' }, json: { type: 'boolean', default: false } });
  const timeoutS = intOption('migrate', 'timeout', v.timeout, 1, 3600, 120);
  const runs = intOption('migrate', 'runs', v.runs, 1, 50, 5);
  if (!(await hasTool('qemu-system-x86_64'))) throw new CliError('ringside bench migrate: needs qemu-system-x86_64 on PATH (apt-get install qemu-system-x86)');
  const image = await buildVmImage({ outDir: String(v.image ?? '.ringside/vm-image'), progress });
  const work = mkdtempSync(join(tmpdir(), 'ringside-benchmig-'));
  try {
    const disk = join(work, 'disk.img');
    writeFileSync(disk, '');
    truncateSync(disk, MIGRATE_BENCH_SHAPE.diskMiB << 20);
    const report = await runMigrateBench(
      {
        image,
        workdir: work,
        progress,
        runs,
        ringside: async (medium) => {
          const hosts = ['a', 'b'].map((h) => ({ name: h, sys: join(work, `sys-${h}`), state: join(work, `state-${h}`) }));
          writeMigrateBenchHosts(hosts, medium, image);
          const started: string[] = [];
          const stop = async () => {
            for (const st of started.splice(0)) for (const n of await down(st).catch((e: Error) => [e.message])) progress(n);
          };
          try {
            for (const h of hosts) {
              // down first if up fails half-way: what it started must not outlive the bench
              started.push(h.state);
              await up({ system: h.sys, stateDir: h.state, detach: true, timeoutMs: timeoutS * 1000, progress });
            }
          } catch (e) {
            await stop();
            throw e;
          }
          let [from, to] = hosts.map((h) => h.state) as [string, string];
          const vm = {
            consolePath: vmConsoleSocket(statePaths(from), 'benchvm'),
            move: async () => {
              const dest = to;
              const done = control(from, { op: 'migrate', name: 'benchvm', dest }).then((r) => {
                if (!r.migration) throw new Error('the control domain answered without a migration report');
                [from, to] = [to, from];
                vm.consolePath = vmConsoleSocket(statePaths(from), 'benchvm');
                return r.migration;
              });
              return { destConsole: vmConsoleSocket(statePaths(dest), 'benchvm'), done };
            },
            stop,
          };
          return vm;
        },
      },
      disk,
    );
    process.stdout.write((v.json ? JSON.stringify(report, null, 2) : formatMigrateBench(report)) + '\n');
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return 0;
}

/** Two hosts, each with a blkdom serving the shared image and a netdom; the VM starts on the first. */
export function writeMigrateBenchHosts(hosts: { name: string; sys: string }[], disk: string, image: { kernel: string; initrd: string }): void {
  const head = '# written by ringside bench migrate; removed when it ends';
  for (const [i, h] of hosts.entries()) {
    mkdirSync(h.sys, { recursive: true });
    writeFileSync(join(h.sys, 'host.cfg'), [head, `host = "${h.name}"`, ''].join('\n'));
    // the shared image's directory: the blkdom of the host the VM moves to was not started for it
    writeFileSync(join(h.sys, 'benchblk.cfg'), [head, 'name = "benchblk"', 'memory = 128', 'driver_domain = 1', 'role = "blk"', `storage = [ "${dirname(disk)}" ]`, ''].join('\n'));
    writeFileSync(join(h.sys, 'benchnet.cfg'), [head, 'name = "benchnet"', 'memory = 128', 'driver_domain = 1', 'role = "net"', ''].join('\n'));
    if (i > 0) continue;
    writeFileSync(
      join(h.sys, 'benchvm.cfg'),
      [
        head, 'name = "benchvm"', 'type = "hvm"', `memory = ${MIGRATE_BENCH_SHAPE.memoryMiB}`, `vcpus = ${MIGRATE_BENCH_SHAPE.vcpus}`, 'accel = "tcg"',
        `kernel = "${image.kernel}"`, `ramdisk = "${image.initrd}"`, `cmdline = "${VM_CMDLINE}"`,
        `disk = [ 'backend=benchblk, vdev=xvda, target=${disk}, format=raw, access=rw' ]`,
        `vif = [ 'backend=benchnet, mac=${MIGRATE_BENCH_SHAPE.mac}' ]`, '',
      ].join('\n'),
    );
  }
}

// ---- blk ----

/** The disk the bench guest gets; fio's jobs touch all of it. */
const BLK_BENCH_SIZE_MIB = 256;

/**
 * The throwaway system: one blk driver domain and one guest per measured path. `file`: blkback
 * serves a raw image directly. `device`: the image is the medium of an emulated NVMe controller
 * passed through to the driver domain, so every request also crosses the NVMe queues and the
 * VT-d model (the cost of the IOMMU on the block path).
 */
export type BlkBenchPath = 'file' | 'device';

export function writeBenchSystem(dir: string, images: Partial<Record<BlkBenchPath, string>>): void {
  mkdirSync(dir, { recursive: true });
  const head = '# written by ringside bench blk; removed when it ends';
  const blk = [head, 'name = "benchblk"', 'memory = 128', 'driver_domain = 1', 'role = "blk"'];
  if (images.device) {
    writeFileSync(
      join(dir, 'host.cfg'),
      [head, 'iommu = "vtd"', 'devices = [', '  "bdf=00:01.0, type=root-port, acs=1",', `  "bdf=01:00.0, type=nvme, parent=00:01.0, medium=${images.device}, size=${BLK_BENCH_SIZE_MIB}M",`, ']', ''].join('\n'),
    );
    blk.push('pci = [ "01:00.0" ]', 'pci_seize = 1');
  }
  writeFileSync(join(dir, 'benchblk.cfg'), [...blk, ''].join('\n'));
  if (images.file) {
    writeFileSync(
      join(dir, 'benchguest.cfg'),
      [head, 'name = "benchguest"', 'memory = 128', `disk = [ 'backend=benchblk, vdev=xvda, target=${images.file}, format=raw, access=rw, size=${BLK_BENCH_SIZE_MIB}M' ]`, ''].join('\n'),
    );
  }
  if (images.device) {
    writeFileSync(join(dir, 'benchdev.cfg'), [head, 'name = "benchdev"', 'memory = 128', "disk = [ 'backend=benchblk, vdev=xvda, target=pci:01:00.0, access=rw' ]", ''].join('\n'));
  }
}

async function benchBlkCommand(args: string[]): Promise<number> {
  const v = parse('blk', args, {
    seconds: { type: 'string' },
    jobs: { type: 'string' },
    json: { type: 'boolean', default: false },
    timeout: { type: 'string' },
    path: { type: 'string' },
  });
  const runtimeSec = intOption('blk', 'seconds', v.seconds, 1, 600, 5);
  const pathOpt = v.path === undefined ? 'file' : String(v.path);
  if (!['file', 'device', 'both'].includes(pathOpt)) throw usageError('blk', `--path must be file, device or both, got '${pathOpt}'`);
  const paths: BlkBenchPath[] = pathOpt === 'both' ? ['file', 'device'] : [pathOpt as BlkBenchPath];
  const timeoutS = intOption('blk', 'timeout', v.timeout, 1, 3600, 60);
  const jobs = v.jobs === undefined ? [...BLK_BENCH_JOBS] : selectBlkJobs(String(v.jobs));
  for (const tool of ['fio', 'nbdkit']) {
    if (!(await hasTool(tool))) throw new CliError(`ringside bench blk: needs ${tool} on PATH (apt-get install ${tool})`);
  }

  const reports = await withBenchSystem('blk', paths, timeoutS, async (sys) => {
    const out: Partial<Record<BlkBenchPath, Awaited<ReturnType<typeof benchBlk>>>> = {};
    for (const p of paths) {
      progress(`bench blk: ${p} path`);
      out[p] = await sys.guard(() => benchBlk({ guestSocket: sys.socket(p), image: sys.images[p]!, sizeBytes: BLK_BENCH_SIZE_MIB << 20, workdir: sys.work, runtimeSec, jobs, progress }));
    }
    return out;
  });
  if (v.json) {
    // One path keeps the single-report shape; both add the device/file ratios.
    const out = paths.length === 1 ? reports[paths[0]] : { file: reports.file, device: reports.device, deviceVsFile: deviceVsFile(reports.file!, reports.device!) };
    process.stdout.write(JSON.stringify(out, null, 2) + '\n');
  } else {
    for (const p of paths) process.stdout.write((paths.length > 1 ? `== ${p} path\n` : '') + formatBlkBench(reports[p]!) + '\n');
    if (paths.length > 1) {
      process.stdout.write('\n== cost of the device path (NVMe + VT-d) against the direct file, same run\n');
      for (const r of deviceVsFile(reports.file!, reports.device!)) process.stdout.write(`${r.job.padEnd(18)} ${r.ratio.toFixed(2)}x IOPS\n`);
    }
  }
  return 0;
}

/** A throwaway system that `ringside up` brought up in `work`, for one bench. */
interface BenchRun {
  work: string;
  stateDir: string;
  /** runs a measurement; its failure names the system's log */
  guard<T>(f: () => Promise<T>): Promise<T>;
}

interface BenchSystem extends BenchRun {
  images: Partial<Record<BlkBenchPath, string>>;
  /** the NBD export of the guest on `p` */
  socket(p: BlkBenchPath): string;
}

/**
 * Writes a system into a fresh work directory (`write` gets it, and puts the config files in
 * work/system), brings it up, runs `body` on it, and always takes it down and removes the
 * directory (also on SIGINT/SIGTERM).
 */
async function withSystem<T>(sub: string, what: string, write: (work: string, systemDir: string) => void, timeoutS: number, body: (run: BenchRun) => Promise<T>): Promise<T> {
  const work = mkdtempSync(join(tmpdir(), `ringside-bench${sub}-`));
  const systemDir = join(work, 'system');
  const stateDir = join(work, 'state');
  mkdirSync(systemDir, { recursive: true });
  write(work, systemDir);

  // hv runs detached (its own process group), so an interrupted bench must still bring it down:
  // the same cleanup runs from finally and from SIGINT/SIGTERM, once.
  let started = false;
  let cleaning: Promise<void> | undefined;
  const cleanup = (): Promise<void> =>
    (cleaning ??= (async () => {
      try {
        // up() may have failed before creating the state directory: then nothing was started
        if (started && existsSync(stateDir)) for (const n of await down(stateDir)) progress(n);
      } catch (e) {
        progress(`bench ${sub}: stopping the bench system failed: ${(e as Error).message}`);
      } finally {
        rmSync(work, { recursive: true, force: true });
      }
    })());
  const onSignal = (sig: NodeJS.Signals): void => {
    progress(`bench ${sub}: ${sig}; stopping the bench system`);
    void cleanup().then(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    progress(`bench ${sub}: starting ${what} (in ${work})`);
    started = true;
    await up({ system: systemDir, stateDir, detach: true, timeoutMs: timeoutS * 1000, progress });
    return await body({
      work,
      stateDir,
      guard: async (f) => {
        try {
          return await f();
        } catch (e) {
          throw new CliError(`ringside bench ${sub}: ${(e as Error).message}\n(the system's log was ${statePaths(stateDir).log}; it is removed with the bench directory)`);
        }
      },
    });
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await cleanup();
  }
}

/** The blk bench system for `paths` (see writeBenchSystem); `bench blk` and `bench iommu` both measure on it. */
function withBenchSystem<T>(sub: string, paths: BlkBenchPath[], timeoutS: number, body: (sys: BenchSystem) => Promise<T>): Promise<T> {
  const images: Partial<Record<BlkBenchPath, string>> = {};
  const what = `a blk driver domain and ${paths.length} guest(s) with ${BLK_BENCH_SIZE_MIB} MiB disks: ${paths.join(' and ')} path`;
  const write = (work: string, systemDir: string) => {
    for (const p of paths) images[p] = join(work, `bench-${p}.img`);
    writeBenchSystem(systemDir, images);
  };
  return withSystem(sub, what, write, timeoutS, (run) =>
    body({ ...run, images, socket: (p) => join(statePaths(run.stateDir).nbd, `${p === 'file' ? 'benchguest' : 'benchdev'}-xvda.sock`) }),
  );
}

function deviceVsFile(file: Awaited<ReturnType<typeof benchBlk>>, device: Awaited<ReturnType<typeof benchBlk>>): { job: string; ratio: number }[] {
  return file.lines.map((l, i) => ({ job: l.job.name, ratio: device.lines[i].ringside.iops / l.ringside.iops }));
}

// ---- net ----

async function benchNetCommand(args: string[]): Promise<number> {
  const v = parse('net', args, { seconds: { type: 'string' }, json: { type: 'boolean', default: false }, timeout: { type: 'string' } });
  const seconds = intOption('net', 'seconds', v.seconds, 1, 600, 5);
  const timeoutS = intOption('net', 'timeout', v.timeout, 1, 3600, 60);
  const withNetSystem: WithSystem = (files, body) =>
    withSystem('net', 'a net driver domain and two guests', (_work, dir) => {
      for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
    }, timeoutS, (run) => {
      const hvPid = Number(readFileSync(statePaths(run.stateDir).hvPid, 'utf8'));
      return run.guard(() => body({ hvPid, list: async () => (await control(run.stateDir, { op: 'list' })).domains ?? [] }));
    });
  let report;
  try {
    report = await runNetBench({ seconds, log: progress, withSystem: withNetSystem });
  } catch (e) {
    if (e instanceof CliError) throw e;
    // not root, no iperf3, a namespace that cannot be made: the bench says which
    throw new CliError(`ringside bench net: ${(e as Error).message}`);
  }
  process.stdout.write((v.json ? JSON.stringify(report, null, 2) : formatNetBench(report)) + '\n');
  return 0;
}

// ---- iommu ----

export function formatBlockPath(b: BlockPathBench): string {
  const k = (x: number): string => `${(x / 1000).toFixed(1)}k`;
  return [
    'Block path, 4 KiB random reads at QD32',
    `  NVMe model + VT-d  ${k(b.iops.device).padStart(10)} IOPS`,
    `  direct file        ${k(b.iops.direct).padStart(10)} IOPS`,
    `  ratio              ${b.ratio.toFixed(2).padStart(10)}x    (${b.translations} translations, IOTLB hit rate ${(b.iotlbHitRate * 100).toFixed(1)}%)`,
  ].join('\n');
}

/** The fio jobs `bench iommu --fio` runs on both paths: the queue-depth and streaming cases. */
const IOMMU_FIO_JOBS = BLK_BENCH_JOBS.filter((j) => j.iodepth > 1);

export interface NbdPathLine {
  job: string;
  file: FioFigures;
  device: FioFigures;
  /** device IOPS / file IOPS */
  ratio: number;
}

/** fio over NBD into two guests of one system: blkback on the raw file vs blkback on NVMe + VT-d. */
async function nbdPathCost(runtimeSec: number, timeoutS: number): Promise<NbdPathLine[]> {
  if (!(await hasTool('fio'))) throw new CliError('ringside bench iommu: --fio needs fio on PATH (apt-get install fio)');
  return withBenchSystem('iommu', ['file', 'device'], timeoutS, async (sys) => {
    const lines: NbdPathLine[] = [];
    for (const job of IOMMU_FIO_JOBS) {
      progress(`bench iommu: ${job.name}: file path, then device path`);
      const file = await sys.guard(() => fio(sys.socket('file'), job, BLK_BENCH_SIZE_MIB << 20, runtimeSec));
      const device = await sys.guard(() => fio(sys.socket('device'), job, BLK_BENCH_SIZE_MIB << 20, runtimeSec));
      lines.push({ job: job.name, file, device, ratio: file.iops > 0 ? device.iops / file.iops : 0 });
    }
    return lines;
  });
}

export function formatNbdPathCost(lines: NbdPathLine[], runtimeSec: number): string {
  return [
    `Block path over NBD (fio, guest -> blkfront -> blkback -> medium), ${runtimeSec}s per run`,
    `  ${'job'.padEnd(18)} ${'file IOPS'.padStart(10)} ${'NVMe+VT-d IOPS'.padStart(15)} ${'ratio'.padStart(7)}`,
    ...lines.map((l) => `  ${l.job.padEnd(18)} ${l.file.iops.toFixed(0).padStart(10)} ${l.device.iops.toFixed(0).padStart(15)} ${`${l.ratio.toFixed(2)}x`.padStart(7)}`),
  ].join('\n');
}

async function benchIommuCommand(args: string[]): Promise<number> {
  const v = parse('iommu', args, { duration: { type: 'string' }, json: { type: 'boolean', default: false }, fio: { type: 'string' }, timeout: { type: 'string' } });
  const duration = v.duration === undefined ? undefined : intOption('iommu', 'duration', v.duration, 20, 60_000, 300);
  const fioSec = intOption('iommu', 'fio', v.fio, 0, 600, 3);
  const timeoutS = intOption('iommu', 'timeout', v.timeout, 1, 3600, 60);
  progress('bench iommu: translation rates');
  const translation = runIommuBench(duration === undefined ? {} : { durationMs: duration });
  progress('bench iommu: block path (NVMe model + VT-d vs direct file)');
  const blockPath = await runBlockPathBench(duration === undefined ? {} : { ms: duration });
  const nbd = fioSec > 0 ? await nbdPathCost(fioSec, timeoutS) : null;
  if (v.json) {
    process.stdout.write(JSON.stringify({ translation, blockPath, ...(nbd ? { nbdPath: { runtimeSec: fioSec, lines: nbd } } : {}) }, null, 2) + '\n');
    return 0;
  }
  const parts = [formatIommuBench(translation), formatBlockPath(blockPath)];
  parts.push(nbd ? formatNbdPathCost(nbd, fioSec) : 'Block path over NBD: not measured (--fio 0)');
  process.stdout.write(parts.join('\n\n') + '\n');
  return 0;
}
