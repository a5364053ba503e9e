// The VT-d register file: offsets, field positions and per-bit write semantics (read-only,
// write-1-to-clear, reserved). Side effects of writes (GCMD commands, invalidations, queue
// processing) belong to the unit; this module only decides which bits a write may change, so a
// hostile driver cannot set a status bit, clear a read-only field or crash the model.

export const REG = {
  VER: 0x0,
  CAP: 0x8,
  ECAP: 0x10,
  GCMD: 0x18,
  GSTS: 0x1c,
  RTADDR: 0x20,
  CCMD: 0x28,
  FSTS: 0x34,
  FECTL: 0x38,
  FEDATA: 0x3c,
  FEADDR: 0x40,
  FEUADDR: 0x44,
  IQH: 0x80,
  IQT: 0x88,
  IQA: 0x90,
  ICS: 0x9c,
  IECTL: 0xa0,
  IEDATA: 0xa4,
  IEADDR: 0xa8,
  IEUADDR: 0xac,
  IQER: 0xb0,
  IRTA: 0xb8,
  IVA: 0xf0, // ECAP.IRO * 16
  IOTLB: 0xf8,
  FRCD: 0x220, // CAP.FRO * 16; record i at FRCD + 16 * i
} as const;

export type RegName = keyof typeof REG | 'FRCD_LO' | 'FRCD_HI';

// GCMD command bits and the GSTS status bits at the same positions.
export const GCMD_TE = 0x80000000;
export const GCMD_SRTP = 1 << 30;
export const GCMD_SFL = 1 << 29;
export const GCMD_WBF = 1 << 27;
export const GCMD_QIE = 1 << 26;
export const GCMD_IRE = 1 << 25;
export const GCMD_SIRTP = 1 << 24;
export const GCMD_CFI = 1 << 23;
export const GSTS_TES = GCMD_TE;
export const GSTS_RTPS = GCMD_SRTP;
export const GSTS_FLS = GCMD_SFL;
export const GSTS_WBFS = GCMD_WBF;
export const GSTS_QIES = GCMD_QIE;
export const GSTS_IRES = GCMD_IRE;
export const GSTS_IRTPS = GCMD_SIRTP;
export const GSTS_CFIS = GCMD_CFI;

export const FSTS_PFO = 1 << 0;
export const FSTS_PPF = 1 << 1;
export const FSTS_IQE = 1 << 4;
export const FSTS_ICE = 1 << 5;
export const FSTS_ITE = 1 << 6;
export const FSTS_FRI_SHIFT = 8;

export const FECTL_IM = 0x80000000;
export const FECTL_IP = 1 << 30;
export const ICS_IWC = 1;

export const CCMD_ICC = 1n << 63n;
export const CCMD_CIRG_SHIFT = 61n;
export const CCMD_CAIG_SHIFT = 59n;
export const CCMD_FM_SHIFT = 32n;
export const CCMD_SID_SHIFT = 16n;

export const IOTLB_IVT = 1n << 63n;
export const IOTLB_IIRG_SHIFT = 60n;
export const IOTLB_IAIG_SHIFT = 57n;
export const IOTLB_DR = 1n << 49n;
export const IOTLB_DW = 1n << 48n;
export const IOTLB_DID_SHIFT = 32n;

export const IVA_IH = 1n << 6n;

/** Invalidation granularities shared by CCMD.CIRG, IOTLB.IIRG and the queued descriptors' G. */
export const GRAN_GLOBAL = 1;
export const GRAN_DOMAIN = 2;
export const GRAN_DEVICE_OR_PAGE = 3;

export const FRCD_F = 1n << 63n; // in the high qword: bit 127 of the record
export const FRCD_T = 1n << 62n; // bit 126: 1 = read

// MAMV: the largest page-selective invalidation we accept, 2^18 pages (1 GiB).
export const MAMV = 18;

export interface VtdCaps {
  addressWidth: 39 | 48;
  cachingMode: boolean;
  sllps2m: boolean;
  sllps1g: boolean;
  /** Number of fault recording registers. */
  nfr: number;
}

const bit = (n: number): bigint => 1n << BigInt(n);
const field = (v: number, shift: number): bigint => BigInt(v) << BigInt(shift);

export function capValue(c: VtdCaps): bigint {
  const sagaw = 0b010 | (c.addressWidth === 48 ? 0b100 : 0);
  return (
    field(6, 0) | // ND: 2^16 domain ids
    (c.cachingMode ? bit(7) : 0n) |
    field(sagaw, 8) |
    field(c.addressWidth - 1, 16) | // MGAW
    field(REG.FRCD >> 4, 24) | // FRO
    (c.sllps2m ? bit(34) : 0n) |
    (c.sllps1g ? bit(35) : 0n) |
    bit(39) | // PSI
    field(c.nfr - 1, 40) |
    field(MAMV, 48) |
    bit(54) | // DWD
    bit(55) // DRD
  );
}

/** QI, DT, PT and SC are on; interrupt remapping is not modelled, so IR/EIM stay clear. */
export function ecapValue(): bigint {
  return bit(1) | bit(2) | bit(6) | bit(7) | field(REG.IVA >> 4, 8);
}

export const ECAP_QI = 1n << 1n;
export const ECAP_DT = 1n << 2n;
export const ECAP_PT = 1n << 6n;
export const ECAP_SC = 1n << 7n;

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

/** One 4 KiB MMIO page holds every register we model. */
export const REG_SPACE = 0x1000;

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
