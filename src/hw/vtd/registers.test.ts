import { describe, expect, it } from 'vitest';
import { SparseMemory } from '../../memory/physmem.js';
import { FSTS_PFO, GCMD_QIE, GCMD_SRTP, GCMD_TE, GCMD_WBF, GSTS_QIES, GSTS_RTPS, GSTS_TES, REG } from '../../abi/vtd-registers.js';
import { VtdUnit } from './unit.js';

function unit(opts: ConstructorParameters<typeof VtdUnit>[1] = {}): { u: VtdUnit; logs: string[] } {
  const logs: string[] = [];
  const u = new VtdUnit(new SparseMemory(2 ** 32), { ...opts, log: (m) => logs.push(m) });
  return { u, logs };
}

const gsts = (u: VtdUnit): number => Number(u.mmioRead(REG.GSTS, 4));

describe('VT-d register file', () => {
  it('advertises what the model implements in VER, CAP and ECAP', () => {
    const { u } = unit({ addressWidth: 48, cachingMode: true, faultRecords: 4 });
    const cap = u.mmioRead(REG.CAP, 8);
    const f = (v: bigint, s: number, n: number): number => Number((v >> BigInt(s)) & ((1n << BigInt(n)) - 1n));
    expect(Number(u.mmioRead(REG.VER, 4))).toBe(0x10);
    expect(f(cap, 0, 3)).toBe(6); // ND: 65536 domains
    expect(f(cap, 7, 1)).toBe(1); // CM
    expect(f(cap, 8, 5)).toBe(0b110); // SAGAW: 39 and 48 bits
    expect(f(cap, 16, 6)).toBe(47); // MGAW - 1
    expect(f(cap, 24, 10) * 16).toBe(REG.FRCD);
    expect(f(cap, 34, 2)).toBe(0b11); // SLLPS 2M + 1G
    expect(f(cap, 39, 1)).toBe(1); // PSI
    expect(f(cap, 40, 8)).toBe(3); // NFR - 1
    const ecap = u.mmioRead(REG.ECAP, 8);
    expect(f(ecap, 1, 1)).toBe(1); // QI
    expect(f(ecap, 6, 1)).toBe(1); // PT
    expect(f(ecap, 8, 10) * 16).toBe(REG.IVA);
    const { u: u39 } = unit({ addressWidth: 39, superpages: { '1G': false } });
    expect(f(u39.mmioRead(REG.CAP, 8), 8, 5)).toBe(0b010);
    expect(f(u39.mmioRead(REG.CAP, 8), 34, 2)).toBe(0b01);
  });

  it('GCMD is write-only; persistent bits follow into GSTS, one-shot bits complete at once', () => {
    const { u } = unit();
    u.mmioWrite(REG.RTADDR, 8, 0x10_0000n);
    u.mmioWrite(REG.GCMD, 4, GCMD_SRTP);
    expect(gsts(u) & GSTS_RTPS).toBe(GSTS_RTPS);
    expect(u.mmioRead(REG.GCMD, 4)).toBe(0n);
    u.mmioWrite(REG.GCMD, 4, GCMD_TE >>> 0);
    expect((gsts(u) & GSTS_TES) !== 0).toBe(true);
    expect(u.translationEnabled).toBe(true);
    u.mmioWrite(REG.GCMD, 4, (GCMD_TE | GCMD_WBF | GCMD_QIE) >>> 0);
    expect(gsts(u) & GSTS_QIES).toBe(GSTS_QIES);
    expect(gsts(u) & (1 << 27)).toBe(0); // WBFS cleared: the flush completed
    u.mmioWrite(REG.GCMD, 4, GCMD_QIE); // TE dropped from the persistent set: translation off
    expect(u.translationEnabled).toBe(false);
    expect(gsts(u) & GSTS_RTPS).toBe(GSTS_RTPS);
  });

  it('read-only registers and bits cannot be written', () => {
    const { u, logs } = unit();
    const cap = u.mmioRead(REG.CAP, 8);
    u.mmioWrite(REG.CAP, 8, 0n);
    u.mmioWrite(REG.GSTS, 4, 0xffffffff);
    u.mmioWrite(REG.IQH, 8, 0x100n);
    u.mmioWrite(REG.FRCD, 8, 0x1234000n);
    expect(u.mmioRead(REG.CAP, 8)).toBe(cap);
    expect(u.mmioRead(REG.GSTS, 4)).toBe(0n);
    expect(u.mmioRead(REG.IQH, 8)).toBe(0n);
    expect(u.mmioRead(REG.FRCD, 8)).toBe(0n);
    expect(logs.filter((l) => l.includes('read-only'))).toHaveLength(4);
    // FSTS.PPF and FRI are read-only inside a writable register
    u.mmioWrite(REG.FSTS, 4, 0xff02);
    expect(u.mmioRead(REG.FSTS, 4)).toBe(0n);
  });

  it('drops reserved bits and logs them', () => {
    const { u, logs } = unit();
    u.mmioWrite(REG.RTADDR, 8, 0x12_3456_7fffn);
    expect(u.mmioRead(REG.RTADDR, 8)).toBe(0x12_3456_7000n);
    u.mmioWrite(REG.IQA, 8, 0x20_0000n | (1n << 11n) | 2n); // DW=1 needs scalable mode
    expect(u.mmioRead(REG.IQA, 8)).toBe(0x20_0002n);
    expect(logs.filter((l) => l.includes('reserved'))).toHaveLength(2);
  });

  it('ignores unaligned, mis-sized and unknown accesses without throwing', () => {
    const { u, logs } = unit();
    const before = u.regs.ignored;
    u.mmioWrite(REG.RTADDR + 2, 4, 0xffffffff);
    u.mmioWrite(0x500, 4, 1);
    u.mmioWrite(0xfff_fff0, 8, 1n);
    u.mmioWrite(2 ** 40, 4, 1);
    u.mmioWrite(-8, 8, 1n);
    u.mmioWrite(REG.GCMD, 8, 0xffff_ffff_ffff_ffffn); // 8 bytes across GCMD/GSTS
    u.mmioWrite(REG.FSTS, 4, Number.NaN);
    u.mmioWrite(REG.RTADDR, 3 as 4, 1);
    expect(u.mmioRead(0x504, 4)).toBe(0n);
    expect(u.mmioRead(REG.RTADDR + 1, 4)).toBe(0n);
    expect(u.regs.ignored - before).toBe(10);
    expect(logs).toHaveLength(10);
    expect(u.translationEnabled).toBe(false);
  });

  it('supports 32-bit halves of 64-bit registers and keeps W1C bits of the other half', () => {
    const { u } = unit();
    u.mmioWrite(REG.RTADDR, 4, 0x5000);
    u.mmioWrite(REG.RTADDR + 4, 4, 0x12);
    expect(u.mmioRead(REG.RTADDR, 8)).toBe(0x12_0000_5000n);
    expect(u.mmioRead(REG.RTADDR + 4, 4)).toBe(0x12n);
    u.regs.set(REG.FRCD + 8, (1n << 63n) | 7n); // a pending record
    u.mmioWrite(REG.FRCD + 8, 4, 0xffffffff); // low half: SID is read-only, F untouched
    expect(u.mmioRead(REG.FRCD + 8, 8)).toBe((1n << 63n) | 7n);
    u.mmioWrite(REG.FRCD + 12, 4, 0x8000_0000);
    expect(u.mmioRead(REG.FRCD + 8, 8)).toBe(7n);
  });

  it('FSTS error bits are write-1-to-clear', () => {
    const { u } = unit();
    u.regs.set32(REG.FSTS, FSTS_PFO | (1 << 4));
    u.mmioWrite(REG.FSTS, 4, 0);
    expect(u.mmioRead(REG.FSTS, 4)).toBe(BigInt(FSTS_PFO | (1 << 4)));
    u.mmioWrite(REG.FSTS, 4, FSTS_PFO);
    expect(u.mmioRead(REG.FSTS, 4)).toBe(BigInt(1 << 4));
  });
});
