// The remapping unit fetches root/context/page tables, descriptors and DMA data through this
// interface, so one model runs over hv's frames in the platform and over a sparse memory in tests.
// Physical addresses are plain numbers: every width we model (39/48 bits) is below 2^53.

export interface PhysMem {
  /**
   * Reads the little-endian u64 at `pa` into out[0] (bits 31:0) and out[1] (bits 63:32).
   * Returns false when `pa` is not backed, which the walk turns into a VT-d fault reason; the
   * out-parameter exists so table walks never allocate.
   */
  readU64(pa: number, out: Uint32Array): boolean;
  /** Fills `dst` from `pa`; false (and dst unspecified) if any byte is not backed. */
  read(pa: number, dst: Uint8Array): boolean;
  /** Stores `src` at `pa`; false if any byte is not backed (nothing is promised about partial writes). */
  write(pa: number, src: Uint8Array): boolean;
}

export const PAGE_SIZE = 4096;
const TWO32 = 4294967296;
const INV_PAGE = 1 / PAGE_SIZE;

interface Page {
  u8: Uint8Array;
  dv: DataView;
}

/**
 * Sparse physical memory of a fixed size: untouched 4 KiB pages read as zero (like fresh RAM)
 * and only written pages take space. Addresses at or beyond `size` are unbacked, which is how
 * tests produce the "table read fails" fault reasons.
 */
export class SparseMemory implements PhysMem {
  private readonly pages = new Map<number, Page>();
  private readonly scratch = new Uint8Array(8);
  private readonly scratchDv = new DataView(this.scratch.buffer);

  constructor(readonly size: number) {
    if (!Number.isSafeInteger(size) || size <= 0) throw new RangeError(`memory size ${size} is not a positive integer`);
  }

  backed(pa: number, len: number): boolean {
    return Number.isSafeInteger(pa) && pa >= 0 && len >= 0 && pa + len <= this.size;
  }

  readU64(pa: number, out: Uint32Array): boolean {
    if (!(pa >= 0 && pa + 8 <= this.size)) return false;
    // bit ops and a multiply instead of % and /, which are floating-point for addresses above 2^31
    const off = (pa >>> 0) & (PAGE_SIZE - 1);
    if (off <= PAGE_SIZE - 8) {
      const p = this.pages.get((pa - off) * INV_PAGE);
      if (p === undefined) {
        out[0] = 0;
        out[1] = 0;
      } else {
        out[0] = p.dv.getUint32(off, true);
        out[1] = p.dv.getUint32(off + 4, true);
      }
      return true;
    }
    this.read(pa, this.scratch);
    out[0] = this.scratchDv.getUint32(0, true);
    out[1] = this.scratchDv.getUint32(4, true);
    return true;
  }

  read(pa: number, dst: Uint8Array): boolean {
    if (!this.backed(pa, dst.length)) return false;
    let done = 0;
    while (done < dst.length) {
      const a = pa + done;
      const off = a % PAGE_SIZE;
      const n = Math.min(PAGE_SIZE - off, dst.length - done);
      const p = this.pages.get((a - off) / PAGE_SIZE);
      if (p === undefined) dst.fill(0, done, done + n);
      else dst.set(p.u8.subarray(off, off + n), done);
      done += n;
    }
    return true;
  }

  write(pa: number, src: Uint8Array): boolean {
    if (!this.backed(pa, src.length)) return false;
    let done = 0;
    while (done < src.length) {
      const a = pa + done;
      const off = a % PAGE_SIZE;
      const n = Math.min(PAGE_SIZE - off, src.length - done);
      this.page((a - off) / PAGE_SIZE).u8.set(src.subarray(done, done + n), off);
      done += n;
    }
    return true;
  }

  /** Pages actually holding data; lets tests check that a hostile DMA touched nothing. */
  get populatedPages(): number {
    return this.pages.size;
  }

  private page(pfn: number): Page {
    let p = this.pages.get(pfn);
    if (p === undefined) {
      const u8 = new Uint8Array(PAGE_SIZE);
      p = { u8, dv: new DataView(u8.buffer) };
      this.pages.set(pfn, p);
    }
    return p;
  }
}

