import { describe, expect, it } from 'vitest';
import { TT_DEVICE_TLB } from '../../abi/vtd-entries.js';
import { SIZE_2M, SIZE_4K } from '../../../iommu/vtd/pagetable.js';
import { readU64, writeU64 } from '../../memory/physmem.js';
import { FECTL_IM, FSTS_PFO, FSTS_PPF, REG } from '../../abi/vtd-registers.js';
import { makeTestbed, sidOf } from './testbed.js';
import type { Testbed } from './testbed.js';

const RW = { read: true, write: true };
const SID = sidOf(3, 0, 0);

/** Provokes one DMA and returns the reason the unit reported and recorded. */
function fault(tb: Testbed, sid: number, iova: number, access: 'r' | 'w'): number {
  const r = tb.unit.translate(sid, iova, access);
  expect(r.ok).toBe(false);
  return r.ok ? 0 : r.reason;
}

function lastRecord(tb: Testbed) {
  const p = tb.unit.pendingFaults();
  return p[p.length - 1];
}

describe('every DMA-remapping fault reason 1..0xD', () => {
  it('0x1 root entry not present', () => {
    const tb = makeTestbed();
    expect(fault(tb, sidOf(9, 1, 0), 0x1000, 'r')).toBe(0x1);
    expect(lastRecord(tb)).toMatchObject({ sid: sidOf(9, 1, 0), reason: 1, address: 0x1000n, write: false });
  });

  it('0x2 context entry not present', () => {
    const tb = makeTestbed();
    tb.attach(3, 0, 1);
    expect(fault(tb, sidOf(3, 0, 1), 0x5000, 'w')).toBe(0x2);
    expect(lastRecord(tb)).toMatchObject({ sid: sidOf(3, 0, 1), reason: 2, address: 0x5000n, write: true });
  });

  it('0x3 invalid context entry: AW not in SAGAW, or reserved TT', () => {
    const tb = makeTestbed({ addressWidth: 39 });
    tb.attach(3, 0, 1, { aw: 2 }); // 48-bit tables on a 39-bit unit
    expect(fault(tb, SID, 0x1000, 'r')).toBe(0x3);
    tb.attach(3, 8, 2, { levels: 3, tt: 3 });
    expect(fault(tb, sidOf(3, 1, 0), 0x1000, 'r')).toBe(0x3);
  });

  it('0x4 address beyond the domain width (3- and 4-level)', () => {
    const tb = makeTestbed();
    tb.attach(3, 0, 1);
    tb.attach(3, 8, 2, { levels: 3 });
    expect(fault(tb, SID, 2 ** 48, 'r')).toBe(0x4);
    expect(fault(tb, sidOf(3, 1, 0), 2 ** 39 + 0x1000, 'w')).toBe(0x4);
    expect(fault(tb, sidOf(7, 2, 0), 2 ** 60, 'w')).toBe(0x1); // context checks come first
  });

  it('0x5 write without W, 0x6 read without R, and not-present PTEs report the same', () => {
    const tb = makeTestbed();
    const t = tb.attach(3, 0, 1);
    t.map(0x1000, 0x4000_0000, SIZE_4K, { read: true, write: false });
    t.map(0x2000, 0x4000_1000, SIZE_4K, { read: false, write: true });
    expect(fault(tb, SID, 0x1000, 'w')).toBe(0x5);
    tb.drv.drainFaults();
    expect(fault(tb, SID, 0x2000, 'r')).toBe(0x6);
    tb.drv.drainFaults();
    expect(fault(tb, SID, 0x9000, 'r')).toBe(0x6);
    tb.drv.drainFaults();
    expect(fault(tb, SID, 0x9000, 'w')).toBe(0x5);
  });

  it('0x7 next-level pointer outside memory', () => {
    const tb = makeTestbed({ memSize: 2 ** 32 });
    const t = tb.attach(3, 0, 1);
    t.map(0x1000, 0x4000_0000, SIZE_4K, RW);
    const l4 = t.entryAddress(0x1000, 4) as number;
    writeU64(tb.mem, l4, 0x10_0000_0000n | 3n); // 64 GiB: not backed
    expect(fault(tb, SID, 0x1000, 'r')).toBe(0x7);
  });

  it('0x8 root table address outside memory', () => {
    const tb = makeTestbed({ memSize: 2 ** 32 });
    tb.drv.setRootTable(2 ** 40);
    expect(fault(tb, SID, 0x1000, 'r')).toBe(0x8);
  });

  it('0x9 context table pointer outside memory', () => {
    const tb = makeTestbed({ memSize: 2 ** 32 });
    writeU64(tb.mem, tb.root.rootEntryAddress(5), 0x20_0000_0000n | 1n);
    expect(fault(tb, sidOf(5, 0, 0), 0x1000, 'r')).toBe(0x9);
  });

  it('0xA reserved bits in a root entry', () => {
    const tb = makeTestbed();
    tb.attach(3, 0, 1);
    const re = tb.root.rootEntryAddress(3);
    writeU64(tb.mem, re + 8, 1n); // the high qword is reserved in legacy mode
    expect(fault(tb, SID, 0x1000, 'r')).toBe(0xa);
    writeU64(tb.mem, re + 8, 0n);
    writeU64(tb.mem, re, readU64(tb.mem, re) | 0x10n);
    tb.drv.flushContextGlobal();
    expect(fault(tb, sidOf(3, 0, 1), 0x1000, 'r')).toBe(0xa);
  });

  it('0xB reserved bits in a context entry (recorded even with FPD set)', () => {
    const tb = makeTestbed();
    tb.attach(3, 0, 1, { fpd: true });
    const ce = tb.root.contextEntryAddress(3, 0) as number;
    writeU64(tb.mem, ce + 8, readU64(tb.mem, ce + 8) | 0x80n); // hi bit 7
    expect(fault(tb, SID, 0x1000, 'r')).toBe(0xb);
    expect(tb.faults[0].disposition).toBe('recorded');
  });

  it('0xC reserved bits in a paging entry: above HAW, PS at level 4, unsupported superpage size', () => {
    const tb = makeTestbed({ addressWidth: 39, superpages: { '2M': false } });
    const t = tb.attach(3, 0, 1, { levels: 3 });
    t.map(0x1000, 0x4000_0000, SIZE_4K, RW);
    const leaf = t.entryAddress(0x1000, 1) as number;
    writeU64(tb.mem, leaf, readU64(tb.mem, leaf) | (1n << 40n)); // bit 40 >= HAW 39
    expect(fault(tb, SID, 0x1000, 'r')).toBe(0xc);
    t.map(SIZE_2M * 4, 0x4000_2000, SIZE_4K, RW);
    const pde = t.entryAddress(SIZE_2M * 4, 2) as number;
    writeU64(tb.mem, pde, 0x8000_0000n | 0x80n | 3n); // a 2 MiB leaf the unit does not support
    tb.drv.drainFaults();
    expect(fault(tb, SID, SIZE_2M * 4, 'r')).toBe(0xc);

    const tb4 = makeTestbed();
    const t4 = tb4.attach(3, 0, 1);
    t4.map(0x1000, 0x4000_0000, SIZE_4K, RW);
    const pml4e = t4.entryAddress(0x1000, 4) as number;
    writeU64(tb4.mem, pml4e, readU64(tb4.mem, pml4e) | 0x80n); // no 512 GiB pages
    expect(fault(tb4, SID, 0x1000, 'r')).toBe(0xc);
  });

  it('0xD translated requests blocked by the context entry TT', () => {
    const tb = makeTestbed();
    tb.attach(3, 0, 1);
    expect(tb.unit.translatedRequest(SID, 0x4000_0000, 'w')).toEqual({ ok: false, reason: 0xd });
    expect(tb.unit.translationRequest(SID, 0x1000, 'r')).toEqual({ ok: false, reason: 0xd });
    expect(lastRecord(tb)).toMatchObject({ sid: SID, reason: 0xd });
    const t = tb.attach(3, 8, 2, { tt: TT_DEVICE_TLB });
    t.map(0x1000, 0x4000_0000, SIZE_4K, RW);
    expect(tb.unit.translatedRequest(sidOf(3, 1, 0), 0x4000_0000, 'w')).toEqual({ ok: true, addr: 0x4000_0000 });
    expect(tb.unit.translationRequest(sidOf(3, 1, 0), 0x1008, 'r')).toEqual({ ok: true, addr: 0x4000_0008 });
  });
});

