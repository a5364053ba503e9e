// The grantor's side of a grant table: entries live in frames hv also maps, in grant_entry_v1
// layout. Granting writes the frame and domid before the flags (so hv never sees a valid type
// with a stale frame); revoking is a compare-and-swap that fails while hv has the entry marked
// GTF_reading / GTF_writing, exactly as Linux's gnttab_end_foreign_access_ref does.
import {
  GNTTAB_NR_RESERVED_ENTRIES, GTF_permit_access, GTF_readonly, GTF_reading, GTF_writing, GRANT_ENTRIES_PER_FRAME,
} from '../abi/grant.js';
import { native, PAGE_SIZE } from '../native/index.js';

export class GrantTable {
  /** word 2*ref: flags | domid << 16; word 2*ref+1: frame */
  private readonly words: Int32Array;
  private readonly freeRefs: number[] = [];
  readonly entries: number;

  constructor(fd: number, frames: number) {
    this.words = new Int32Array(native.mmap(fd, frames * PAGE_SIZE, true));
    this.entries = frames * GRANT_ENTRIES_PER_FRAME;
    for (let r = this.entries - 1; r >= GNTTAB_NR_RESERVED_ENTRIES; r--) this.freeRefs.push(r);
  }

  get free(): number {
    return this.freeRefs.length;
  }

  /** Grants `domid` access to our frame `gfn`; returns the grant reference. */
  grantAccess(domid: number, gfn: number, readonly: boolean): number {
    const ref = this.freeRefs.pop();
    if (ref === undefined) throw new Error(`grant table full (${this.entries} entries): release grants or raise grantFrames`);
    this.setEntry(ref, domid, gfn, readonly);
    return ref;
  }

  /** Re-points an entry we own (used by tests that play a hostile grantor). */
  setEntry(ref: number, domid: number, gfn: number, readonly: boolean): void {
    const i = ref * 2;
    Atomics.store(this.words, i + 1, gfn | 0);
    Atomics.store(this.words, i, (GTF_permit_access | (readonly ? GTF_readonly : 0)) | ((domid & 0xffff) << 16));
  }

  /** True while hv has a mapping of this entry outstanding. */
  inUse(ref: number): boolean {
    return (Atomics.load(this.words, ref * 2) & (GTF_reading | GTF_writing)) !== 0;
  }

  /**
   * Revokes a grant. Returns false (and keeps the grant) while the grantee still maps it;
   * the caller must try again after the grantee unmaps.
   */
  endAccess(ref: number): boolean {
    const i = ref * 2;
    for (;;) {
      const word = Atomics.load(this.words, i);
      if ((word & (GTF_reading | GTF_writing)) !== 0) return false;
      if (Atomics.compareExchange(this.words, i, word, 0) === word) break;
    }
    this.freeRefs.push(ref);
    return true;
  }

  flags(ref: number): number {
    return Atomics.load(this.words, ref * 2) & 0xffff;
  }
}
