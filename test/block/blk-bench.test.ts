// `ringside bench blk` over a real guest disk. By default one short job (the harness works and the
// figures are sane); RINGSIDE_BENCH=1 runs the full table and prints it.
import { afterAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { truncateSync, writeFileSync } from 'node:fs';
import { BlockSystem } from './support/system.js';
import { BLK_BENCH_JOBS, benchBlk, formatBlkBench } from '../../src/bench/blk.js';

describe('bench blk', () => {
  let s: BlockSystem | null = null;
  afterAll(async () => s?.close());

  it('measures the guest disk and nbdkit on the same image, side by side', async () => {
    s = new BlockSystem();
    const img = join(s.dir, 'bench.img');
    writeFileSync(img, '');
    const size = 256 << 20;
    truncateSync(img, size);
    const blkdom = await s.blkdom();
    const g = await s.guest('guest1', blkdom, img);
    const full = process.env.RINGSIDE_BENCH === '1';
    const report = await benchBlk({
      guestSocket: g.socket, image: img, sizeBytes: size, workdir: s.dir,
      runtimeSec: full ? Number(process.env.RINGSIDE_BENCH_SECONDS ?? 5) : 1,
      jobs: full ? (process.env.RINGSIDE_BENCH_JOBS ?? '').split(',').filter(Boolean).map((i) => BLK_BENCH_JOBS[Number(i)]).concat(process.env.RINGSIDE_BENCH_JOBS ? [] : [...BLK_BENCH_JOBS]) : [BLK_BENCH_JOBS[1]],
    });
    const text = formatBlkBench(report);
    process.stdout.write(`${text}\n${full ? JSON.stringify(report) + '\n' : ''}`);
    for (const l of report.lines) {
      expect(l.ringside.iops).toBeGreaterThan(0);
      expect(l.nbdkit.iops).toBeGreaterThan(0);
      expect(l.ratio).toBeCloseTo(l.ringside.iops / l.nbdkit.iops, 6);
    }
  }, 600_000);
});
