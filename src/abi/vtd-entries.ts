// Root entries, context entries and second-level PTEs in the legacy-mode VT-d bit layout.
// Two views of the same bits: BigInt encode/decode for the OS side (table builders, tests) and
// u32-half masks for the walk, which must not touch BigInt.

const TWO32 = 4294967296;

// ---- root entry (16 bytes, indexed by bus) ----
// lo: P 0, CTP [HAW-1:12]; hi: reserved (must be 0) in legacy mode.

export interface RootEntry {
  present: boolean;
  /** Physical address of the bus's context table. */
  contextTable: number;
}

export function encodeRootEntry(e: RootEntry): { lo: bigint; hi: bigint } {
  checkFrame(e.contextTable, 'context table');
  return { lo: BigInt(e.contextTable) | (e.present ? 1n : 0n), hi: 0n };
}

export function decodeRootEntry(lo: bigint): RootEntry {
  return { present: (lo & 1n) !== 0n, contextTable: Number(lo & ~0xfffn & MASK64) };
}

// ---- context entry (16 bytes, indexed by devfn) ----
// lo: P 0, FPD 1, TT [3:2], SLPTPTR [HAW-1:12]; hi: AW [2:0], AVL [6:3], DID [23:8].

export const TT_UNTRANSLATED = 0; // untranslated requests walk the second-level tables
export const TT_DEVICE_TLB = 1; // as 0, and ATS translation/translated requests are allowed
export const TT_PASS_THROUGH = 2;

export interface ContextEntry {
  present: boolean;
  /** Fault processing disable: qualified faults of this device are not recorded. */
  fpd: boolean;
  tt: number;
  /** Second-level page-table pointer (physical, 4 KiB aligned). */
  slptptr: number;
  /** Address width: levels = aw + 2, width = 30 + 9 * aw. */
  aw: number;
  did: number;
}

export function encodeContextEntry(e: ContextEntry): { lo: bigint; hi: bigint } {
  checkFrame(e.slptptr, 'second-level page table');
  const lo = BigInt(e.slptptr) | (BigInt(e.tt & 3) << 2n) | (e.fpd ? 2n : 0n) | (e.present ? 1n : 0n);
  const hi = (BigInt(e.did & 0xffff) << 8n) | BigInt(e.aw & 7);
  return { lo, hi };
}

export function decodeContextEntry(lo: bigint, hi: bigint): ContextEntry {
  return {
    present: (lo & 1n) !== 0n,
    fpd: (lo & 2n) !== 0n,
    tt: Number((lo >> 2n) & 3n),
    slptptr: Number(lo & ~0xfffn & MASK64),
    aw: Number(hi & 7n),
    did: Number((hi >> 8n) & 0xffffn),
  };
}

export function awForLevels(levels: 3 | 4): number {
  return levels - 2;
}

// ---- second-level PTE (8 bytes) ----
// R 0, W 1, PS 7 (leaf above level 1), SNP 11, ADDR [HAW-1:12], TM 62.

export const PTE_R = 1;
export const PTE_W = 2;
export const PTE_PS = 0x80;
export const PTE_SNP = 0x800;

export interface SlPte {
  read: boolean;
  write: boolean;
  /** Leaf above level 1: 2 MiB at level 2, 1 GiB at level 3. */
  superpage: boolean;
  snoop: boolean;
  addr: number;
}

export function encodePte(e: SlPte): bigint {
  checkFrame(e.addr, 'page');
  return (
    BigInt(e.addr) |
    (e.read ? BigInt(PTE_R) : 0n) |
    (e.write ? BigInt(PTE_W) : 0n) |
    (e.superpage ? BigInt(PTE_PS) : 0n) |
    (e.snoop ? BigInt(PTE_SNP) : 0n)
  );
}

export function decodePte(v: bigint, haw: number): SlPte {
  return {
    read: (v & 1n) !== 0n,
    write: (v & 2n) !== 0n,
    superpage: (v & BigInt(PTE_PS)) !== 0n,
    snoop: (v & BigInt(PTE_SNP)) !== 0n,
    addr: Number(v & ((1n << BigInt(haw)) - 1n) & ~0xfffn),
  };
}

/** Index of `iova` in the table at `level` (1 = leaf table). */
export function tableIndex(iova: number, level: number): number {
  return Math.floor(iova / 2 ** (12 + 9 * (level - 1))) % 512;
}

/** Bytes mapped by one leaf at `level`. */
export function levelSize(level: number): number {
  return 2 ** (12 + 9 * (level - 1));
}

const MASK64 = (1n << 64n) - 1n;

function checkFrame(pa: number, what: string): void {
  if (!Number.isSafeInteger(pa) || pa < 0 || pa % 4096 !== 0) throw new RangeError(`${what} address 0x${pa.toString(16)} is not a 4 KiB-aligned physical address`);
}

// ---- reserved-bit masks on u32 halves, fixed per unit configuration ----

export interface EntryMaskOptions {
  /** Host address width: bits at or above it in a pointer are reserved. */
  haw: number;
  sllps2m: boolean;
  sllps1g: boolean;
  /** ECAP.SC: SNP is meaningful in leaves, otherwise reserved. */
  snoopControl: boolean;
  /** ECAP.DT: TM is meaningful, otherwise reserved. */
  deviceTlb: boolean;
}

/**
 * Word masks for one configuration. w0 = bits 31:0 and w1 = bits 63:32 of the low qword; w2/w3 the
 * high qword. PTE masks are indexed by level * 2 + PS.
 */
export class EntryMasks {
  /** Address bits of a pointer's high word. */
  readonly ptrHi: number;
  readonly rootW0 = 0xffe;
  readonly rootW1: number;
  readonly ctxW0 = 0xff0;
  readonly ctxW1: number;
  readonly ctxW2 = 0xff000080;
  readonly ctxW3 = 0xffffffff;
  readonly pteLo = new Int32Array(12);
  readonly pteHi = new Int32Array(12);

  constructor(o: EntryMaskOptions) {
    if (o.haw < 33 || o.haw > 52) throw new RangeError(`host address width ${o.haw} unsupported`);
    this.ptrHi = 2 ** (o.haw - 32) - 1;
    this.rootW1 = ~this.ptrHi >>> 0;
    this.ctxW1 = ~this.ptrHi >>> 0;
    // bits 51:HAW are reserved, 61:52 and 63 ignored, 62 (TM) reserved without device-TLB support
    const hi = ((0x000fffff & ~this.ptrHi) | (o.deviceTlb ? 0 : 1 << 30)) >>> 0;
    const snp = o.snoopControl ? 0 : PTE_SNP;
    for (let level = 1; level <= 5; level++) {
      for (let ps = 0; ps <= 1; ps++) {
        let lo: number;
        if (level === 1) lo = snp; // bit 7 is ignored in a level-1 leaf
        else if (ps === 0) lo = level >= 4 ? PTE_SNP | PTE_PS : PTE_SNP;
        else if (level === 2) lo = o.sllps2m ? 0x1ff000 | snp : PTE_PS;
        else if (level === 3) lo = o.sllps1g ? 0x3ffff000 | snp : PTE_PS;
        else lo = PTE_PS;
        this.pteLo[level * 2 + ps] = lo;
        this.pteHi[level * 2 + ps] = hi | 0;
      }
    }
  }

  /** 4 KiB-aligned pointer held in an entry's low qword, as a number. */
  ptr(w0: number, w1: number): number {
    return (w1 & this.ptrHi) * TWO32 + ((w0 & 0xfffff000) >>> 0);
  }
}
