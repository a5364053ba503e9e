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
    const w = new DrainWaiter((pfn) => busy.get(pfn) ?? 0, () => undefined, 1, 2);
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

describe('DrainWaiter under a hung medium', () => {
  it('backs off instead of asking hw every 2 ms, and treats an unreadable answer as busy', async () => {
    let asks = 0;
    let fail = false;
    const w = new DrainWaiter(() => {
      asks++;
      if (fail) throw new Error('garbled');
      return 1;
    }, () => undefined, 2, 40);
    let released = false;
    w.after(5, () => (released = true));
    await tick(300);
    // 2+4+8+16+32+40+40+... ms: about 10 polls in 300 ms, not 150
    expect(asks).toBeLessThan(20);
    fail = true;
    await tick(100);
    expect(released).toBe(false);
    w.releaseAll();
    expect(released).toBe(true);
  });
});
