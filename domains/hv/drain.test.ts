import { describe, expect, it } from 'vitest';
import { DrainWaiter } from './drain.js';

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('DrainWaiter: a device_map page goes back to its owner only once no DMA touches it', () => {
  it('releases at once when nothing is in flight', () => {
    const w = new DrainWaiter(() => 0, () => undefined);
    let released = false;
    w.after(7, () => (released = true));
    expect(released).toBe(true);
    expect(w.pending).toBe(0);
  });

  it('holds the page while transfers are in flight and releases when they end', async () => {
    const busy = new Map([[7, 2], [9, 1]]);
    const w = new DrainWaiter((pfn) => busy.get(pfn) ?? 0, () => undefined, 1);
    const order: number[] = [];
    w.after(7, () => order.push(7));
    w.after(9, () => order.push(9));
    await tick(10);
    expect(order).toEqual([]);
    busy.set(9, 0);
    await tick(10);
    expect(order).toEqual([9]);
    busy.set(7, 1);
    await tick(10);
    expect(order).toEqual([9]);
    busy.delete(7);
    await tick(10);
    expect(order).toEqual([9, 7]);
    expect(w.pending).toBe(0);
  });

  it('releases everything when the hardware is gone', () => {
    const w = new DrainWaiter(() => 1, () => undefined, 1000);
    let n = 0;
    w.after(1, () => n++);
    w.after(2, () => n++);
    expect(n).toBe(0);
    w.releaseAll();
    expect(n).toBe(2);
  });
});
