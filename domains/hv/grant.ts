// Grant-table operations as Xen's hypervisor performs them: map checks the grantor's entry
// (type permit_access, domid == mapper, readonly) and marks it GTF_reading / GTF_writing with a
// compare-and-swap on the flags+domid word, so a grantor cannot change the entry between check
// and mark; unmap clears the marks when the last mapping goes; copy runs inside hv.
import {
  GNTST, GNTMAP_readonly, GNTMAP_host_map, GNTMAP_device_map, GNTCOPY_source_gref, GNTCOPY_dest_gref,
  GTF_permit_access, GTF_type_mask, GTF_readonly, GTF_reading, GTF_writing, GTF_sub_page, DOMID_SELF,
} from '../../src/abi/grant.js';
import { PAGE_SIZE, native } from '../../src/native/index.js';
import type { GntCopyOp, GntCopyPtr, GntMapOp, GntMapResult } from '../../src/hypercall/protocol.js';
import type { DomainRecord } from './domain.js';

export interface MapHandle {
  grantor: number;
  /** the grantor as it was when mapped: a release after its death must not touch a reused domid */
  grantorRec: DomainRecord;
  ref: number;
  readonly: boolean;
  gfn: number;
  /** with GNTMAP_device_map: where the mapper's devices reach the frame */
  busAddr?: number;
}

/** The IOMMU side of GNTMAP_device_map (hv's PCI host when the platform has one). */
export interface DeviceMapper {
  /** the bus address, or -1 when the mapper's IOMMU domain has no room */
  map(mapper: number, grantor: number, ref: number, gfn: number, readonly: boolean): number;
  /** `released` runs once no device can touch the frame: at once, or when DMA in flight drained */
  unmap(mapper: number, busAddr: number, released: () => void): void;
}

/** Xen's maptrack limit, per mapping domain. */
export const MAX_MAPPINGS = 65536;

type Lookup = (domid: number) => DomainRecord | undefined;

export class GrantService {
  /** (grantor, ref) -> live mapping counts, to know when to clear GTF_reading / GTF_writing */
  private readonly pins = new Map<string, { readers: number; writers: number }>();

  /** Set once the PCI platform exists; before that device_map is accepted and means nothing, as without an IOMMU. */
  deviceMapper: DeviceMapper | null = null;

  constructor(private readonly lookup: Lookup) {}

  map(mapper: DomainRecord, op: GntMapOp): { result: GntMapResult; fd: number; ownFd: boolean } {
    const fail = (status: number) => ({ result: { status, handle: 0, fdIndex: -1, readonly: false }, fd: -1, ownFd: false });
    if ((op.flags & (GNTMAP_host_map | GNTMAP_device_map)) === 0) return fail(GNTST.general_error);
    const grantor = this.lookup(op.dom);
    if (!grantor || grantor.state === 'dead') return fail(GNTST.bad_domain);
    if (op.ref >= grantor.grantEntries) return fail(GNTST.bad_gntref);
    if (mapper.mapped.size >= MAX_MAPPINGS) return fail(GNTST.no_device_space);
    const ro = (op.flags & GNTMAP_readonly) !== 0;

    // Mark the entry with one CAS on (flags | domid << 16), retrying if the grantor raced us.
    const w = grantor.grantWords;
    const idx = op.ref * 2;
    for (;;) {
      const word = Atomics.load(w, idx);
      const flags = word & 0xffff;
      const domid = (word >>> 16) & 0xffff;
      if ((flags & GTF_type_mask) !== GTF_permit_access || domid !== mapper.domid) return fail(GNTST.permission_denied);
      if ((flags & GTF_sub_page) !== 0) return fail(GNTST.permission_denied);
      if (!ro && (flags & GTF_readonly) !== 0) return fail(GNTST.permission_denied);
      const marked = flags | GTF_reading | (ro ? 0 : GTF_writing);
      if (Atomics.compareExchange(w, idx, word, (marked & 0xffff) | (domid << 16)) === word) break;
    }
    const gfn = w[idx + 1] >>> 0;
    const pin = this.pinOf(grantor.domid, op.ref);
    if (gfn >= grantor.frames.length) {
      this.unpin(grantor, op.ref, pin.writers > 0, pin.readers > 0);
      if (pin.readers === 0) this.pins.delete(`${grantor.domid}:${op.ref}`);
      return fail(GNTST.bad_page);
    }
    let busAddr: number | undefined;
    if ((op.flags & GNTMAP_device_map) !== 0 && this.deviceMapper !== null) {
      busAddr = this.deviceMapper.map(mapper.domid, grantor.domid, op.ref, gfn, ro);
      if (busAddr < 0) {
        this.unpin(grantor, op.ref, pin.writers > 0, pin.readers > 0);
        if (pin.readers === 0) this.pins.delete(`${grantor.domid}:${op.ref}`);
        return fail(GNTST.no_device_space);
      }
    }
    pin.readers++;
    if (!ro) pin.writers++;
    const handle = mapper.nextHandle++;
    const h: MapHandle = { grantor: grantor.domid, grantorRec: grantor, ref: op.ref, readonly: ro, gfn };
    if (busAddr !== undefined) h.busAddr = busAddr;
    mapper.mapped.set(handle, h);
    if ((op.flags & GNTMAP_host_map) === 0) {
      // device-only mapping: the mapper's CPU gets no descriptor
      const result: GntMapResult = { status: GNTST.okay, handle, fdIndex: -1, readonly: ro };
      if (busAddr !== undefined) result.devBusAddr = busAddr;
      return { result, fd: -1, ownFd: false };
    }
    // A read-only mapping gets a read-only descriptor: the kernel, not our code, refuses writes.
    const fd = ro ? native.reopen(grantor.frames[gfn], true) : grantor.frames[gfn];
    const result: GntMapResult = { status: GNTST.okay, handle, fdIndex: -1, readonly: ro };
    if (busAddr !== undefined) result.devBusAddr = busAddr;
    return { result, fd, ownFd: ro };
  }