const u64Bytes = new Uint8Array(8);
const u64View = new DataView(u64Bytes.buffer);

/**
 * PhysMem.readU64 for a memory whose bytes come through its own `read` (mapped views, shared
 * areas): through one module scratch, so a table walk still allocates nothing.
 */
export function readU64Bytewise(mem: Pick<PhysMem, 'read'>, pa: number, out: Uint32Array): boolean {
  if (!mem.read(pa, u64Bytes)) return false;
  out[0] = u64View.getUint32(0, true);
  out[1] = u64View.getUint32(4, true);
  return true;
}

// BigInt conveniences for the OS side (table builders, drivers, tests), never the walk.

export function readU64(mem: PhysMem, pa: number): bigint {
  const out = new Uint32Array(2);
  if (!mem.readU64(pa, out)) throw new RangeError(`physical address 0x${pa.toString(16)} is not backed`);
  return (BigInt(out[1]) << 32n) | BigInt(out[0]);
}

export function writeU64(mem: PhysMem, pa: number, value: bigint): void {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, value), true);
  if (!mem.write(pa, b)) throw new RangeError(`physical address 0x${pa.toString(16)} is not backed`);
}

export function readU32(mem: PhysMem, pa: number): number {
  const b = new Uint8Array(4);
  if (!mem.read(pa, b)) throw new RangeError(`physical address 0x${pa.toString(16)} is not backed`);
  return new DataView(b.buffer).getUint32(0, true);
}

/** Splits a safe-integer address into u32 halves without BigInt. */
export function hi32(x: number): number {
  return Math.floor(x / TWO32) >>> 0;
}

export function fromHalves(lo: number, hi: number): number {
  return hi * TWO32 + (lo >>> 0);
}

/** Where OS-side code gets zeroed 4 KiB frames for tables and queues. */
export interface FrameSource {
  /** Physical address of a zeroed, 4 KiB-aligned frame. */
  alloc(): number;
  /**
   * Gives a frame back for reuse. The caller guarantees nothing (no context entry, no table, no
   * cached translation) still points at it; the next alloc() hands it out zeroed.
   */
  free(pa: number): void;
}

/**
 * Hands out consecutive frames of a memory, zeroing each, and reuses freed frames first (LIFO);
 * enough for tests and the bench.
 */
export class BumpFrames implements FrameSource {
  private next: number;
  private readonly zero = new Uint8Array(PAGE_SIZE);
  private readonly freed: number[] = [];
  private readonly isFree = new Set<number>();

  constructor(
    private readonly mem: PhysMem,
    private readonly start: number,
    private readonly limit = Number.MAX_SAFE_INTEGER,
  ) {
    if (start % PAGE_SIZE !== 0) throw new RangeError('frame allocator start must be 4 KiB aligned');
    this.next = start;
  }

  /** Frames handed out and not freed. */
  get inUse(): number {
    return (this.next - this.start) / PAGE_SIZE - this.freed.length;
  }

  alloc(): number {
    let pa = this.freed.pop();
    if (pa !== undefined) this.isFree.delete(pa);
    else {
      if (this.next + PAGE_SIZE > this.limit) throw new RangeError('out of frames');
      pa = this.next;
      this.next += PAGE_SIZE;
    }
    if (!this.mem.write(pa, this.zero)) throw new RangeError(`frame 0x${pa.toString(16)} is not backed`);
    return pa;
  }

  free(pa: number): void {
    if (!(pa >= this.start && pa < this.next && pa % PAGE_SIZE === 0)) throw new RangeError(`frame 0x${pa.toString(16)} was not handed out by this allocator`);
    if (this.isFree.has(pa)) throw new RangeError(`frame 0x${pa.toString(16)} freed twice`);
    // scrub now: a stale walk through a freed table finds nothing present
    this.mem.write(pa, this.zero);
    this.isFree.add(pa);
    this.freed.push(pa);
  }
}
