// A VM's RAM as the vhost-user frontend shares it: regions of guest-physical space, each a
// window of a memfd that we map. Descriptors name guest-physical addresses, vring setup names the
// frontend's own virtual addresses, and both are checked here against what was actually mapped:
// the frontend is untrusted, so a region that overlaps another, runs past its fd or wraps 2^64 is
// refused, and no address outside a region is ever turned into memory.
import { native } from '../native/index.js';

export class GuestMemoryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GuestMemoryError';
  }
}

export interface RegionSpec {
  gpa: bigint;
  size: bigint;
  uaddr: bigint;
  mmapOffset: bigint;
}

interface Region {
  gpa: number;
  size: number;
  uaddr: number;
  /** the mapping, from fd offset 0 (mmap wants page-aligned offsets; mmap_offset need not be) */
  map: ArrayBuffer;
  /** where guest-physical `gpa` sits in `map` */
  base: number;
  /**
   * Windows onto the mapping, made on first use and kept, so reading descriptors and headers out
   * of guest memory makes no view per request. Window k starts at k * WINDOW and runs WINDOW +
   * LOCATE_MAX bytes, so any small range starting in it fits (a typed array spans at most 4 GiB
   * on Node 20, a guest's RAM may be larger).
   */
  windows: ({ dv: DataView; u8: Uint8Array } | undefined)[];
}

const WINDOW = 1 << 30;
/** the largest range locate() serves: an indirect table of 1024 descriptors is 16 KiB */
export const LOCATE_MAX = 1 << 20;

const SAFE = BigInt(Number.MAX_SAFE_INTEGER);

function safe(v: bigint, what: string): number {
  if (v < 0n || v > SAFE) throw new GuestMemoryError(`${what} ${v} is beyond 2^53: no guest of ours is that large`);
  return Number(v);
}

export class GuestMemory {
  private regions: Region[] = [];
  /** mappings taken out of the table while requests may still be using them */
  private retired: ArrayBuffer[] = [];

  constructor(readonly maxRegions: number) {}

  get count(): number {
    return this.regions.length;
  }

  /** Maps `fd` as one more region; the fd stays the caller's to close. */
  add(spec: RegionSpec, fd: number): void {
    if (this.regions.length >= this.maxRegions) throw new GuestMemoryError(`already ${this.maxRegions} memory regions: no slot for another`);
    const gpa = safe(spec.gpa, 'guest address');
    const size = safe(spec.size, 'region size');
    const uaddr = safe(spec.uaddr, 'user address');
    const off = safe(spec.mmapOffset, 'mmap offset');
    if (size === 0) throw new GuestMemoryError(`region at guest 0x${gpa.toString(16)} has size 0`);
    if (gpa + size > Number.MAX_SAFE_INTEGER || uaddr + size > Number.MAX_SAFE_INTEGER || off + size > Number.MAX_SAFE_INTEGER)
      throw new GuestMemoryError(`region at guest 0x${gpa.toString(16)} of 0x${size.toString(16)} bytes wraps the address space`);
    for (const r of this.regions) {
      if (gpa < r.gpa + r.size && r.gpa < gpa + size)
        throw new GuestMemoryError(`region guest [0x${gpa.toString(16)}, +0x${size.toString(16)}) overlaps [0x${r.gpa.toString(16)}, +0x${r.size.toString(16)})`);
      if (uaddr < r.uaddr + r.size && r.uaddr < uaddr + size)
        throw new GuestMemoryError(`region user address [0x${uaddr.toString(16)}, +0x${size.toString(16)}) overlaps another region's`);
    }
    let fdBytes: number;
    try {
      fdBytes = native.fdSize(fd);
    } catch (e) {
      throw new GuestMemoryError(`region fd: ${(e as Error).message}`);
    }
    if (off + size > fdBytes)
      throw new GuestMemoryError(`region wants bytes [0x${off.toString(16)}, +0x${size.toString(16)}) of an fd that holds 0x${fdBytes.toString(16)}`);
    let map: ArrayBuffer;
    try {
      map = native.mmap(fd, off + size, true, 0);
    } catch (e) {
      throw new GuestMemoryError(`cannot map region at guest 0x${gpa.toString(16)}: ${(e as Error).message}`);
    }
    this.regions.push({ gpa, size, uaddr, map, base: off, windows: [] });
  }

