// Memory named by bus address (a DmaList) as NVMe Physical Region Page entries. PRPs describe a
// run of whole pages: only the first entry may start inside a page, and every region but the last
// must end on a page boundary. A list that breaks those rules (a blkif segment that starts or
// stops mid-page in the middle of a request) cannot be given to the controller in place.
import type { DmaList } from '../blkdev/device.js';

const PAGE = 4096;
const SECTOR = 512;
const TWO32 = 4294967296;
/** Entries of one PRP list page; commands here never need a chained list. */
export const PRP_LIST_ENTRIES = PAGE / 8;

/**
 * The bytes `l` covers when it can be handed to the controller as PRPs, else -1: one pass, so a
 * list is checked and measured once. The first address must also be sector aligned, so that
 * cutting a transfer at page boundaries into several commands leaves every command a whole number
 * of logical blocks.
 */
export function prpBytes(l: DmaList): number {
  const n = l.count;
  if (n === 0) return -1;
  let total = 0;
  for (let i = 0; i < n; i++) {
    const a = l.addr[i];
    const len = l.len[i];
    if (!(len > 0) || !Number.isSafeInteger(a) || a < 0) return -1;
    if (i > 0 && a % PAGE !== 0) return -1;
    if (i < n - 1 && (a + len) % PAGE !== 0) return -1;
    total += len;
  }
  return l.addr[0] % SECTOR === 0 && total % SECTOR === 0 ? total : -1;
}

/**
 * Walks a PRP-expressible DmaList one command at a time. Each next() takes at most `maxPages`
 * pages of memory from where the last one stopped and says what goes in PRP1/PRP2; entries past
 * the second page go into the PRP list page `list` (bus address `listAddr`). No allocation.
 */
export class PrpCursor {
  /** where the next command starts: chunk index and byte offset in it */
  chunk = 0;
  off = 0;
  prp1 = 0;
  prp2 = 0;
  /** bytes the last next() covered */
  bytes = 0;

  reset(): void {
    this.chunk = 0;
    this.off = 0;
  }

  next(l: DmaList, maxPages: number, list: DataView, listAddr: number): void {
    if (!(maxPages >= 1 && maxPages <= PRP_LIST_ENTRIES + 1)) throw new RangeError(`maxPages must be 1..${PRP_LIST_ENTRIES + 1}`);
    if (this.chunk >= l.count) throw new RangeError('PrpCursor: nothing left in the list');
    const start = l.addr[this.chunk] + this.off;
    const inPage = PAGE - (start % PAGE);
    const left = l.len[this.chunk] - this.off;
    const first = left < inPage ? left : inPage;
    this.prp1 = start;
    this.advance(l, first);
    let bytes = first;
    let entries = 0;
    let only = 0;
    while (entries + 1 < maxPages && this.chunk < l.count) {
      const a = l.addr[this.chunk] + this.off;
      const rest = l.len[this.chunk] - this.off;
      const n = rest < PAGE ? rest : PAGE;
      if (entries === 0) only = a;
      list.setUint32(entries * 8, a >>> 0, true);
      list.setUint32(entries * 8 + 4, Math.floor(a / TWO32) >>> 0, true);
      entries++;
      bytes += n;
      this.advance(l, n);
    }
    this.prp2 = entries === 0 ? 0 : entries === 1 ? only : listAddr;
    this.bytes = bytes;
  }

  private advance(l: DmaList, n: number): void {
    this.off += n;
    if (this.off >= l.len[this.chunk]) {
      this.chunk++;
      this.off = 0;
    }
  }
}
