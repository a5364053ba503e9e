// The translation walk in the reference order: root entry, context entry, then the second-level
// tables from the top level down. Each step's failure maps to exactly one fault reason, checked in
// the order hardware checks them, so a test can provoke every reason on its own. Everything works
// on u32 halves with caller-owned scratch and result objects: a walk never allocates.

import type { EntryMasks } from '../../abi/vtd-entries.js';
import type { PhysMem } from '../../memory/physmem.js';
import { TT_DEVICE_TLB, TT_PASS_THROUGH } from '../../abi/vtd-entries.js';
import {
  FR_BEYOND_MGAW,
  FR_CONTEXT_INVALID,
  FR_CONTEXT_NOT_PRESENT,
  FR_CONTEXT_RESERVED,
  FR_CONTEXT_TABLE_INVALID,
  FR_PAGING_ENTRY_INVALID,
  FR_PAGING_RESERVED,
  FR_READ,
  FR_ROOT_NOT_PRESENT,
  FR_ROOT_RESERVED,
  FR_ROOT_TABLE_INVALID,
  FR_WRITE,
} from '../../abi/vtd-fault-reasons.js';

export interface WalkConfig {
  masks: EntryMasks;
  /** CAP.SAGAW as a bit set indexed by the context entry's AW value. */
  sagaw: number;
  /** ECAP.PT: TT 2 allowed. */
  passThrough: boolean;
  /** ECAP.DT: TT 1 allowed. */
  deviceTlb: boolean;
}

/** Decoded context entry; reused between walks. */
export class ContextOut {
  did = 0;
  levels = 0;
  tt = 0;
  fpd = false;
  slptptr = 0;
}

/** Result of a second-level walk; reused between walks. */
export class WalkOut {
  /** Physical base of the page the leaf maps. */
  base = 0;
  /** Level the walk stopped at: the leaf's level, or the level of the entry that faulted. */
  level = 0;
  /** Accumulated R/W bits; on a permission fault, that entry's own R/W (0 = not present). */
  access = 0;
}

/**
 * Fetches and validates the context entry for `sid` through the root table at `rootTable`
 * (-1 when software never latched one). Returns 0 or a fault reason in 1..3, 8..0xB.
 * `w` is a scratch Uint32Array(2).
 */
export function fetchContext(mem: PhysMem, w: Uint32Array, rootTable: number, sid: number, cfg: WalkConfig, out: ContextOut): number {
  const m = cfg.masks;
  if (rootTable < 0) return FR_ROOT_TABLE_INVALID;
  const rootPa = rootTable + (sid >>> 8) * 16;
  if (!mem.readU64(rootPa, w)) return FR_ROOT_TABLE_INVALID;
  const r0 = w[0];
  const r1 = w[1];
  if (!mem.readU64(rootPa + 8, w)) return FR_ROOT_TABLE_INVALID;
  if ((r0 & 1) === 0) return FR_ROOT_NOT_PRESENT;
  if ((r0 & m.rootW0) !== 0 || (r1 & m.rootW1) !== 0 || w[0] !== 0 || w[1] !== 0) return FR_ROOT_RESERVED;

  const ctxPa = m.ptr(r0, r1) + (sid & 0xff) * 16;
  if (!mem.readU64(ctxPa, w)) return FR_CONTEXT_TABLE_INVALID;
  const c0 = w[0];
  const c1 = w[1];
  if (!mem.readU64(ctxPa + 8, w)) return FR_CONTEXT_TABLE_INVALID;
  const c2 = w[0];
  const c3 = w[1];
  if ((c0 & 1) === 0) return FR_CONTEXT_NOT_PRESENT;
  if ((c0 & m.ctxW0) !== 0 || (c1 & m.ctxW1) !== 0 || (c2 & m.ctxW2) !== 0 || (c3 & m.ctxW3) !== 0) return FR_CONTEXT_RESERVED;

  const aw = c2 & 7;
  const tt = (c0 >>> 2) & 3;
  if ((cfg.sagaw & (1 << aw)) === 0) return FR_CONTEXT_INVALID;
  if (tt === 3 || (tt === TT_PASS_THROUGH && !cfg.passThrough) || (tt === TT_DEVICE_TLB && !cfg.deviceTlb)) return FR_CONTEXT_INVALID;

  out.did = (c2 >>> 8) & 0xffff;
  out.levels = aw + 2;
  out.tt = tt;
  out.fpd = (c0 & 2) !== 0;
  out.slptptr = m.ptr(c0, c1);
  return 0;
}

/**
 * Walks the second-level tables at `slptptr` with `levels` levels for the iova whose u32 halves
 * are `lo`/`hi`. Returns 0 (result in `out`) or a fault reason 4..7, 0xC.
 */
export function walkSecondLevel(
  mem: PhysMem,
  w: Uint32Array,
  masks: EntryMasks,
  slptptr: number,
  levels: number,
  lo: number,
  hi: number,
  isWrite: boolean,
  out: WalkOut,
): number {
  // width = 12 + 9 * levels; everything above bit 31 lives in hi
  if (hi >= 2 ** (9 * levels - 20)) return FR_BEYOND_MGAW;
  const need = isWrite ? 2 : 1;
  let table = slptptr;
  let acc = 3;
  for (let level = levels; level >= 1; level--) {
    let idx: number;
    if (level === 1) idx = (lo >>> 12) & 511;
    else if (level === 2) idx = (lo >>> 21) & 511;
    else if (level === 3) idx = ((lo >>> 30) | (hi << 2)) & 511;
    else if (level === 4) idx = (hi >>> 7) & 511;
    else idx = (hi >>> 16) & 511;
    if (!mem.readU64(table + idx * 8, w)) {
      out.level = level;
      return FR_PAGING_ENTRY_INVALID;
    }
    const w0 = w[0];
    const w1 = w[1];
    const perm = w0 & 3;
    if ((perm & need) === 0) {
      out.level = level;
      out.access = perm;
      return isWrite ? FR_WRITE : FR_READ;
    }
    acc &= perm;
    const ps = level > 1 && (w0 & 0x80) !== 0 ? 1 : 0;
    const k = level * 2 + ps;
    if ((w0 & masks.pteLo[k]) !== 0 || (w1 & masks.pteHi[k]) !== 0) {
      out.level = level;
      return FR_PAGING_RESERVED;
    }
    const ptr = masks.ptr(w0, w1);
    if (level === 1 || ps === 1) {
      out.base = ptr;
      out.level = level;
      out.access = acc;
      return 0;
    }
    table = ptr;
  }
  return FR_PAGING_ENTRY_INVALID; // unreachable: level 1 always ends the loop
}