describe('fault recording', () => {
  it('writes FRCD with FI, SID, FR and T, and sets PPF and FRI', () => {
    const tb = makeTestbed();
    tb.attach(3, 0, 1);
    fault(tb, SID, 0x1234_5678, 'r');
    const hi = tb.unit.mmioRead(REG.FRCD + 8, 8);
    expect(tb.unit.mmioRead(REG.FRCD, 8)).toBe(0x1234_5000n);
    expect(hi >> 63n).toBe(1n); // F
    expect((hi >> 62n) & 1n).toBe(1n); // T: read
    expect((hi >> 32n) & 0xffn).toBe(6n);
    expect(hi & 0xffffn).toBe(BigInt(SID));
    const fsts = Number(tb.unit.mmioRead(REG.FSTS, 4));
    expect(fsts & FSTS_PPF).toBe(FSTS_PPF);
    expect((fsts >> 8) & 0xff).toBe(0);
  });

  it('collapses a second fault from a SID that already has a pending record', () => {
    const tb = makeTestbed();
    tb.attach(3, 0, 1);
    fault(tb, SID, 0x1000, 'r');
    fault(tb, SID, 0x2000, 'w');
    expect(tb.unit.pendingFaults()).toHaveLength(1);
    expect(tb.faults.map((f) => f.disposition)).toEqual(['recorded', 'collapsed']);
    // once software clears F, the SID can be recorded again
    tb.unit.mmioWrite(REG.FRCD + 12, 4, 0x8000_0000);
    expect(Number(tb.unit.mmioRead(REG.FSTS, 4)) & FSTS_PPF).toBe(0);
    fault(tb, SID, 0x3000, 'r');
    expect(tb.unit.pendingFaults()).toMatchObject([{ index: 1, address: 0x3000n }]);
  });

  it('sets PFO when the next record is still pending, then drops faults until PFO is cleared', () => {
    const tb = makeTestbed({ faultRecords: 2 });
    fault(tb, sidOf(1, 0, 0), 0x1000, 'r');
    fault(tb, sidOf(2, 0, 0), 0x2000, 'r');
    fault(tb, sidOf(4, 0, 0), 0x3000, 'r');
    fault(tb, sidOf(5, 0, 0), 0x4000, 'r');
    expect(tb.faults.map((f) => f.disposition)).toEqual(['recorded', 'recorded', 'overflow', 'overflow']);
    expect(Number(tb.unit.mmioRead(REG.FSTS, 4)) & FSTS_PFO).toBe(FSTS_PFO);
    const drained = tb.drv.drainFaults();
    expect(drained.overflow).toBe(true);
    expect(drained.faults.map((f) => f.sid)).toEqual([sidOf(1, 0, 0), sidOf(2, 0, 0)]);
    expect(Number(tb.unit.mmioRead(REG.FSTS, 4)) & (FSTS_PFO | FSTS_PPF)).toBe(0);
    fault(tb, sidOf(6, 0, 0), 0x5000, 'r');
    expect(tb.unit.pendingFaults()).toHaveLength(1);
  });

  it('raises the fault event through FEDATA/FEADDR unless FECTL.IM masks it', () => {
    const tb = makeTestbed();
    expect((Number(tb.unit.mmioRead(REG.FECTL, 4)) & FECTL_IM) !== 0).toBe(true); // masked at reset
    fault(tb, sidOf(1, 0, 0), 0x1000, 'r');
    expect(tb.interrupts).toHaveLength(0);
    expect(Number(tb.unit.mmioRead(REG.FECTL, 4)) & (1 << 30)).not.toBe(0); // IP
    tb.unit.mmioWrite(REG.FEDATA, 4, 0x4021);
    tb.unit.mmioWrite(REG.FEADDR, 4, 0xfee0_0000);
    tb.unit.mmioWrite(REG.FECTL, 4, 0); // unmask: the pending event is sent
    expect(tb.interrupts).toEqual([{ source: 'fault-event', addr: 0xfee0_0000, data: 0x4021 }]);
    tb.drv.drainFaults();
    fault(tb, sidOf(2, 0, 0), 0x1000, 'r');
    expect(tb.interrupts).toHaveLength(2);
    fault(tb, sidOf(4, 0, 0), 0x1000, 'r'); // PPF already set: no new event
    expect(tb.interrupts).toHaveLength(2);
  });

  it('FPD suppresses qualified faults but the DMA still aborts', () => {
    const tb = makeTestbed();
    const t = tb.attach(3, 0, 1, { fpd: true });
    t.map(0x1000, 0x4000_0000, SIZE_4K, { read: true, write: false });
    const before = new Uint8Array(16);
    tb.mem.read(0x4000_0000, before);
    expect(tb.unit.dmaWrite(SID, 0x1000, new Uint8Array(16).fill(0xee))).toEqual({ ok: false, reason: 5, iova: 0x1000, kind: 'fault' });
    expect(fault(tb, SID, 2 ** 50, 'r')).toBe(4);
    expect(tb.unit.pendingFaults()).toHaveLength(0);
    expect(tb.faults.map((f) => [f.reason, f.disposition, f.did])).toEqual([
      [5, 'suppressed', 1],
      [4, 'suppressed', 1],
    ]);
    const after = new Uint8Array(16);
    tb.mem.read(0x4000_0000, after);
    expect(after).toEqual(before);
  });
});

