// hv's physical address space as the IOMMU and the device models see it. Every domain's I/O frame
// has a host-physical address, pa = domid << 24 | gfn << 12 (4096 frames, 16 MiB, per domain; the
// highest domid 0x7fef keeps every address below 2^39, so both 3- and 4-level tables can map it).
// The slots from 0x7ff0 up are hv's own memory: IOMMU tables (0x7ff0..0x7ffd) and the pages
// standing in for firmware-reserved (RMRR) regions (0x7ffe). No domain is ever handed those frames.
import type { DmaMemory } from '../../iommu/devices/dma.js';
import type { FrameSource } from '../../iommu/index.js';
import { PAGE_SIZE, native } from '../../src/native/index.js';
import type { DomainRecord } from './domain.js';

const SLOT = 1 << 24;
export const HV_TABLE_SLOT = 0x7ff0;
const HV_TABLE_SLOTS = 14;
export const HV_FIRMWARE_SLOT = 0x7ffe;
const FRAMES_PER_SLOT = SLOT / PAGE_SIZE;

export function framePa(domid: number, gfn: number): number {
  return domid * SLOT + gfn * PAGE_SIZE;
}

/**
 * hv's own mapping of one domain's I/O frames, what device DMA lands in. It is hv-PCI's, not the
 * domain record's: an asynchronous medium transfer pins it, so when the domain dies mid-transfer
 * the mapping (and the memfd pages under it, which no other domain ever gets) outlives the
 * record until the last transfer completes. The address range can then not be reused by a new
 * mapping (another domain's memory) while the kernel still writes into it.
 */
interface DomainView {
  rec: DomainRecord;
  view: Uint8Array;
  pins: number;
  dead: boolean;
}

export class HvDmaMemory implements DmaMemory {
  private readonly hvPages = new Map<number, Uint8Array>();
  private readonly views = new Map<number, DomainView>();
  private readonly byView = new Map<Uint8Array, DomainView>();
  private readonly freeTables: number[] = [];
  private nextTable = HV_TABLE_SLOT * FRAMES_PER_SLOT;
  private nextFirmware = HV_FIRMWARE_SLOT * FRAMES_PER_SLOT;
  private readonly scratch = new Uint8Array(8);
  private readonly scratchDv = new DataView(this.scratch.buffer);
  private readonly loc = new Float64Array(2);

  constructor(private readonly lookup: (domid: number) => DomainRecord | undefined) {}

  /**
   * Frames for IOMMU tables, in hv's own memory. Freed frames are forgotten at once (a stale
   * table walk through one finds unbacked memory and faults) and reused before the area grows.
   */
  readonly tables: FrameSource = {
    alloc: () => {
      const pfn = this.freeTables.pop();
      if (pfn !== undefined) return this.hvPage(pfn);
      if (this.nextTable >= (HV_TABLE_SLOT + HV_TABLE_SLOTS) * FRAMES_PER_SLOT) throw new RangeError('hv is out of IOMMU table frames');
      return this.hvPage(this.nextTable++);
    },
    free: (pa: number) => {
      const pfn = pa / PAGE_SIZE;
      if (!(Number.isInteger(pfn) && pfn >= HV_TABLE_SLOT * FRAMES_PER_SLOT && pfn < this.nextTable && this.hvPages.has(pfn))) {
        throw new RangeError(`0x${pa.toString(16)} is not a live hv table frame`);
      }
      this.hvPages.delete(pfn);
      this.freeTables.push(pfn);
    },
  };

  /** Table frames ever carved from the table area, and how many of them are free again. */
  get tableFrames(): { carved: number; free: number } {
    return { carved: this.nextTable - HV_TABLE_SLOT * FRAMES_PER_SLOT, free: this.freeTables.length };
  }

  /** A zeroed hv page standing in for firmware-reserved memory an RMRR names. */
  allocFirmware(): number {
    if (this.nextFirmware >= (HV_FIRMWARE_SLOT + 1) * FRAMES_PER_SLOT) throw new RangeError('hv is out of firmware-reserved frames');
    return this.hvPage(this.nextFirmware++);
  }

  /** Tests: hv's view of the bytes at a physical address (hv tables included). */
  peek(pa: number, len: number): Uint8Array | null {
    const out = new Uint8Array(len);
    return this.read(pa, out) ? out : null;
  }

  locate(pa: number, out: Float64Array): Uint8Array | null {
    if (!(pa >= 0 && pa < 0x8000 * SLOT)) return null;
    const slot = Math.floor(pa / SLOT);
    const inSlot = pa - slot * SLOT;
    if (slot >= HV_TABLE_SLOT) {
      const pfn = Math.floor(pa / PAGE_SIZE);
      const p = this.hvPages.get(pfn);
      if (p === undefined) return null;
      out[0] = inSlot % PAGE_SIZE;
      out[1] = PAGE_SIZE - out[0];
      return p;
    }
    const dom = this.lookup(slot);
    if (dom === undefined || dom.state === 'dead' || inSlot >= dom.frames.length * PAGE_SIZE) return null;
    out[0] = inSlot;
    out[1] = dom.frames.length * PAGE_SIZE - inSlot;
    let v = this.views.get(slot);
    if (v === undefined || v.rec !== dom) {
      if (v !== undefined) this.retire(v);
      let view: Uint8Array;
      try {
        view = new Uint8Array(native.mmapFrames(dom.frames, true));
      } catch {
        return null; // out of address space or descriptors: the DMA fails, hv goes on
      }
      v = { rec: dom, view, pins: 0, dead: false };
      this.views.set(slot, v);
      this.byView.set(v.view, v);
    }
    return v.view;
  }

  /** An asynchronous transfer into or out of `view` begins: the mapping stays until unpin. */
  pin(view: Uint8Array): void {
    const v = this.byView.get(view);
    if (v !== undefined) v.pins++;
  }

  unpin(view: Uint8Array): void {
    const v = this.byView.get(view);
    if (v === undefined) return;
    v.pins--;
    if (v.dead && v.pins <= 0) this.unmap(v);
  }

  /** The domain is dead: no new DMA reaches its frames; hv's mapping goes once nothing is in flight. */
  domainDead(domid: number): void {
    const v = this.views.get(domid);
    if (v !== undefined) this.retire(v);
  }

  /** hv is shutting down: every mapping goes now, or when the transfer pinning it completes. */
  close(): void {
    for (const v of [...this.byView.values()]) this.retire(v);
  }

  /** Domain mappings hv holds (live and dead-but-pinned); tests watch it. */
  get mappedViews(): number {
    return this.byView.size;
  }

  private retire(v: DomainView): void {
    if (this.views.get(v.rec.domid) === v) this.views.delete(v.rec.domid);
    v.dead = true;
    if (v.pins <= 0) this.unmap(v);
  }

  private unmap(v: DomainView): void {
    if (!this.byView.delete(v.view)) return;
    if (v.view.byteLength > 0) native.munmap(v.view.buffer as ArrayBuffer);
  }

  readU64(pa: number, out: Uint32Array): boolean {
    if (!this.read(pa, this.scratch)) return false;
    out[0] = this.scratchDv.getUint32(0, true);
    out[1] = this.scratchDv.getUint32(4, true);
    return true;
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

  private hvPage(pfn: number): number {
    this.hvPages.set(pfn, new Uint8Array(PAGE_SIZE));
    return pfn * PAGE_SIZE;
  }
}
