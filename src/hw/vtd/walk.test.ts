import { describe, expect, it } from 'vitest';
import { TT_PASS_THROUGH } from '../../abi/vtd-entries.js';
import { SIZE_1G, SIZE_2M, SIZE_4K } from '../../../iommu/vtd/pagetable.js';
import { makeTestbed, sidOf } from './testbed.js';

const RW = { read: true, write: true };
const RO = { read: true, write: false };
const WO = { read: false, write: true };
const SID = sidOf(3, 0, 0);

describe('second-level walk', () => {
  it('translates a 4 KiB page through a 4-level table, keeping the page offset', () => {
    const tb = makeTestbed();
    const t = tb.attach(3, 0, 1);
    t.map(0x7f12_3456_7000, 0x4000_5000, SIZE_4K, RW);
    expect(tb.unit.translate(SID, 0x7f12_3456_7abc, 'r')).toEqual({ ok: true, addr: 0x4000_5abc });
    expect(tb.unit.translate(SID, 0x7f12_3456_7000, 'w')).toEqual({ ok: true, addr: 0x4000_5000 });
    expect(tb.unit.stats.walks).toBe(1); // the write hit the IOTLB
  });

  it('translates through a 3-level (39-bit) table', () => {
    const tb = makeTestbed({ addressWidth: 39 });
    const t = tb.attach(3, 0, 1, { levels: 3 });
    t.map(0x40_1234_5000, 0x1_0000_2000, SIZE_4K, RW);
    expect(tb.unit.translate(SID, 0x40_1234_5010, 'w')).toEqual({ ok: true, addr: 0x1_0000_2010 });
  });

  it('translates 2 MiB superpages at level 2', () => {
    const tb = makeTestbed();
    const t = tb.attach(3, 0, 1);
    t.map(0x20_0000_0000 + SIZE_2M * 3, 0x8000_0000 + SIZE_2M, SIZE_2M, RW);
    expect(tb.unit.translate(SID, 0x20_0000_0000 + SIZE_2M * 3 + 0x1_2345, 'r')).toEqual({ ok: true, addr: 0x8000_0000 + SIZE_2M + 0x1_2345 });
    expect(tb.unit.iotlb.level[findSlot(tb.unit.iotlb)]).toBe(2);
  });

  it('translates 1 GiB superpages at level 3, in 4- and 3-level tables', () => {
    for (const levels of [4, 3] as const) {
      const tb = makeTestbed({ addressWidth: levels === 3 ? 39 : 48 });
      const t = tb.attach(3, 0, 1, { levels });
      t.map(SIZE_1G * 5, SIZE_1G * 2, SIZE_1G, RO);
      expect(tb.unit.translate(SID, SIZE_1G * 5 + 0x3abc_def0, 'r')).toEqual({ ok: true, addr: SIZE_1G * 2 + 0x3abc_def0 });
      expect(tb.unit.translate(SID, SIZE_1G * 5 + 0x3abc_def0, 'w')).toEqual({ ok: false, reason: 5 });
    }
  });

  it('enforces R and W per access and accumulates them across levels', () => {
    const tb = makeTestbed();
    const t = tb.attach(3, 0, 1);
    t.map(0x1000, 0x4000_1000, SIZE_4K, RO);
    t.map(0x2000, 0x4000_2000, SIZE_4K, WO);
    expect(tb.unit.translate(SID, 0x1000, 'r').ok).toBe(true);
    expect(tb.unit.translate(SID, 0x1000, 'w')).toEqual({ ok: false, reason: 5 });
    expect(tb.unit.translate(SID, 0x2000, 'w').ok).toBe(true);
    expect(tb.unit.translate(SID, 0x2000, 'r')).toEqual({ ok: false, reason: 6 });

    // a read-only intermediate entry makes every page below it read-only, whatever the leaf says
    t.map(0x40_0000_0000, 0x4000_3000, SIZE_4K, RW);
    const l3 = t.entryAddress(0x40_0000_0000, 3);
    expect(l3).not.toBeNull();
    const e = readU64(tb, l3 as number);
    writeU64(tb, l3 as number, e & ~2n);
    expect(tb.unit.translate(SID, 0x40_0000_0000, 'r').ok).toBe(true);
    expect(tb.unit.translate(SID, 0x40_0000_0000, 'w')).toEqual({ ok: false, reason: 5 });
  });

  it('passes addresses through unchanged for TT=2, still bounded by the host address width', () => {
    const tb = makeTestbed();
    tb.attach(3, 0, 1, { tt: TT_PASS_THROUGH });
    expect(tb.unit.translate(SID, 0x1234_5678, 'w')).toEqual({ ok: true, addr: 0x1234_5678 });
    expect(tb.unit.translate(SID, 2 ** 48, 'r')).toEqual({ ok: false, reason: 4 });
  });

  it('does not DMA-translate the interrupt window 0xFEE00000-0xFEEFFFFF', () => {
    const tb = makeTestbed();
    const t = tb.attach(3, 0, 1);
    t.map(0xfee0_0000, 0x4000_0000, SIZE_4K, RW); // a mapping there changes nothing
    expect(tb.unit.translate(SID, 0xfee0_0000, 'w')).toEqual({ ok: false, reason: 0 });
    expect(tb.unit.translate(SID, 0xfeef_fffc, 'r')).toEqual({ ok: false, reason: 0 });
    expect(tb.faults).toHaveLength(0);
    t.map(0xfed0_0000, 0x4000_1000, SIZE_4K, RW);
    t.map(0xfef0_0000, 0x4000_2000, SIZE_4K, RW);
    expect(tb.unit.translate(SID, 0xfed0_0ffc, 'w')).toEqual({ ok: true, addr: 0x4000_1ffc });
    expect(tb.unit.translate(SID, 0xfef0_0000, 'w')).toEqual({ ok: true, addr: 0x4000_2000 });

    const msi = new Uint8Array([0x41, 0, 0, 0]);
    expect(tb.unit.dmaWrite(SID, 0xfee0_1000, msi)).toEqual({ ok: true });
    expect(tb.interrupts).toEqual([{ source: 'msi', sid: SID, addr: 0xfee0_1000, data: 0x41 }]);
    expect(tb.unit.dmaRead(SID, 0xfee0_1000, new Uint8Array(4))).toMatchObject({ ok: false, kind: 'interrupt-window' });
  });

  it('leaves addresses untranslated while TE is off', () => {
    const tb = makeTestbed({ noEnable: true });
    expect(tb.unit.translationEnabled).toBe(false);
    expect(tb.unit.translate(SID, 0x1234_5000, 'w')).toEqual({ ok: true, addr: 0x1234_5000 });
    tb.drv.enableTranslation();
    expect(tb.unit.translate(SID, 0x1234_5000, 'w')).toEqual({ ok: false, reason: 1 });
  });

  it('serves IOTLB hits for every level without walking again', () => {
    const tb = makeTestbed();
    const t = tb.attach(3, 0, 1);
    t.map(0x1000, 0x4000_1000, SIZE_4K, RW);
    t.map(SIZE_2M * 8, SIZE_2M * 600, SIZE_2M, RW);
    t.map(SIZE_1G * 9, SIZE_1G * 3, SIZE_1G, RW);
    const addrs = [0x1008, SIZE_2M * 8 + 0x10_0008, SIZE_1G * 9 + 0x2000_0008];
    for (const a of addrs) tb.unit.translate(SID, a, 'r');
    const walks = tb.unit.stats.walks;
    const want = [0x4000_1008, SIZE_2M * 600 + 0x10_0008, SIZE_1G * 3 + 0x2000_0008];
    for (let i = 0; i < 3; i++) expect(tb.unit.translate(SID, addrs[i], 'w')).toEqual({ ok: true, addr: want[i] });
    expect(tb.unit.stats.walks).toBe(walks);
    expect(tb.unit.stats.iotlbHits).toBe(3);
  });

  it('keeps the IOTLB bounded', () => {
    const tb = makeTestbed({ iotlbEntries: 64, iotlbWays: 4 });
    const t = tb.attach(3, 0, 1);
    for (let i = 0; i < 500; i++) t.map(i * 0x1000, 0x4000_0000 + i * 0x1000, SIZE_4K, RW);
    for (let i = 0; i < 500; i++) expect(tb.unit.translate(SID, i * 0x1000 + 4, 'r')).toEqual({ ok: true, addr: 0x4000_0000 + i * 0x1000 + 4 });
    expect(tb.unit.iotlb.size).toBeLessThanOrEqual(64);
    for (let i = 0; i < 500; i++) expect(tb.unit.translate(SID, i * 0x1000 + 8, 'w')).toEqual({ ok: true, addr: 0x4000_0000 + i * 0x1000 + 8 });
  });
});

function findSlot(t: { valid: Uint8Array }): number {
  return t.valid.indexOf(1);
}

function readU64(tb: ReturnType<typeof makeTestbed>, pa: number): bigint {
  const b = new Uint8Array(8);
  tb.mem.read(pa, b);
  return new DataView(b.buffer).getBigUint64(0, true);
}

function writeU64(tb: ReturnType<typeof makeTestbed>, pa: number, v: bigint): void {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, v, true);
  tb.mem.write(pa, b);
}
