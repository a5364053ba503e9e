import { describe, expect, it } from 'vitest';
import {
  EntryMasks,
  decodeContextEntry,
  decodePte,
  decodeRootEntry,
  encodeContextEntry,
  encodePte,
  encodeRootEntry,
  tableIndex,
} from '../../src/abi/vtd-entries.js';
import { SIZE_1G, SIZE_2M, SIZE_4K, SecondLevelTable } from './pagetable.js';
import { BumpFrames, SparseMemory, readU64 } from '../../src/memory/physmem.js';

describe('entry bit layouts', () => {
  it('root entry: P bit 0, CTP from bit 12, high qword zero', () => {
    expect(encodeRootEntry({ present: true, contextTable: 0x12_3456_7000 })).toEqual({ lo: 0x12_3456_7001n, hi: 0n });
    expect(decodeRootEntry(0x12_3456_7001n)).toEqual({ present: true, contextTable: 0x12_3456_7000 });
  });

  it('context entry: P 0, FPD 1, TT 3:2, SLPTPTR 63:12; AW 2:0 and DID 23:8 in the high qword', () => {
    const e = { present: true, fpd: true, tt: 2, slptptr: 0xabc_d000, aw: 2, did: 0xbeef };
    const { lo, hi } = encodeContextEntry(e);
    expect(lo).toBe(0xabc_d000n | (2n << 2n) | 2n | 1n);
    expect(hi).toBe((0xbeefn << 8n) | 2n);
    expect(decodeContextEntry(lo, hi)).toEqual(e);
  });

  it('second-level PTE: R 0, W 1, PS 7, SNP 11, address from bit 12', () => {
    const v = encodePte({ read: true, write: false, superpage: true, snoop: true, addr: 0x40_0020_0000 });
    expect(v).toBe(0x40_0020_0000n | 0x80n | 0x800n | 1n);
    expect(decodePte(v | (1n << 62n), 48)).toEqual({ read: true, write: false, superpage: true, snoop: true, addr: 0x40_0020_0000 });
  });

  it('indexes a level by 9 bits above the page offset', () => {
    const iova = (0x1a5 * 2 ** 39) + (0x0c3 * 2 ** 30) + (0x1ff * 2 ** 21) + (0x007 * 2 ** 12) + 0x123;
    expect([4, 3, 2, 1].map((l) => tableIndex(iova, l))).toEqual([0x1a5, 0x0c3, 0x1ff, 0x007]);
  });

  it('reserved masks depend on HAW and superpage support', () => {
    const m39 = new EntryMasks({ haw: 39, sllps2m: true, sllps1g: false, snoopControl: true, deviceTlb: true });
    expect(m39.ptrHi).toBe(0x7f);
    expect(m39.pteLo[2 * 2 + 1]).toBe(0x1ff000); // 2 MiB leaf: address bits 20:12 must be 0
    expect(m39.pteLo[3 * 2 + 1]).toBe(0x80); // no 1 GiB pages: PS itself reserved
    expect(m39.pteLo[4 * 2 + 0] & 0x80).toBe(0x80); // PS reserved at level 4
    expect(m39.ptr(0x1234_5fff, 0xffff_ffff)).toBe(0x7f_1234_5000);
  });
});

describe('OS-side second-level tables', () => {
  const mk = (levels: 3 | 4 = 4) => {
    const mem = new SparseMemory(2 ** 34);
    const t = new SecondLevelTable(mem, new BumpFrames(mem, 0x10_0000), levels);
    return { mem, t };
  };
  const RW = { read: true, write: true };

  it('maps, looks up, protects and unmaps pages of every size', () => {
    const { t } = mk();
    t.map(0x1000, 0x20_0000, SIZE_4K, RW);
    t.map(SIZE_2M * 3, SIZE_2M * 9, SIZE_2M, { read: true, write: false });
    t.map(SIZE_1G * 2, SIZE_1G, SIZE_1G, RW);
    expect(t.lookup(0x1abc)).toEqual({ iova: 0x1abc, pa: 0x20_0abc, size: SIZE_4K, read: true, write: true });
    expect(t.lookup(SIZE_2M * 3 + 5)).toMatchObject({ pa: SIZE_2M * 9 + 5, size: SIZE_2M, write: false });
    expect(t.lookup(SIZE_1G * 2 + SIZE_2M)).toMatchObject({ pa: SIZE_1G + SIZE_2M, size: SIZE_1G });
    expect(t.protect(0x1000, { read: true, write: false })).toMatchObject({ write: false });
    expect(t.lookup(0x1000)?.write).toBe(false);
    expect(t.unmap(SIZE_2M * 3 + 0x5000)).toMatchObject({ iova: SIZE_2M * 3, size: SIZE_2M });
    expect(t.lookup(SIZE_2M * 3)).toBeNull();
    expect(t.unmap(0x9000)).toBeNull();
  });

  it('writes intermediate entries with R and W so only leaves restrict access', () => {
    const { mem, t } = mk();
    t.map(0x1000, 0x20_0000, SIZE_4K, { read: true, write: false });
    for (const level of [4, 3, 2]) expect(readU64(mem, t.entryAddress(0x1000, level) as number) & 3n).toBe(3n);
    expect(readU64(mem, t.entryAddress(0x1000, 1) as number)).toBe(0x20_0001n);
  });

  it('refuses overlapping, misaligned or out-of-width mappings', () => {
    const { t } = mk(3);
    t.map(0, 0, SIZE_2M, RW);
    expect(() => t.map(0x1000, 0x1000, SIZE_4K, RW)).toThrow(/superpage/);
    expect(() => t.map(0, 0x20_0000, SIZE_2M, RW)).toThrow(/already mapped/);
    expect(() => t.map(0x1800, 0x1000, SIZE_4K, RW)).toThrow(/aligned/);
    expect(() => t.map(2 ** 39, 0x1000, SIZE_4K, RW)).toThrow(/39-bit/);
    expect(() => t.map(SIZE_4K, 0x1000, SIZE_4K, { read: false, write: false })).toThrow(/permission/);
  });
});
