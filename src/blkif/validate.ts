// Request checks both ends agree on (Linux dispatch_rw_block_io's rules over the fields of
// xen/include/public/io/blkif.h).
// Each returns null when the request is acceptable, or the reason it is not, for the log.
import { BLKIF_SECTORS_PER_PAGE } from '../abi/blkif.js';

/**
 * Segments [0, n) must each name sectors first..last within one page. Returns the total number of
 * 512-byte sectors, or -1 (with `why` filled) on the first bad segment.
 */
export function segmentSectors(first: Uint8Array, last: Uint8Array, n: number, why: { reason: string }): number {
  let total = 0;
  for (let i = 0; i < n; i++) {
    const f = first[i];
    const l = last[i];
    if (l >= BLKIF_SECTORS_PER_PAGE || f > l) {
      why.reason = `segment ${i}: first_sect ${f}, last_sect ${l} (need first <= last < ${BLKIF_SECTORS_PER_PAGE})`;
      return -1;
    }
    total += l - f + 1;
  }
  return total;
}

/** [sector, sector + count) within a disk of `sectors`, with no overflow games. */
export function sectorRangeValid(sector: number, count: number, sectors: number): boolean {
  return Number.isSafeInteger(sector) && sector >= 0 && count >= 0 && sector <= sectors && count <= sectors - sector;
}