describe('fault notices: only what changes the fault registers', () => {
  it('a device faulting at will makes one notice per new record and one for the overflow, and is counted otherwise', () => {
    const notices: string[] = [];
    const tb = makeTestbed({ faultRecords: 2, onFaultNotice: (f) => notices.push(`${f.sid}:${f.disposition}`) });
    tb.attach(3, 0, 1);
    tb.attach(4, 0, 1, { fpd: true });
    // one source faulting 1000 times: the first is recorded, the rest collapse onto it
    for (let i = 0; i < 1000; i++) fault(tb, SID, 0x1000 + i * 4096, 'r');
    expect(notices).toEqual([`${SID}:recorded`]);
    // FPD: nothing recorded, nothing sent
    for (let i = 0; i < 10; i++) fault(tb, sidOf(4, 0, 0), 0x1000, 'w');
    // a second source fills the last record, a third overflows it, once; further overflows are quiet
    fault(tb, sidOf(5, 0, 0), 0x1000, 'r');
    for (let i = 0; i < 50; i++) fault(tb, sidOf(6, 0, 0), 0x1000, 'r');
    expect(notices).toEqual([`${SID}:recorded`, `${sidOf(5, 0, 0)}:recorded`, `${sidOf(6, 0, 0)}:overflow`]);
    expect(tb.unit.stats).toMatchObject({ faults: 1061, faultsCollapsed: 999, faultsSuppressed: 10, faultsOverflowed: 50 });
    // every fault still reaches onFault, as the in-process platform attributes each one
    expect(tb.faults).toHaveLength(1061);
    // software clears PFO and the records: the next overflow is a new one and is told again
    tb.drv.drainFaults();
    fault(tb, sidOf(5, 0, 0), 0x1000, 'r');
    fault(tb, sidOf(6, 0, 0), 0x1000, 'r');
    fault(tb, sidOf(7, 0, 0), 0x1000, 'r');
    expect(notices.slice(3)).toEqual([`${sidOf(5, 0, 0)}:recorded`, `${sidOf(6, 0, 0)}:recorded`, `${sidOf(7, 0, 0)}:overflow`]);
  });
});