  /** REM_MEM_REG: the region with exactly these addresses leaves the table. */
  remove(spec: RegionSpec): void {
    const gpa = safe(spec.gpa, 'guest address');
    const size = safe(spec.size, 'region size');
    const i = this.regions.findIndex((r) => r.gpa === gpa && r.size === size);
    if (i < 0) throw new GuestMemoryError(`no region at guest 0x${gpa.toString(16)} of 0x${size.toString(16)} bytes to remove`);
    this.retired.push(this.regions[i].map);
    this.regions.splice(i, 1);
  }

  /** Drops every region (a new SET_MEM_TABLE, or the frontend went away). */
  clear(): void {
    for (const r of this.regions) this.retired.push(r.map);
    this.regions = [];
  }

  /**
   * Unmaps what left the table. Call only when no request is in flight: a read still landing in
   * a retired mapping would otherwise fault the whole domain.
   */
  release(): void {
    for (const m of this.retired) native.munmap(m);
    this.retired = [];
  }

  /** The end of the highest region in guest-physical space (what a dirty log must cover). */
  highestGpa(): number {
    let top = 0;
    for (const r of this.regions) top = Math.max(top, r.gpa + r.size);
    return top;
  }

  /** Whether [gpa, +len) lies inside one region (a check that makes no view). */
  contains(gpa: number, len: number): boolean {
    for (const r of this.regions) if (gpa >= r.gpa && gpa - r.gpa <= r.size - len && len <= r.size) return true;
    return false;
  }

  /** The region views the last successful locate() found. */
  found: DataView = new DataView(new ArrayBuffer(0));
  foundBytes: Uint8Array = new Uint8Array(0);

  /**
   * Where [gpa, +len) sits: its byte offset in `found` (its region's DataView), or -1 when it is
   * not inside one region. The data path reads indirect tables this way, with no allocation.
   */
  locate(gpa: number, len: number): number {
    if (len > LOCATE_MAX) return -1;
    for (const r of this.regions) {
      if (gpa >= r.gpa && gpa - r.gpa <= r.size - len && len <= r.size) {
        const at = r.base + (gpa - r.gpa);
        const k = Math.floor(at / WINDOW);
        let w = r.windows[k];
        if (!w) {
          const start = k * WINDOW;
          const n = Math.min(WINDOW + LOCATE_MAX, r.map.byteLength - start);
          w = { dv: new DataView(r.map, start, n), u8: new Uint8Array(r.map, start, n) };
          r.windows[k] = w;
        }
        this.found = w.dv;
        this.foundBytes = w.u8;
        return at - k * WINDOW;
      }
    }
    return -1;
  }

  /** `len` bytes at guest-physical `gpa` as one view, or null when they are not inside one region. */
  view(gpa: number, len: number): Uint8Array | null {
    for (const r of this.regions) {
      if (gpa >= r.gpa && gpa - r.gpa <= r.size - len && len <= r.size) return new Uint8Array(r.map, r.base + (gpa - r.gpa), len);
    }
    return null;
  }

  /** The frontend's virtual address range [uaddr, +len) as a view (vring addresses), or null. */
  userView(uaddr: number, len: number): Uint8Array | null {
    for (const r of this.regions) {
      if (uaddr >= r.uaddr && uaddr - r.uaddr <= r.size - len && len <= r.size) return new Uint8Array(r.map, r.base + (uaddr - r.uaddr), len);
    }
    return null;
  }

  /** Unmaps everything, in use or not: the owner has stopped every queue. */
  close(): void {
    this.clear();
    this.release();
  }
}
