// `ringside bench` through the built CLI, in short runs: the output's shape and that the blk bench
// leaves nothing behind. No timing assertions: figures depend on the machine.
import { openFdTargets } from '../../test/support/proc.js';
import { afterAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { hasTool, runTool } from '../tools/run.js';
import type { NetBenchReport } from '../bench/net.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = join(ROOT, 'dist', 'ringside.js');

const ringside = (args: string[], env: NodeJS.ProcessEnv = process.env, timeoutMs = 60_000) => runTool(process.execPath, [CLI, ...args], { env, timeoutMs });

/** Processes holding any file under `dir` open (every domain's stdout is the system's log there). */
function holdersUnder(dir: string): string[] {
  return [...new Set(openFdTargets().filter((f) => f.target.startsWith(dir)).map((f) => f.pid))];
}

describe('ringside bench', () => {
  if (!existsSync(CLI)) throw new Error('dist/ringside.js is not built: run `npm run build` first');
  const work = mkdtempSync(join(tmpdir(), 'ringside-bench-test-'));
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('bench iommu --json: all three parts (fio over NBD on both paths included), positive rates', async () => {
    const r = await ringside(['bench', 'iommu', '--json', '--duration', '30', '--fio', '1'], process.env, 150_000);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout) as {
      translation: { iotlbHit: { perSec: number }; walk4: { perSec: number }; walk3: { perSec: number }; dmaWrite4k: { perSec: number } };
      blockPath: { iops: { device: number; direct: number }; ratio: number };
      nbdPath: { runtimeSec: number; lines: { job: string; file: { iops: number }; device: { iops: number }; ratio: number }[] };
    };
    expect(j.nbdPath.runtimeSec).toBe(1);
    expect(j.nbdPath.lines.length).toBeGreaterThan(0);
    for (const l of j.nbdPath.lines) expect(Math.min(l.file.iops, l.device.iops, l.ratio), JSON.stringify(l)).toBeGreaterThan(0);
    for (const f of [j.translation.iotlbHit, j.translation.walk4, j.translation.walk3, j.translation.dmaWrite4k]) expect(f.perSec).toBeGreaterThan(0);
    expect(j.blockPath.iops.device).toBeGreaterThan(0);
    expect(j.blockPath.iops.direct).toBeGreaterThan(0);
    expect(j.blockPath.ratio).toBeGreaterThan(0);
    expect(r.stderr).toMatch(/bench iommu/); // progress on stderr, not in the JSON
  }, 160_000);

  it('bench iommu: the table shows both figures side by side with ratios', async () => {
    const r = await ringside(['bench', 'iommu', '--duration', '20', '--fio', '0']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/hit\/walk ratio\s+[\d.]+x/);
    expect(r.stdout).toMatch(/NVMe model \+ VT-d\s+[\d.]+k IOPS/);
    expect(r.stdout).toMatch(/direct file\s+[\d.]+k IOPS/);
    expect(r.stdout).toMatch(/ratio\s+[\d.]+x/);
  });

  it('bench blk: one short job, a ratio to nbdkit, and no process, socket or directory left behind', async (ctx) => {
    if (!(await hasTool('fio')) || !(await hasTool('nbdkit'))) ctx.skip();
    // The bench makes its system under TMPDIR: point that at a directory of our own to inspect.
    const tmp = mkdtempSync(join(work, 't-'));
    const r = await ringside(['bench', 'blk', '--seconds', '1', '--jobs', '4k-randread-qd1'], { ...process.env, TMPDIR: tmp }, 120_000);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^4k randread qd1\s.*\s\d+\.\d\dx$/m);
    expect(r.stderr).toMatch(/hv started/);
    expect(readdirSync(tmp)).toEqual([]);
    expect(holdersUnder(tmp)).toEqual([]);
  });

  it('bench blk --path both: the NVMe device path beside the direct file, with their ratio', async (ctx) => {
    if (!(await hasTool('fio')) || !(await hasTool('nbdkit'))) ctx.skip();
    const tmp = mkdtempSync(join(work, 't-'));
    const r = await ringside(['bench', 'blk', '--seconds', '1', '--jobs', '4k-randread-qd1', '--path', 'both', '--json'], { ...process.env, TMPDIR: tmp }, 120_000);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout) as { file: { lines: unknown[] }; device: { lines: { ringside: { iops: number } }[] }; deviceVsFile: { job: string; ratio: number }[] };
    expect(j.device.lines[0].ringside.iops).toBeGreaterThan(0);
    expect(j.deviceVsFile[0].ratio).toBeGreaterThan(0);
    expect(readdirSync(tmp)).toEqual([]);
  });

  it('bench blk --json: the report with one line per selected job', async (ctx) => {
    if (!(await hasTool('fio')) || !(await hasTool('nbdkit'))) ctx.skip();
    const tmp = mkdtempSync(join(work, 't-'));
    const r = await ringside(['bench', 'blk', '--seconds', '1', '--jobs', '4k-randwrite-qd1', '--json'], { ...process.env, TMPDIR: tmp }, 120_000);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout) as { runtimeSec: number; lines: { job: { name: string }; ratio: number; ringside: { iops: number } }[] };
    expect(j.runtimeSec).toBe(1);
    expect(j.lines.map((l) => l.job.name)).toEqual(['4k randwrite qd1']);
    expect(j.lines[0].ringside.iops).toBeGreaterThan(0);
    expect(readdirSync(tmp)).toEqual([]);
  });

  it('answers bad arguments with exit status 2, naming the option', async () => {
    const cases: [string[], RegExp][] = [
      [['bench'], /say what to measure/],
      [['bench', 'disk'], /unknown benchmark 'disk'/],
      [['bench', 'blk', '--seconds', '0'], /--seconds must be from 1 to 600/],
      [['bench', 'blk', '--seconds', 'lots'], /--seconds must be a whole number/],
      [['bench', 'blk', '--jobs', 'fast'], /--jobs: unknown job 'fast'.*4k-randread-qd1/],
      [['bench', 'blk', '--jobs', ','], /--jobs needs at least one job/],
      [['bench', 'blk', '--bogus'], /Unknown option '--bogus'/],
      [['bench', 'blk', '--path', 'sideways'], /--path must be file, device or both/],
      [['bench', 'net', '--seconds', '601'], /--seconds must be from 1 to 600/],
      [['bench', 'net', 'extra'], /unexpected argument 'extra'/],
      [['bench', 'iommu', '--duration', '5'], /--duration must be from 20 to 60000/],
      [['bench', 'iommu', '--html', 'x.html'], /Unknown option '--html'/],
      [['bench', 'ring', '--orders', '9'], /--orders/],
      [['bench', 'ring', '--bogus'], /unknown option "--bogus"/],
    ];
    for (const [args, msg] of cases) {
      const r = await ringside(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(msg);
    }
  });

  it("bench net --json: both paths measured, netdom's copies counted by hv, and nothing left behind", async (ctx) => {
    if (process.getuid?.() !== 0 || !(await hasTool('iperf3'))) ctx.skip();
    const tmp = mkdtempSync(join(work, 't-'));
    const nsBefore = (await runTool('ip', ['netns', 'list'])).stdout;
    const r = await ringside(['bench', 'net', '--seconds', '1', '--json'], { ...process.env, TMPDIR: tmp }, 180_000);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout) as NetBenchReport;
    expect(j.veth.tcpGbps).toBeGreaterThan(0);
    expect(j.ringside.tcpGbps).toBeGreaterThan(0);
    expect(j.ringside.pps).toBeGreaterThan(0);
    expect(j.ratio.tcp).toBeGreaterThan(0);
    // netback moves every byte by grant copy, so a TCP run without copies was not through netdom
    expect(j.ringside.copyCallsPerGB).toBeGreaterThan(0);
    expect(j.ringside.copyOpsPerGB).toBeGreaterThanOrEqual(j.ringside.copyCallsPerGB);
    expect(j.ringside.cpu.netdom).toBeGreaterThan(0);
    expect(j.ringside.cpu.hv).toBeGreaterThan(0);
    // the system it brought up is gone: its directory, every process that held a file in it, its namespaces
    expect(readdirSync(tmp)).toEqual([]);
    expect(holdersUnder(tmp)).toEqual([]);
    const names = (t: string) => new Set(t.split('\n').map((l) => l.split(' ')[0]).filter(Boolean));
    const before = names(nsBefore);
    expect([...names((await runTool('ip', ['netns', 'list'])).stdout)].filter((n) => !before.has(n) && n.startsWith('rsb'))).toEqual([]);
  });

  it('bench net without root says it needs root (exit 1)', async () => {
    // As root (CI), run it in a fresh user namespace: there it is uid 65534 and has no
    // capabilities, yet it still reads the checkout, wherever that lives and whatever its mode.
    const asUser = process.getuid?.() === 0 ? ['unshare', '--user', process.execPath] : [process.execPath];
    const r = await runTool(asUser[0], [...asUser.slice(1), CLI, 'bench', 'net', '--seconds', '1'], { timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/needs root/);
  });
});
