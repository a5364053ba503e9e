// IOMMU domains as hv runs them: one set of second-level tables and one domain id per owner (the
// quarantine domain, and each driver domain), context entries that put each assigned device in its
// owner's domain, and mappings (device_map grants) added and removed with the invalidations
// hardware requires. All programming goes through the unit's registers via the OS-side driver,
// so the unit may sit in this process (tests) or in another one (hv's hardware process).

import { formatBdf, sourceId, devfn, type Bdf } from '../../src/config/bdf.js';
import { TT_UNTRANSLATED } from '../../src/abi/vtd-entries.js';
import type { Mapping, PagePerm, PageSize } from '../vtd/pagetable.js';
import { SIZE_4K, SecondLevelTable } from '../vtd/pagetable.js';
import type { FrameSource, PhysMem } from '../../src/memory/physmem.js';
import { RootTable } from '../vtd/root-table.js';
import { VtdDriver, type Mmio } from '../vtd/driver.js';

export type IommuOwner = 'quarantine' | number;

/** What the PCI platform needs from whoever programs the IOMMU. */
export interface IommuBinding {
  /** Points the device's context entry at `owner`'s tables and flushes what the old one left cached. */
  attach(bdf: Bdf, owner: IommuOwner): void;
  /** Removes the context entry: the device's DMA faults with "context entry not present". */
  detach(bdf: Bdf): void;
}

interface Domain {
  did: number;
  table: SecondLevelTable;
}

/** Domain ids: 0 is reserved under caching mode (not-present entries carry it), 1 is quarantine. */
const QUARANTINE_DID = 1;

export class IommuDomains implements IommuBinding {
  readonly driver: VtdDriver;
  readonly root: RootTable;
  private readonly domains = new Map<IommuOwner, Domain>();
  private readonly byDid = new Map<number, IommuOwner>();
  private readonly deviceDid = new Map<string, number>();
  private nextDid = QUARANTINE_DID + 1;
  /** ids of destroyed domains: flushed from every cache before they went on this list */
  private readonly freeDids: number[] = [];
  private readonly levels: 3 | 4;

  constructor(
    hw: Mmio,
    private readonly mem: PhysMem,
    private readonly frames: FrameSource,
    opts: { levels?: 3 | 4; queued?: boolean } = {},
  ) {
    this.driver = new VtdDriver(hw, mem, frames);
    this.levels = opts.levels ?? (this.driver.caps.mgaw === 48 ? 4 : 3);
    this.root = new RootTable(mem, frames);
    this.driver.setRootTable(this.root.pa);
    if (opts.queued ?? true) this.driver.enableQueuedInvalidation();
    this.driver.flushContextGlobal();
    this.driver.flushIotlbGlobal();
    this.driver.enableTranslation();
    this.domain('quarantine');
  }

  /** The owner a fault's domain id belongs to; how faults are attributed. */
  ownerOfDid(did: number): IommuOwner | undefined {
    return this.byDid.get(did);
  }

  didOf(owner: IommuOwner): number | undefined {
    return this.domains.get(owner)?.did;
  }

  attach(bdf: Bdf, owner: IommuOwner): void {
    const d = this.domain(owner);
    this.checkSegment(bdf);
    this.root.setContext(bdf.bus, devfn(bdf), { present: true, fpd: false, tt: TT_UNTRANSLATED, slptptr: d.table.root, aw: this.levels - 2, did: d.did });
    this.flushDevice(bdf, d.did);
  }

  detach(bdf: Bdf): void {
    this.checkSegment(bdf);
    // keep the bus's context table so the fault reads "context not present", naming the device
    this.root.contextEntryAddress(bdf.bus, devfn(bdf), true);
    this.root.clearContext(bdf.bus, devfn(bdf));
    this.flushDevice(bdf, undefined);
  }

  /**
   * Maps `pa` at `iova` in `owner`'s domain (a device_map grant). A new mapping needs no IOTLB
   * flush unless the unit caches not-present entries (CM=1); we flush then, as Linux does.
   */
  map(owner: IommuOwner, iova: number, pa: number, perm: PagePerm, size: PageSize = SIZE_4K): void {
    const d = this.domain(owner);
    d.table.map(iova, pa, size, perm);
    if (this.driver.caps.cachingMode) this.driver.flushIotlbPages(d.did, iova, amFor(size));
  }

  /** Removes the mapping at `iova` and invalidates it: after this returns no device reaches it. */
  unmap(owner: IommuOwner, iova: number): Mapping | null {
    const d = this.domains.get(owner);
    if (d === undefined) return null;
    const m = d.table.unmap(iova);
    if (m !== null) this.driver.flushIotlbPages(d.did, m.iova, amFor(m.size));
    return m;
  }

  lookup(owner: IommuOwner, iova: number): Mapping | null {
    return this.domains.get(owner)?.table.lookup(iova) ?? null;
  }

  /**
   * Forgets a destroyed domain and frees its second-level tables. Its devices must have been moved
   * (attach to quarantine) first. In case any context entry still carries the domain id anyway,
   * it is cleared; then the context cache and IOTLB are invalidated for the domain id, and only
   * then are the table frames walked and handed back to the frame source, so no cached or
   * in-memory pointer to them survives. The domain id becomes reusable. Returns the frames freed.
   */
  destroy(owner: number): number {
    const d = this.domains.get(owner);
    if (d === undefined) return 0;
    for (const [bdf, did] of this.deviceDid) if (did === d.did) throw new Error(`domain ${owner} still has ${bdf} attached`);
    const stale = this.root.entriesWithDid(d.did);
    for (const { bus, devfn } of stale) this.root.clearContext(bus, devfn);
    this.driver.flushContextDomain(d.did);
    this.driver.flushIotlbDomain(d.did);
    this.domains.delete(owner);
    this.byDid.delete(d.did);
    const freed = d.table.destroy();
    this.freeDids.push(d.did);
    return freed;
  }

  /** Domains alive (quarantine included); tests watch it come back down. */
  get domainCount(): number {
    return this.domains.size;
  }

  private domain(owner: IommuOwner): Domain {
    let d = this.domains.get(owner);
    if (d === undefined) {
      const did = owner === 'quarantine' ? QUARANTINE_DID : (this.freeDids.shift() ?? this.nextDid++);
      if (did > 0xffff) throw new Error('out of IOMMU domain ids');
      d = { did, table: new SecondLevelTable(this.mem, this.frames, this.levels, this.driver.caps.mgaw) };
      this.domains.set(owner, d);
      this.byDid.set(did, owner);
    }
    return d;
  }

  private flushDevice(bdf: Bdf, newDid: number | undefined): void {
    const key = formatBdf(bdf);
    const old = this.deviceDid.get(key);
    this.driver.flushContextDevice(sourceId(bdf), old ?? 0);
    // the device's translations are tagged with the old domain id: drop them with it
    if (old !== undefined) this.driver.flushIotlbDomain(old);
    if (newDid === undefined) this.deviceDid.delete(key);
    else this.deviceDid.set(key, newDid);
  }

  private checkSegment(bdf: Bdf): void {
    if (bdf.domain !== 0) throw new RangeError(`${formatBdf(bdf)}: this remapping unit serves PCI segment 0 only`);
  }
}

function amFor(size: PageSize): number {
  return size === SIZE_4K ? 0 : size === 0x200000 ? 9 : 18;
}
