// What device DMA lands in, as the hardware sees it: every domain's I/O frames (descriptors hv
// sends when it creates the domain) and hv's table and firmware area (one memfd hv shares), laid
// out by the physical address map (phys-map.ts). hv writes the IOMMU tables; the unit here only
// reads them and writes invalidation status words, through the same shared pages.
import type { DmaMemory } from '../../src/hw/dma.js';
import { readU64Bytewise } from '../../src/memory/physmem.js';
import { native } from '../../src/native/index.js';
import { HV_AREA_BASE, HV_AREA_BYTES, PAGE, SLOT } from '../../src/hw/phys-map.js';
import { MAX_DOMID, MAX_FRAMES } from '../../src/hw/wire.js';

/**
 * hw's mapping of one domain's frames. An asynchronous medium transfer pins it, so when the
 * domain dies mid-transfer the mapping (and the memfd pages under it, which no other domain ever
 * gets) outlives the domain until the last transfer completes; the address range can then not be
 * reused by a new mapping (another domain's memory) while the kernel still writes into it.
 */
interface DomainView {
  domid: number;
  view: Uint8Array;
  pins: number;
  dead: boolean;
}

/** Frames of a domain still arriving, batch by batch, in gfn order. */
interface Arriving {
  total: number;
  fds: number[];
}

export class HwDmaMemory implements DmaMemory {
  private readonly area: Uint8Array;
  private readonly views = new Map<number, DomainView>();
  private readonly byView = new Map<Uint8Array, DomainView>();
  private readonly arriving = new Map<number, Arriving>();
  /** pfn -> transfers in flight touching that page */
  private readonly pagePins = new Map<number, number>();
  private readonly loc = new Float64Array(2);
  private closed = false;

  constructor(areaFd: number) {
    const size = native.fdSize(areaFd);
    if (size !== HV_AREA_BYTES) throw new RangeError(`the table area is ${size} bytes, not ${HV_AREA_BYTES}: hv and hw disagree on the address map`);
    this.area = new Uint8Array(native.mmap(areaFd, HV_AREA_BYTES, true));
  }

  /**
   * One batch of a domain's frames, starting at gfn `start` of `total`. The descriptors become
   * ours (closed here whatever happens); the domain is mapped once the last batch is in.
   */
  addFrames(domid: number, total: number, start: number, fds: number[]): void {
    let kept = false;
    try {
      if (!(domid <= MAX_DOMID)) throw new RangeError(`domid ${domid} is above ${MAX_DOMID}, outside the address map`);
      if (!(total <= MAX_FRAMES)) throw new RangeError(`${total} frames exceed a domain's ${MAX_FRAMES}`);
      let a = this.arriving.get(domid);
      if (start === 0) {
        // a reused domid: the old domain's mapping retires (pins kept) before the new one is made
        this.forget(domid);
        a = { total, fds: [] };
        this.arriving.set(domid, a);
      }
      if (a === undefined || a.total !== total || a.fds.length !== start) throw new RangeError(`frames of dom${domid} out of order: batch at gfn ${start} of ${total}`);
      if (start + fds.length > total) throw new RangeError(`frames of dom${domid} run past its ${total}`);
      // a shorter file would fault (SIGBUS) hw the first time a device touched it
      for (const fd of fds) if (native.fdSize(fd) !== PAGE) throw new RangeError(`a frame of dom${domid} is not one page`);
      a.fds.push(...fds);
      kept = true;
      if (a.fds.length === total) this.map(domid, a);
    } finally {
      if (!kept) for (const f of fds) native.close(f);
    }
  }

  /** The domain is dead: no new DMA reaches its frames; the mapping goes once nothing is in flight. */
  domainDead(domid: number): void {
    this.forget(domid);
  }

  /** Shutting down: every mapping goes now (the table area too), or when the transfer pinning it completes. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const d of [...this.arriving.keys()]) this.forget(d);
    for (const v of [...this.byView.values()]) this.retire(v);
    native.munmap(this.area.buffer as ArrayBuffer);
  }

  /** Domain mappings held (live and dead-but-pinned). */
  get mappedViews(): number {
    return this.byView.size;
  }

