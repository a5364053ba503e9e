// The ring lab's own logic. Performance is reported, never asserted: these only check that every
// comparison runs, reports a positive rate, and that the reports are well formed.
import { describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RingBenchArgError, parseRingBenchArgs, ringBenchMain } from './args.js';
import { planRingBench, runRingBench, RING_BENCH_DEFAULTS, type RingBenchCase, type RingBenchOptions, type RingBenchReport } from './bench.js';
import { CPeerBuildError, buildCPeer, cHeaderDeps } from './cpeer.js';
import { HIST_BUCKETS, Histogram, histBucketRange, histIndex, histQuantile, medianWindowRate } from './hist.js';
import { formatRingBenchTable, ringBenchHtml } from './report.js';
import { parsePeerResult } from './protocol.js';

describe('argument parsing', () => {
  it('parses lists, numbers and flags', () => {
    const a = parseRingBenchArgs(['--orders', '0,2', '--modes=poll,futex', '--batches', 'full,4', '--queues', '1', '--no-payload', '--baselines', 'c,unix', '--duration', '300', '--warmup=50', '--repeat', '3', '--json', '--html', '/tmp/x.html', '--c-relax', 'pause']);
    expect(a.options).toEqual({
      orders: [0, 2],
      modes: ['poll', 'futex'],
      batches: [4],
      queues: [1],
      payload: false,
      baselines: ['c', 'unix'],
      durationMs: 300,
      warmupMs: 50,
      repeat: 3,
      cRelax: 'pause',
    });
    expect(a.json).toBe(true);
    expect(a.html).toBe('/tmp/x.html');
    expect(parseRingBenchArgs(['--baselines', 'none']).options.baselines).toEqual([]);
    expect(parseRingBenchArgs(['-h']).help).toBe(true);
    expect(parseRingBenchArgs(['--quick']).options).toMatchObject({ orders: [0, 4], durationMs: 200 });
  });

  it('names the bad value and what is allowed', () => {
    const bad: [string[], RegExp][] = [
      [['--orders', '5'], /--orders: 5 is outside 0\.\.4/],
      [['--orders', 'x'], /not a whole number/],
      [['--modes', 'spin'], /unknown mode "spin" \(expected poll, eventfd, futex\)/],
      [['--baselines', 'ts'], /unknown baseline "ts"/],
      [['--duration'], /--duration needs a value/],
      [['--json=1'], /--json takes no value/],
      [['--frobnicate'], /unknown option "--frobnicate"/],
      [['--queues', '9'], /outside 1\.\.4/],
    ];
    for (const [argv, re] of bad) {
      expect(() => parseRingBenchArgs(argv)).toThrow(RingBenchArgError);
      expect(() => parseRingBenchArgs(argv)).toThrow(re);
    }
  });
});

describe('the plan', () => {
  it('pairs every TS case with its C twin and runs the transports next to the headline', () => {
    const cases = planRingBench({ ...RING_BENCH_DEFAULTS });
    const key = (c: RingBenchCase): string => `${c.order}|${c.mode}|${c.batch}|${c.queues}|${c.payload}`;
    const ts = cases.filter((c) => c.impl === 'ts');
    for (const t of ts) expect(cases.some((c) => c.impl === 'c' && key(c) === key(t))).toBe(true);
    expect(new Set(ts.map((c) => c.order))).toEqual(new Set([0, 1, 2, 3, 4]));
    expect(new Set(ts.map((c) => c.mode))).toEqual(new Set(['poll', 'eventfd', 'futex']));
    expect(ts.some((c) => c.queues === 2)).toBe(true);
    expect(ts.some((c) => c.payload === 4096)).toBe(true);
    expect(cases.slice(0, 5).map((c) => c.impl)).toEqual(['ts', 'c', 'postmessage', 'unix', 'process-send']);
    for (const b of ['postmessage', 'unix', 'process-send']) {
      expect(cases.filter((c) => c.impl === b).map((c) => c.payload)).toEqual([0, 4096]);
    }
    expect(new Set(cases.map((c) => `${c.impl}|${key(c)}`)).size).toBe(cases.length);
  });
});

describe('histogram and windows', () => {
  it('buckets exactly below 64 ns and within ~3% above, like the C peer', () => {
    expect(histIndex(0)).toBe(0);
    expect(histIndex(63.9)).toBe(63);
    expect(histIndex(64)).toBe(64);
    expect(histIndex(-5)).toBe(0);
    expect(histIndex(1e12)).toBeLessThan(HIST_BUCKETS);
    for (const v of [64, 100, 1000, 12345, 1e6, 3e9]) {
      const [lo, hi] = histBucketRange(histIndex(v));
      expect(v).toBeGreaterThanOrEqual(lo);
      expect(v).toBeLessThan(hi);
      expect((hi - lo) / lo).toBeLessThanOrEqual(1 / 32);
    }
  });

  it('computes quantiles and the median window rate', () => {
    const h = new Histogram();
    for (let i = 0; i < 990; i++) h.add(1000);
    for (let i = 0; i < 10; i++) h.add(1e6);
    const pairs = h.toPairs();
    expect(histQuantile(pairs, 0.5)).toBeCloseTo(1000, -2);
    expect(histQuantile(pairs, 0.999)!).toBeGreaterThan(9e5);
    expect(histQuantile([], 0.5)).toBeNull();
    expect(medianWindowRate([[10, 1e7], [1000, 1e7], [1000, 1e7]])).toBe(1e5);
    expect(medianWindowRate([])).toBeNull();
  });

  it('reads the peers result lines and rejects broken ones', () => {
    const r = parsePeerResult('{"role":"front","completed":5,"elapsed_ns":10,"notifies":0,"wakeups":0,"pushes":1,"errors":0,"ring_size":32,"hist":[[3,4],["x",1]],"windows":[[5,10]]}');
    expect(r.hist).toEqual([[3, 4]]);
    expect(r.windows).toEqual([[5, 10]]);
    expect(() => parsePeerResult('{"role":"front"}')).toThrow(/completed/);
    expect(() => parsePeerResult('{"completed":1')).toThrow();
  });
});

