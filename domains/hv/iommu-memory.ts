// hv's own memory in the physical address map (src/hw/phys-map.ts): the IOMMU tables its
// driver writes and the pages standing in for firmware-reserved (RMRR) regions. It is one sparse
// memfd, shared with hw, whose unit walks the tables and whose devices reach RMRR pages through
// identity maps. hv reads no domain memory through it: the driver only touches tables.
import { readU64Bytewise, type FrameSource, type PhysMem } from '../../src/memory/physmem.js';
import { PAGE_SIZE, native } from '../../src/native/index.js';
import { FRAMES_PER_SLOT, HV_AREA_BASE, HV_AREA_BYTES, HV_FIRMWARE_SLOT, HV_TABLE_SLOT, HV_TABLE_SLOTS } from '../../src/hw/phys-map.js';

export class HvTableMemory implements PhysMem {
  /** The area's memfd, sent to hw once. */
  readonly fd: number;
  private readonly area: Uint8Array;
  private readonly live = new Set<number>();
  private readonly freeTables: number[] = [];
  private nextTable = HV_TABLE_SLOT * FRAMES_PER_SLOT;
  private nextFirmware = HV_FIRMWARE_SLOT * FRAMES_PER_SLOT;
  private closed = false;

  constructor() {
    this.fd = native.memfdCreate('hv-iommu-area', HV_AREA_BYTES);
    this.area = new Uint8Array(native.mmap(this.fd, HV_AREA_BYTES, true));
  }

  /**
   * Frames for IOMMU tables. A freed frame is zeroed at once (its pages given back), so a stale
   * walk through it finds not-present entries and faults; it is reused before the area grows.
   */
  readonly tables: FrameSource = {
    alloc: () => {
      const pfn = this.freeTables.pop() ?? this.carve();
      this.live.add(pfn);
      return pfn * PAGE_SIZE;
    },
    free: (pa: number) => {
      const pfn = pa / PAGE_SIZE;
      if (!this.live.has(pfn)) throw new RangeError(`0x${pa.toString(16)} is not a live hv table frame`);
      this.live.delete(pfn);
      native.punchHole(this.fd, pa - HV_AREA_BASE, PAGE_SIZE);
      this.freeTables.push(pfn);
    },
  };

  /** Table frames ever carved from the table area, and how many of them are free again. */
  get tableFrames(): { carved: number; free: number } {
    return { carved: this.nextTable - HV_TABLE_SLOT * FRAMES_PER_SLOT, free: this.freeTables.length };
  }

  /** A zeroed page standing in for firmware-reserved memory an RMRR names. */
  allocFirmware(): number {
    if (this.nextFirmware >= (HV_FIRMWARE_SLOT + 1) * FRAMES_PER_SLOT) throw new RangeError('hv is out of firmware-reserved frames');
    return this.nextFirmware++ * PAGE_SIZE;
  }

  /** Tests: the bytes at a physical address in hv's area; null outside it. */
  peek(pa: number, len: number): Uint8Array | null {
    const out = new Uint8Array(len);
    return this.read(pa, out) ? out : null;
  }

  readU64(pa: number, out: Uint32Array): boolean {
    return readU64Bytewise(this, pa, out);
  }

  read(pa: number, dst: Uint8Array): boolean {
    const off = this.offset(pa, dst.length);
    if (off < 0) return false;
    dst.set(this.area.subarray(off, off + dst.length));
    return true;
  }

  write(pa: number, src: Uint8Array): boolean {
    const off = this.offset(pa, src.length);
    if (off < 0) return false;
    this.area.set(src, off);
    return true;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    native.munmap(this.area.buffer as ArrayBuffer);
    native.close(this.fd);
  }

  private offset(pa: number, len: number): number {
    if (this.closed || !(Number.isSafeInteger(pa) && pa >= HV_AREA_BASE && pa + len <= HV_AREA_BASE + HV_AREA_BYTES)) return -1;
    return pa - HV_AREA_BASE;
  }

  private carve(): number {
    if (this.nextTable >= (HV_TABLE_SLOT + HV_TABLE_SLOTS) * FRAMES_PER_SLOT) throw new RangeError('hv is out of IOMMU table frames');
    return this.nextTable++;
  }
}
