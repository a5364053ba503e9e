// The VT-d register file as the unit holds it: per-bit write semantics (read-only,
// write-1-to-clear, reserved). Side effects of writes (GCMD commands, invalidations, queue
// processing) belong to the unit; this module only decides which bits a write may change, so a
// hostile driver cannot set a status bit, clear a read-only field or crash the model.
import { REG, type RegName, GCMD_TE, GCMD_SRTP, GCMD_SFL, GCMD_WBF, GCMD_QIE, GCMD_IRE, GCMD_SIRTP, GCMD_CFI, FSTS_PFO, FSTS_IQE, FSTS_ICE, FSTS_ITE, FECTL_IM, ICS_IWC, FRCD_F, REG_SPACE } from '../../abi/vtd-registers.js';

export interface RegDef {
  name: RegName;
  off: number;
  size: 4 | 8;
  /** Bits software writes directly. */
  writable: bigint;
  /** Bits cleared by writing 1. */
  w1c: bigint;
  /** Bits that must be written as 0; a write setting one is logged and the bits dropped. */
  reserved: bigint;
  /** GCMD: a command register that reads back as 0. */
  writeOnly?: boolean;
  /** FRCD record number. */
  index?: number;
}

export interface RegWrite {
  def: RegDef;
  old: bigint;
  value: bigint;
  /** The bits this access wrote, positioned within the register. */
  written: bigint;
}

const M32 = 0xffffffffn;
const M64 = (1n << 64n) - 1n;
const range = (hi: number, lo: number): bigint => ((1n << BigInt(hi - lo + 1)) - 1n) << BigInt(lo);
const NONE = 0n;

function defs(nfr: number): RegDef[] {
  const ro = (name: RegName, off: number, size: 4 | 8): RegDef => ({ name, off, size, writable: NONE, w1c: NONE, reserved: NONE });
  const list: RegDef[] = [
    ro('VER', REG.VER, 4),
    ro('CAP', REG.CAP, 8),
    ro('ECAP', REG.ECAP, 8),
    {
      name: 'GCMD',
      off: REG.GCMD,
      size: 4,
      writable: BigInt(GCMD_TE | GCMD_SRTP | GCMD_SFL | GCMD_WBF | GCMD_QIE | GCMD_IRE | GCMD_SIRTP | GCMD_CFI) & M32,
      w1c: NONE,
      reserved: range(28, 28) | range(22, 0),
      writeOnly: true,
    },
    ro('GSTS', REG.GSTS, 4),
    { name: 'RTADDR', off: REG.RTADDR, size: 8, writable: range(63, 12), w1c: NONE, reserved: range(11, 0) },
    {
      name: 'CCMD',
      off: REG.CCMD,
      size: 8,
      writable: range(63, 61) | range(33, 0),
      w1c: NONE,
      reserved: range(58, 34),
    },
    {
      name: 'FSTS',
      off: REG.FSTS,
      size: 4,
      writable: NONE,
      w1c: BigInt(FSTS_PFO | FSTS_IQE | FSTS_ICE | FSTS_ITE),
      reserved: range(31, 16),
    },
    { name: 'FECTL', off: REG.FECTL, size: 4, writable: BigInt(FECTL_IM) & M32, w1c: NONE, reserved: range(29, 0) },
    { name: 'FEDATA', off: REG.FEDATA, size: 4, writable: M32, w1c: NONE, reserved: NONE },
    { name: 'FEADDR', off: REG.FEADDR, size: 4, writable: range(31, 2), w1c: NONE, reserved: range(1, 0) },
    { name: 'FEUADDR', off: REG.FEUADDR, size: 4, writable: M32, w1c: NONE, reserved: NONE },
    ro('IQH', REG.IQH, 8),
    { name: 'IQT', off: REG.IQT, size: 8, writable: range(18, 4), w1c: NONE, reserved: range(63, 19) | range(3, 0) },
    // DW (bit 11) asks for 256-bit descriptors, which only scalable-mode hardware has.
    { name: 'IQA', off: REG.IQA, size: 8, writable: range(63, 12) | range(2, 0), w1c: NONE, reserved: range(11, 3) },
    { name: 'ICS', off: REG.ICS, size: 4, writable: NONE, w1c: BigInt(ICS_IWC), reserved: range(31, 1) },
    { name: 'IECTL', off: REG.IECTL, size: 4, writable: BigInt(FECTL_IM) & M32, w1c: NONE, reserved: range(29, 0) },
    { name: 'IEDATA', off: REG.IEDATA, size: 4, writable: M32, w1c: NONE, reserved: NONE },
    { name: 'IEADDR', off: REG.IEADDR, size: 4, writable: range(31, 2), w1c: NONE, reserved: range(1, 0) },
    { name: 'IEUADDR', off: REG.IEUADDR, size: 4, writable: M32, w1c: NONE, reserved: NONE },
    ro('IQER', REG.IQER, 8),
    { name: 'IRTA', off: REG.IRTA, size: 8, writable: range(63, 12) | range(11, 11) | range(3, 0), w1c: NONE, reserved: range(10, 4) },
    { name: 'IVA', off: REG.IVA, size: 8, writable: range(63, 12) | range(6, 0), w1c: NONE, reserved: range(11, 7) },
    {
      name: 'IOTLB',
      off: REG.IOTLB,
      size: 8,
      writable: range(63, 63) | range(61, 60) | range(49, 32),
      w1c: NONE,
      reserved: range(62, 62) | range(56, 50) | range(31, 0),
    },
  ];
  for (let i = 0; i < nfr; i++) {
    list.push({ ...ro('FRCD_LO', REG.FRCD + 16 * i, 8), index: i });
    list.push({ name: 'FRCD_HI', off: REG.FRCD + 16 * i + 8, size: 8, writable: NONE, w1c: FRCD_F, reserved: NONE, index: i });
  }
  return list;
}

