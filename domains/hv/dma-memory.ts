// hv's physical address space as the IOMMU and the device models see it. Every domain's I/O frame
// has a host-physical address, pa = domid << 24 | gfn << 12 (4096 frames, 16 MiB, per domain; the
// highest domid 0x7fef keeps every address below 2^39, so both 3- and 4-level tables can map it).
// The slots from 0x7ff0 up are hv's own memory: IOMMU tables (0x7ff0..0x7ffd) and the pages
// standing in for firmware-reserved (RMRR) regions (0x7ffe). No domain is ever handed those frames.
import type { DmaMemory } from '../../iommu/devices/dma.js';
import type { FrameSource } from '../../iommu/index.js';
import { PAGE_SIZE } from '../../src/native/index.js';
import type { DomainRecord } from './domain.js';

const SLOT = 1 << 24;
export const HV_TABLE_SLOT = 0x7ff0;
const HV_TABLE_SLOTS = 14;
export const HV_FIRMWARE_SLOT = 0x7ffe;
const FRAMES_PER_SLOT = SLOT / PAGE_SIZE;

export function framePa(domid: number, gfn: number): number {
  return domid * SLOT + gfn * PAGE_SIZE;
}

export class HvDmaMemory implements DmaMemory {
  private readonly hvPages = new Map<number, Uint8Array>();
  private nextTable = HV_TABLE_SLOT * FRAMES_PER_SLOT;
  private nextFirmware = HV_FIRMWARE_SLOT * FRAMES_PER_SLOT;
  private readonly scratch = new Uint8Array(8);
  private readonly scratchDv = new DataView(this.scratch.buffer);
  private readonly loc = new Float64Array(2);

  constructor(private readonly lookup: (domid: number) => DomainRecord | undefined) {}

  /** Frames for IOMMU tables, in hv's own memory. */
  readonly tables: FrameSource = {
    alloc: () => {
      if (this.nextTable >= (HV_TABLE_SLOT + HV_TABLE_SLOTS) * FRAMES_PER_SLOT) throw new RangeError('hv is out of IOMMU table frames');
      return this.hvPage(this.nextTable++);
    },
  };

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
    return dom.dmaView();
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
