// Translation throughput of the VT-d model: IOTLB hits (the device data path's steady state) and
// full 4-level walks with the IOTLB off (every translation reads four PTEs from memory), plus
// 3-level walks and a 4 KiB DMA copy for scale.

import { performance } from 'node:perf_hooks';
import { SIZE_4K } from '../../iommu/vtd/pagetable.js';
import { makeTestbed, sidOf } from '../hw/vtd/testbed.js';

export interface RateFigure {
  /** Operations per second. */
  perSec: number;
  nsPerOp: number;
  ops: number;
}

export interface IommuBenchResult {
  pages: number;
  iotlbHit: RateFigure;
  walk4: RateFigure;
  walk3: RateFigure;
  /** 4 KiB device writes through the unit (translation + copy into memory). */
  dmaWrite4k: RateFigure & { mbPerSec: number };
}

export interface IommuBenchOptions {
  /** Time spent per figure; default 300 ms. */
  durationMs?: number;
  /** Distinct pages cycled through; default 256 (fits the 1024-entry IOTLB). */
  pages?: number;
}

function measure(durationMs: number, batch: number, body: (n: number) => number): RateFigure {
  body(batch); // warm up the JIT before timing
  let ops = 0;
  let sink = 0;
  const start = performance.now();
  let now = start;
  while (now - start < durationMs) {
    sink += body(batch);
    ops += batch;
    now = performance.now();
  }
  if (sink === -1) throw new Error('unreachable'); // keeps the loop's results observable
  const secs = (now - start) / 1000;
  return { perSec: Math.round(ops / secs), nsPerOp: Number(((secs * 1e9) / ops).toFixed(1)), ops };
}

export function runIommuBench(opts: IommuBenchOptions = {}): IommuBenchResult {
  const durationMs = opts.durationMs ?? 300;
  const pages = opts.pages ?? 256;
  const sid = sidOf(1, 0, 0);
  const base = 0x7f00_0000_0000; // high in the 48-bit space so all four levels matter

  const tb = makeTestbed({ queued: true });
  const t = tb.attach(1, 0, 1);
  for (let i = 0; i < pages; i++) t.map(base + i * SIZE_4K, 0x4000_0000 + i * SIZE_4K, SIZE_4K, { read: true, write: true });
  const u = tb.unit;
  const mask = pages - 1;
  const pow2 = (pages & mask) === 0;
  // the data-path form (xlate through io[0]), as a device model calls it
  const translateLoop = (n: number): number => {
    let bad = 0;
    for (let i = 0; i < n; i++) {
      u.io[0] = base + (pow2 ? i & mask : i % pages) * SIZE_4K + 0x18;
      if (u.xlate(sid, (i & 1) === 1) !== 0) bad++;
    }
    return bad;
  };

  u.iotlbEnabled = true;
  const iotlbHit = measure(durationMs, 100_000, translateLoop);
  u.iotlbEnabled = false;
  const walk4 = measure(durationMs, 20_000, translateLoop);
  u.iotlbEnabled = true;

  const tb3 = makeTestbed({ addressWidth: 39 });
  const t3 = tb3.attach(1, 0, 1, { levels: 3 });
  const base3 = 0x40_0000_0000;
  for (let i = 0; i < pages; i++) t3.map(base3 + i * SIZE_4K, 0x4000_0000 + i * SIZE_4K, SIZE_4K, { read: true, write: true });
  const u3 = tb3.unit;
  u3.iotlbEnabled = false;
  const walk3 = measure(durationMs, 20_000, (n) => {
    let acc = 0;
    for (let i = 0; i < n; i++) {
      u3.io[0] = base3 + (i % pages) * SIZE_4K;
      if (u3.xlate(sid, false) !== 0) acc++;
    }
    return acc;
  });

  const buf = new Uint8Array(SIZE_4K).fill(0xa5);
  const dma = measure(durationMs, 2_000, (n) => {
    let acc = 0;
    for (let i = 0; i < n; i++) acc += u.dmaWrite(sid, base + (i % pages) * SIZE_4K, buf).ok ? 1 : 0;
    return acc;
  });
  const dmaWrite4k = { ...dma, mbPerSec: Math.round((dma.perSec * SIZE_4K) / 1e6) };

  if (tb.faults.length + tb3.faults.length !== 0) throw new Error('iommu bench: unexpected DMA faults');
  return { pages, iotlbHit, walk4, walk3, dmaWrite4k };
}

export function formatIommuBench(r: IommuBenchResult): string {
  const m = (x: number): string => (x / 1e6).toFixed(2) + ' M/s';
  return [
    `IOMMU translation (${r.pages} distinct 4 KiB pages)`,
    `  IOTLB hit          ${m(r.iotlbHit.perSec).padStart(12)}  ${r.iotlbHit.nsPerOp} ns`,
    `  4-level walk       ${m(r.walk4.perSec).padStart(12)}  ${r.walk4.nsPerOp} ns   (IOTLB off)`,
    `  3-level walk       ${m(r.walk3.perSec).padStart(12)}  ${r.walk3.nsPerOp} ns   (IOTLB off)`,
    `  4 KiB DMA write    ${m(r.dmaWrite4k.perSec).padStart(12)}  ${r.dmaWrite4k.mbPerSec} MB/s`,
    `  hit/walk ratio     ${(r.iotlbHit.perSec / r.walk4.perSec).toFixed(1)}x`,
  ].join('\n');
}