export type RegLog = (msg: string) => void;

const hex = (n: number | bigint): string => '0x' + n.toString(16);

export class RegisterFile {
  private readonly byDword = new Map<number, RegDef>();
  private readonly values = new Map<number, bigint>();
  /** Accesses that were dropped in whole or part; hostile drivers show up here. */
  ignored = 0;

  constructor(
    readonly nfr: number,
    private readonly log: RegLog,
  ) {
    for (const d of defs(nfr)) {
      for (let o = d.off; o < d.off + d.size; o += 4) this.byDword.set(o >> 2, d);
      this.values.set(d.off, 0n);
    }
  }

  /** Hardware-side read of a whole register. */
  get(off: number): bigint {
    return this.values.get(off) ?? 0n;
  }

  /** Hardware-side update, bypassing software write rules. */
  set(off: number, value: bigint): void {
    const d = this.byDword.get(off >> 2);
    if (d === undefined || d.off !== off) throw new Error(`no register at ${hex(off)}`);
    this.values.set(off, value & (d.size === 8 ? M64 : M32));
  }

  get32(off: number): number {
    return Number(this.get(off) & M32);
  }

  set32(off: number, value: number): void {
    this.set(off, BigInt(value >>> 0));
  }

  read(off: number, size: number): bigint {
    const d = this.locate(off, size, 'read');
    if (d === undefined || d.writeOnly) return 0n;
    const shift = BigInt((off - d.off) * 8);
    return (this.get(d.off) >> shift) & (size === 8 ? M64 : M32);
  }

  write(off: number, size: number, value: bigint): RegWrite | null {
    const d = this.locate(off, size, 'write');
    if (d === undefined) return null;
    if (d.writable === NONE && d.w1c === NONE) {
      this.drop(`write ${hex(value)} to read-only register ${d.name} ignored`);
      return null;
    }
    const shift = BigInt((off - d.off) * 8);
    const written = (BigInt.asUintN(size * 8, value) << shift) & (d.size === 8 ? M64 : M32);
    const bad = written & d.reserved;
    if (bad !== NONE) this.drop(`write to ${d.name}${d.index === undefined ? '' : d.index} sets reserved bits ${hex(bad)}; they are dropped`);
    const enables = (size === 8 ? M64 : M32) << shift;
    const old = this.get(d.off);
    let next = (old & ~(enables & d.writable)) | (written & d.writable);
    next &= ~(written & d.w1c);
    this.values.set(d.off, next);
    return { def: d, old, value: next, written };
  }

  private locate(off: number, size: number, what: string): RegDef | undefined {
    if (!Number.isSafeInteger(off) || off < 0 || (size !== 4 && size !== 8) || off % size !== 0) {
      this.drop(`${what} of size ${size} at ${hex(off)}: only aligned 4- and 8-byte accesses exist`);
      return undefined;
    }
    const d = off < REG_SPACE ? this.byDword.get(off >> 2) : undefined;
    if (d === undefined) {
      this.drop(`${what} at ${hex(off)}: no register there`);
      return undefined;
    }
    if (size === 8 && (d.size !== 8 || d.off !== off)) {
      this.drop(`${what} of 8 bytes at ${hex(off)} does not cover exactly one 64-bit register`);
      return undefined;
    }
    return d;
  }

  private drop(msg: string): void {
    this.ignored++;
    this.log(msg);
  }
}
