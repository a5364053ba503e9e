// The persistent-grant cache of one queue (feature-persistent): the frontend promises to reuse a
// fixed pool of grefs, so each is mapped once and kept. Keyed by gref; capped like Linux's
// max_persistent_grants, after which further grefs are mapped per request. Refs are mapped in
// batches, each batch one contiguous view, and a page is a subarray of its batch. Over a medium
// that DMAs, the pages are device_mapped too, and keep their IOMMU entries until released.
//
// Persistent grants are mapped writable, device_map included (as Linux blkback maps persistent
// grants read-write, whatever the first request was): a page serves reads and writes over its
// life. So the IOMMU's read-only protection (a WRITE's pages refuse device writes) holds for
// transient grants only; on a persistent page a misdirected device write lands in the guest's
// page like a read would, confined to pages that frontend granted for I/O.
import type { GrantMapping } from '../grant/mapper.js';
import type { BlkbackServices } from '../domain/services.js';
import { MAP_BATCH } from '../grant/mapper.js';
import { pageOf, type GrantPage } from './grant-page.js';

export class PersistentGrants {
  private readonly pages = new Map<number, GrantPage>();
  private readonly batches: GrantMapping[] = [];

  constructor(
    private readonly mapper: BlkbackServices['mapper'],
    private readonly domid: number,
    readonly cap: number,
    /** map with GNTMAP_device_map as well (the medium DMAs by bus address) */
    private readonly deviceMap: boolean,
  ) {}

  get size(): number {
    return this.pages.size;
  }

  get room(): number {
    return this.cap - this.pages.size;
  }

  get(gref: number): GrantPage | undefined {
    return this.pages.get(gref);
  }

  /** Maps `refs` (distinct, not yet cached, at most `room`) read-write and keeps them. */
  async add(refs: number[]): Promise<void> {
    for (let i = 0; i < refs.length; i += MAP_BATCH) {
      const chunk = refs.slice(i, i + MAP_BATCH);
      // Read-write even for reads: a persistently mapped page serves writes later too, and
      // the frontend grants it writable for that reason.
      const m = await this.mapper.map(this.domid, chunk, { readonly: false, deviceMap: this.deviceMap });
      this.batches.push(m);
      for (let j = 0; j < chunk.length; j++) this.pages.set(chunk[j], pageOf(m, j));
    }
  }

  /** Only once no request uses the pages: unmapping also removes their IOMMU entries. */
  async releaseAll(): Promise<void> {
    this.pages.clear();
    const batches = this.batches.splice(0);
    for (const m of batches) await this.mapper.unmap(m);
  }
}