  locate(pa: number, out: Float64Array): Uint8Array | null {
    if (this.closed) return null;
    if (pa >= HV_AREA_BASE && pa < HV_AREA_BASE + HV_AREA_BYTES) {
      out[0] = pa - HV_AREA_BASE;
      out[1] = HV_AREA_BYTES - out[0];
      return this.area;
    }
    if (!(pa >= 0 && pa < HV_AREA_BASE)) return null;
    const slot = Math.floor(pa / SLOT);
    const v = this.views.get(slot);
    if (v === undefined) return null;
    const inSlot = pa - slot * SLOT;
    if (inSlot >= v.view.byteLength) return null;
    out[0] = inSlot;
    out[1] = v.view.byteLength - inSlot;
    return v.view;
  }

  pin(view: Uint8Array, off: number, len: number): void {
    const v = this.byView.get(view);
    if (v === undefined) return;
    v.pins++;
    this.count(v, off, len, 1);
  }

  unpin(view: Uint8Array, off: number, len: number): void {
    const v = this.byView.get(view);
    if (v === undefined) return;
    v.pins--;
    this.count(v, off, len, -1);
    if (v.dead && v.pins <= 0) this.unmap(v);
  }

  /**
   * Transfers in flight into or out of the page at `pfn`. A page hv took back from a device
   * (a device_map grant unmapped) is only handed back to its owner once this reaches 0, as VT-d
   * drains pending DMA before an invalidation completes.
   */
  inFlight(pfn: number): number {
    return this.pagePins.get(pfn) ?? 0;
  }

  private count(v: DomainView, off: number, len: number, d: 1 | -1): void {
    if (len <= 0) return;
    const base = (v.domid * SLOT) / PAGE;
    const last = base + Math.floor((off + len - 1) / PAGE);
    for (let pfn = base + Math.floor(off / PAGE); pfn <= last; pfn++) {
      const n = (this.pagePins.get(pfn) ?? 0) + d;
      if (n > 0) this.pagePins.set(pfn, n);
      else this.pagePins.delete(pfn);
    }
  }

  readU64(pa: number, out: Uint32Array): boolean {
    return readU64Bytewise(this, pa, out);
  }

  read(pa: number, dst: Uint8Array): boolean {
    return this.move(pa, dst, false);
  }

  write(pa: number, src: Uint8Array): boolean {
    return this.move(pa, src, true);
  }

  private move(pa: number, buf: Uint8Array, toMem: boolean): boolean {
    let at = 0;
    while (at < buf.length) {
      const v = this.locate(pa + at, this.loc);
      if (v === null) return false;
      const off = this.loc[0];
      const n = Math.min(this.loc[1], buf.length - at);
      if (toMem) v.set(buf.subarray(at, at + n), off);
      else buf.set(v.subarray(off, off + n), at);
      at += n;
    }
    return true;
  }

  private map(domid: number, a: Arriving): void {
    this.arriving.delete(domid);
    try {
      if (a.total === 0) return;
      const view = new Uint8Array(native.mmapFrames(a.fds, true));
      const v: DomainView = { domid, view, pins: 0, dead: false };
      this.views.set(domid, v);
      this.byView.set(view, v);
    } finally {
      // the mapping keeps the pages; the descriptors would only cost hw its descriptor budget
      for (const f of a.fds) native.close(f);
    }
  }

  private forget(domid: number): void {
    const a = this.arriving.get(domid);
    if (a !== undefined) {
      for (const f of a.fds) native.close(f);
      this.arriving.delete(domid);
    }
    const v = this.views.get(domid);
    if (v !== undefined) this.retire(v);
  }

  private retire(v: DomainView): void {
    if (this.views.get(v.domid) === v) this.views.delete(v.domid);
    v.dead = true;
    if (v.pins <= 0) this.unmap(v);
  }

  private unmap(v: DomainView): void {
    if (!this.byView.delete(v.view)) return;
    if (v.view.byteLength > 0) native.munmap(v.view.buffer as ArrayBuffer);
  }
}
