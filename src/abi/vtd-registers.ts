// The VT-d register layout: offsets, field positions, command and status bits, CAP/ECAP
// encodings. Defined once for the driver hv runs and the unit hw runs; which bits a write may
// change is the unit's (register-file.ts).

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

/** One 4 KiB MMIO page holds every register we model. */
export const REG_SPACE = 0x1000;