  unmap(mapper: DomainRecord, handle: number): number {
    const h = mapper.mapped.get(handle);
    if (!h) return GNTST.bad_handle;
    mapper.mapped.delete(handle);
    // Devices lose the frame (IOTLB invalidated, DMA in flight drained) before the grantor may
    // take it back: until then the grant stays in use.
    if (h.busAddr !== undefined && this.deviceMapper !== null) this.deviceMapper.unmap(mapper.domid, h.busAddr, () => this.release(h));
    else this.release(h);
    return GNTST.okay;
  }

  private release(h: MapHandle): void {
    const grantor = this.lookup(h.grantor);
    // A release deferred past the grantor's death (its pins were forgotten then) must not
    // decrement the pins of a new domain that reuses the domid.
    if (grantor !== h.grantorRec) return;
    const key = `${h.grantor}:${h.ref}`;
    const pin = this.pins.get(key);
    if (pin) {
      pin.readers--;
      if (!h.readonly) pin.writers--;
      this.unpin(grantor, h.ref, pin.writers > 0, pin.readers > 0);
      if (pin.readers <= 0) this.pins.delete(key);
    }
  }

  /** Drops every mapping a dying domain held, so its grantors can revoke their grants. */
  unmapAll(mapper: DomainRecord): void {
    for (const handle of [...mapper.mapped.keys()]) this.unmap(mapper, handle);
  }

  /** A dead grantor's pins are meaningless: forget them (its table is being freed). */
  forgetGrantor(domid: number): void {
    for (const key of [...this.pins.keys()]) if (key.startsWith(`${domid}:`)) this.pins.delete(key);
  }

  copy(caller: DomainRecord, op: GntCopyOp): number {
    return this.copyOne(caller, op.source.ref, op.source.domid, op.source.offset, op.dest.ref, op.dest.domid, op.dest.offset, op.len, op.flags);
  }

  /** One GNTTABOP_copy op as plain numbers, so the copy ring's path builds no objects. */
  copyOne(caller: DomainRecord, srcRef: number, srcDom: number, srcOff: number, dstRef: number, dstDom: number, dstOff: number, len: number, flags: number): number {
    if (len > PAGE_SIZE || srcOff + len > PAGE_SIZE || dstOff + len > PAGE_SIZE) return GNTST.bad_copy_arg;
    const src = this.resolve(caller, srcRef, srcDom, (flags & GNTCOPY_source_gref) !== 0, false);
    if (typeof src === 'number') return src;
    const dst = this.resolve(caller, dstRef, dstDom, (flags & GNTCOPY_dest_gref) !== 0, true);
    if (typeof dst === 'number') return dst;
    if (len > 0) dst.set(src.subarray(srcOff, srcOff + len), dstOff);
    return GNTST.okay;
  }

  private resolve(caller: DomainRecord, ref: number, domid: number, isGref: boolean, write: boolean): Uint8Array | number {
    if (!isGref) {
      // By frame number a domain may only name its own memory.
      if (domid !== DOMID_SELF && domid !== caller.domid) return GNTST.permission_denied;
      if (ref >= caller.frames.length) return GNTST.bad_page;
      return caller.frameView(ref);
    }
    const grantor = this.lookup(domid);
    if (!grantor || grantor.state === 'dead') return GNTST.bad_domain;
    if (ref >= grantor.grantEntries) return GNTST.bad_gntref;
    const word = Atomics.load(grantor.grantWords, ref * 2);
    const flags = word & 0xffff;
    if ((flags & GTF_type_mask) !== GTF_permit_access || ((word >>> 16) & 0xffff) !== caller.domid) return GNTST.permission_denied;
    if (write && (flags & GTF_readonly) !== 0) return GNTST.permission_denied;
    const gfn = grantor.grantWords[ref * 2 + 1] >>> 0;
    if (gfn >= grantor.frames.length) return GNTST.bad_page;
    return grantor.frameView(gfn);
  }

  private pinOf(domid: number, ref: number) {
    const key = `${domid}:${ref}`;
    let p = this.pins.get(key);
    if (!p) {
      p = { readers: 0, writers: 0 };
      this.pins.set(key, p);
    }
    return p;
  }

  private unpin(grantor: DomainRecord, ref: number, keepWriting: boolean, keepReading: boolean): void {
    const w = grantor.grantWords;
    const idx = ref * 2;
    for (;;) {
      const word = Atomics.load(w, idx);
      let flags = word & 0xffff;
      if (!keepWriting) flags &= ~GTF_writing;
      if (!keepReading) flags &= ~GTF_reading;
      const next = (flags & 0xffff) | (word & ~0xffff);
      if (Atomics.compareExchange(w, idx, word, next) === word) return;
    }
  }
}
