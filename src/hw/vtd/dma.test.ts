import { describe, expect, it } from 'vitest';
import { SIZE_4K } from '../../../iommu/vtd/pagetable.js';
import { makeTestbed, sidOf } from './testbed.js';

const RW = { read: true, write: true };
const SID = sidOf(2, 0, 0);

describe('device DMA through the unit', () => {
  it('splits a transfer at page boundaries onto scattered frames', () => {
    const tb = makeTestbed();
    const t = tb.attach(2, 0, 1);
    const frames = [0x4000_7000, 0x4000_2000, 0x4001_0000];
    frames.forEach((pa, i) => t.map(0x10_0000 + i * SIZE_4K, pa, SIZE_4K, RW));
    const data = new Uint8Array(2 * SIZE_4K + 100).map((_, i) => (i * 7) & 0xff);
    expect(tb.unit.dmaWrite(SID, 0x10_0f00, data)).toEqual({ ok: true });
    // 0x100 bytes in the first page, 4 KiB in the second, the rest in the third
    const back = new Uint8Array(data.length);
    tb.mem.read(0x4000_7f00, back.subarray(0, 0x100));
    tb.mem.read(0x4000_2000, back.subarray(0x100, 0x1100));
    tb.mem.read(0x4001_0000, back.subarray(0x1100));
    expect(back).toEqual(data);
    const again = new Uint8Array(data.length);
    expect(tb.unit.dmaRead(SID, 0x10_0f00, again)).toEqual({ ok: true });
    expect(again).toEqual(data);
  });

  it('aborts the whole DMA when any page faults, leaving memory and the buffer untouched', () => {
    const tb = makeTestbed();
    const t = tb.attach(2, 0, 1);
    t.map(0x10_0000, 0x4000_0000, SIZE_4K, RW);
    t.map(0x10_1000, 0x4000_1000, SIZE_4K, RW);
    t.map(0x10_2000, 0x4000_2000, SIZE_4K, { read: true, write: false });
    const pagesBefore = tb.mem.populatedPages;
    expect(tb.unit.dmaWrite(SID, 0x10_0000, new Uint8Array(3 * SIZE_4K).fill(0xaa))).toEqual({ ok: false, reason: 5, iova: 0x10_2000, kind: 'fault' });
    expect(tb.mem.populatedPages).toBe(pagesBefore);
    const probe = new Uint8Array(SIZE_4K);
    tb.mem.read(0x4000_0000, probe);
    expect(probe.every((b) => b === 0)).toBe(true);
    const buf = new Uint8Array(2 * SIZE_4K).fill(0x11);
    expect(tb.unit.dmaRead(SID, 0x10_0800, buf)).toEqual({ ok: true });
    const far = new Uint8Array(SIZE_4K).fill(0x33);
    expect(tb.unit.dmaRead(SID, 0x10_2800, far)).toMatchObject({ ok: false, reason: 6, iova: 0x10_3000 });
    expect(far.every((b) => b === 0x33)).toBe(true);
    expect(tb.unit.pendingFaults()).toMatchObject([{ sid: SID, reason: 5, address: 0x10_2000n, write: true }]);
  });

  it('reports a translated address outside memory as an unbacked abort, not a fault', () => {
    const tb = makeTestbed({ memSize: 2 ** 32 });
    const t = tb.attach(2, 0, 1);
    t.map(0x1000, 0x8_0000_0000, SIZE_4K, RW);
    expect(tb.unit.dmaWrite(SID, 0x1000, new Uint8Array(8))).toEqual({ ok: false, reason: 0, iova: 0x1000, kind: 'unbacked' });
    expect(tb.faults).toHaveLength(0);
  });

  it('an attacking device aimed past the address width or at another domain gets a fault record and changes nothing', () => {
    const tb = makeTestbed();
    const mine = tb.attach(2, 0, 1);
    const theirs = tb.attach(5, 0, 2);
    mine.map(0x1000, 0x4000_0000, SIZE_4K, RW);
    theirs.map(0x1000, 0x5000_0000, SIZE_4K, RW);
    const secret = new Uint8Array(64).fill(0x5e);
    tb.mem.write(0x5000_0000, secret);
    for (const iova of [0x5000_0000, 0x2000, 2 ** 48 + 0x1000, tb.root.pa]) {
      expect(tb.unit.dmaWrite(SID, iova, new Uint8Array(64))).toMatchObject({ ok: false, kind: 'fault' });
      tb.drv.drainFaults();
    }
    const now = new Uint8Array(64);
    tb.mem.read(0x5000_0000, now);
    expect(now).toEqual(secret);
    expect(tb.faults.map((f) => [f.sid, f.reason])).toEqual([
      [SID, 5],
      [SID, 5],
      [SID, 4],
      [SID, 5],
    ]);
  });
});