describe('the C peer', () => {
  it("is compiled against Xen's headers from the system include path", () => {
    const deps = cHeaderDeps();
    expect(deps).toContain('/usr/include/xen/io/ring.h');
    expect(deps).toContain('/usr/include/xen/io/blkif.h');
  });

  it('does not build when <xen/io/ring.h> is not the real one, and says what to install', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ringside-noxen-'));
    mkdirSync(join(dir, 'xen', 'io'), { recursive: true });
    writeFileSync(join(dir, 'xen', 'io', 'ring.h'), '#error "xen/io/ring.h hidden by the test"\n');
    let err: unknown;
    try {
      buildCPeer({ extraFlags: ['-I', dir], outDir: dir });
    } catch (e) {
      err = e;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(err).toBeInstanceOf(CPeerBuildError);
    expect((err as Error).message).toMatch(/libxen-dev/);
    expect((err as CPeerBuildError).stderr).toMatch(/hidden by the test/);
  });
});

const short: Partial<RingBenchOptions> = { durationMs: 120, warmupMs: 40, retries: 0 };

describe('a short run', () => {
  let report: RingBenchReport;

  it('runs the TS ring, the C peer and every Node transport, each with a positive rate', async () => {
    const base = { order: 0, batch: 0, queues: 1, payload: 0 };
    const cases: RingBenchCase[] = [
      { ...base, impl: 'ts', mode: 'poll' },
      { ...base, impl: 'c', mode: 'poll' },
      { ...base, impl: 'ts', mode: 'eventfd' },
      { ...base, impl: 'c', mode: 'eventfd' },
      { ...base, impl: 'ts', mode: 'futex', order: 1 },
      { ...base, impl: 'ts', mode: 'poll', queues: 2, batch: 4 },
      { ...base, impl: 'ts', mode: 'poll', payload: 4096 },
      { ...base, impl: 'postmessage', mode: 'poll' },
      { ...base, impl: 'unix', mode: 'poll' },
      { ...base, impl: 'process-send', mode: 'poll', payload: 4096 },
    ];
    const seen: string[] = [];
    report = await runRingBench({ ...short, cases, onProgress: (p) => seen.push(p.message) });
    expect(report.rows.map((r) => r.impl)).toEqual(cases.map((c) => c.impl));
    for (const row of report.rows) {
      expect([row.label, row.rate > 0, row.roundTrips > 0, row.errors]).toEqual([row.label, true, true, 0]);
      expect(row.p50Ns).not.toBeNull();
    }
    const ts = report.rows[0];
    expect(ts.ratioToC).not.toBeNull();
    expect(report.rows[1].ratioToC).toBe(1);
    expect(report.rows[2].notifiesPerRequest).not.toBeNull();
    expect(report.rows[6].mbps).toBeGreaterThan(0);
    expect(report.goals.tsOverC).not.toBeNull();
    expect(report.goals.tsOverPostMessage).not.toBeNull();
    expect(report.goals.tsOverUnix).not.toBeNull();
    expect(report.cPeer?.headers).toContain('/usr/include/xen/io/ring.h');
    expect(seen.some((m) => /ts\/c/.test(m))).toBe(true);
  });

  it('formats a table with ratios and a self-contained HTML page', () => {
    const text = formatRingBenchTable(report);
    expect(text).toMatch(/round trips\/s/);
    expect(text).toMatch(/vs C/);
    expect(text).toMatch(/c ring\.h .* 1\.00x/);
    expect(text).toMatch(/Goals/);
    const html = ringBenchHtml(report);
    expect(html.startsWith('<!doctype html>')).toBe(true);
    expect((html.match(/<svg /g) ?? []).length).toBeGreaterThanOrEqual(3);
    expect(html).not.toMatch(/<script|<link|\ssrc=|href=/i);
    expect(html).not.toMatch(/https?:\/\/(?!www\.w3\.org\/2000\/svg)/);
  });

  it('--json prints a valid report on stdout and progress on stderr', async () => {
    let out = '';
    let err = '';
    const dir = mkdtempSync(join(tmpdir(), 'ringside-bench-'));
    const code = await ringBenchMain(
      ['--orders', '0', '--modes', 'poll', '--batches', 'full', '--queues', '1', '--no-payload', '--baselines', 'c,unix', '--duration', '80', '--warmup', '20', '--retries', '0', '--json', '--html', join(dir, 'r.html')],
      { stdout: (s) => (out += s), stderr: (s) => (err += s) },
    );
    expect(code).toBe(0);
    const parsed = JSON.parse(out) as RingBenchReport;
    expect(parsed.version).toBe(1);
    expect(parsed.rows.map((r) => r.impl)).toEqual(['ts', 'c', 'unix']);
    expect(err).toMatch(/\[ 1\/3\] ts order 0 poll/);
    expect(err).toMatch(/wrote .*r\.html/);
    rmSync(dir, { recursive: true, force: true });
  });

  it('reports an argument error with exit code 2', async () => {
    let err = '';
    expect(await ringBenchMain(['--orders', '9'], { stdout: () => {}, stderr: (s) => (err += s) })).toBe(2);
    expect(err).toMatch(/--orders: 9 is outside/);
  });
});
