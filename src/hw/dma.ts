// How an emulated device touches memory: every address it issues goes through the remapping unit
// with the device's source id, and only the physical addresses that come back are dereferenced.
// A transfer is translated page by page into segments first and moves only when every page
// translated, so a fault anywhere aborts it with memory untouched (as the unit's dmaRead does),
// but the bytes then move between the caller's buffer or file and the memory without a copy of
// ours and without allocating.

import { readU64Bytewise, type PhysMem } from '../memory/physmem.js';
import { TR_INTERRUPT_WINDOW, TR_INVALID_ADDRESS, type VtdUnit } from './vtd/unit.js';
import { DMA_STOP, FAULT_REG } from '../abi/device-faults.js';
import type { RegisterPage } from './register-page.js';

/**
 * Physical memory a device can address in place. `locate` names the view holding `pa`; out[0] is
 * the byte offset of `pa` in it and out[1] how many bytes from there are contiguous in that view.
 */
export interface DmaMemory extends PhysMem {
  locate(pa: number, out: Float64Array): Uint8Array | null;
  /**
   * An asynchronous transfer into or out of `len` bytes at `off` of a view `locate` returned
   * begins (pin) or ends (unpin): the memory behind the view must stay mapped in between,
   * whatever happens to its owner, and the pages count as having DMA in flight. Memories whose
   * views are ordinary garbage-collected buffers need neither.
   */
  pin?(view: Uint8Array, off: number, len: number): void;
  unpin?(view: Uint8Array, off: number, len: number): void;
}

/** Why a transfer stopped. `reason` is the VT-d fault reason (0 when the address was not DMA-able). */
/** What every emulated PCI function is wired to: the IOMMU and memory it DMAs through (with its
 *  source id), its register page, the command register's bus-master bit, and its interrupt. */
export interface PciFunctionOptions {
  unit: VtdUnit;
  mem: DmaMemory;
  sid: number;
  /** the register page, shared with the owner */
  bar: Uint8Array;
  /** PCI command register's bus-master bit: without it the device issues no DMA */
  busMaster: () => boolean;
  raiseIrq: () => void;
  log?: (msg: string) => void;
}

/** Counts the engine's last fault in a device's fault registers (src/abi/device-faults.ts). */
export function recordFault(regs: RegisterPage, e: DmaEngine): void {
  regs.put(FAULT_REG.FAULTS, (regs.get(FAULT_REG.FAULTS) + 1) | 0);
  regs.put(FAULT_REG.LAST_FAULT, faultWord(e.fault));
  regs.put(FAULT_REG.LAST_FAULT_IOVA, e.fault.iova >>> 0);
  regs.put(FAULT_REG.LAST_FAULT_IOVA + 4, Math.floor(e.fault.iova / 4294967296) >>> 0);
}

/** What a device reports for a stopped transfer: the VT-d reason, or a DMA_STOP code. */
export function faultWord(f: DmaFault): number {
  return f.kind === 'fault' ? f.reason : f.kind === 'none' ? 0 : DMA_STOP[f.kind];
}

export interface DmaFault {
  kind: 'none' | 'fault' | 'interrupt-window' | 'unbacked' | 'too-large';
  reason: number;
  iova: number;
  write: boolean;
}

const PAGE = 4096;

export class DmaEngine {
  /** Segments of the last successful translate(): view, offset, length. */
  readonly segView: (Uint8Array | null)[];
  readonly segOff: Float64Array;
  readonly segLen: Float64Array;
  segCount = 0;
  readonly fault: DmaFault = { kind: 'none', reason: 0, iova: 0, write: false };
  private readonly out = new Float64Array(2);

  constructor(
    readonly unit: VtdUnit,
    readonly mem: DmaMemory,
    readonly sid: number,
    /** Most segments one transfer may produce (a transfer of n pages needs at most n + 1). */
    readonly maxSegments = 512,
  ) {
    this.segView = new Array<Uint8Array | null>(maxSegments).fill(null);
    this.segOff = new Float64Array(maxSegments);
    this.segLen = new Float64Array(maxSegments);
  }

  /** Starts a segment list that several translate(…, append) calls extend (a PRP list). */
  reset(): void {
    this.segCount = 0;
  }

  /**
   * Translates [iova, iova+len) for a device read (isWrite false) or write, appending segments.
   * False on the first page that does not translate; the fault is in `this.fault` (and, for a
   * remapping fault, already recorded by the unit).
   */
  translate(iova: number, len: number, isWrite: boolean): boolean {
    const unit = this.unit;
    let a = iova;
    let left = len;
    while (left > 0) {
      unit.io[0] = a;
      const r = unit.xlate(this.sid, isWrite);
      if (r !== 0) return this.fail(r, a, isWrite);
      const inPage = PAGE - (a % PAGE);
      const n = left < inPage ? left : inPage;
      const view = this.mem.locate(unit.io[0], this.out);
      if (view === null || this.out[1] < n) return this.fail(TR_INVALID_ADDRESS, a, isWrite);
      const off = this.out[0];
      const k = this.segCount;
      // adjacent pages that land next to each other in one view become one segment
      if (k > 0 && this.segView[k - 1] === view && this.segOff[k - 1] + this.segLen[k - 1] === off) this.segLen[k - 1] += n;
      else {
        if (k === this.maxSegments) return this.fail(0, a, isWrite, 'too-large');
        this.segView[k] = view;
        this.segOff[k] = off;
        this.segLen[k] = n;
        this.segCount = k + 1;
      }
      a += n;
      left -= n;
    }
    return true;
  }

  /** Device read of buf[0..len) from iova: small structures (queue entries, PRP lists). */
  read(iova: number, buf: Uint8Array, len: number): boolean {
    this.reset();
    if (!this.translate(iova, len, false)) return false;
    let at = 0;
    for (let s = 0; s < this.segCount; s++) {
      const v = this.segView[s] as Uint8Array;
      const off = this.segOff[s];
      const n = this.segLen[s];
      for (let i = 0; i < n; i++) buf[at + i] = v[off + i];
      at += n;
    }
    return true;
  }

  /** Device write of buf[0..len) to iova (completion entries, status). */
  write(iova: number, buf: Uint8Array, len: number): boolean {
    this.reset();
    if (!this.translate(iova, len, true)) return false;
    let at = 0;
    for (let s = 0; s < this.segCount; s++) {
      const v = this.segView[s] as Uint8Array;
      const off = this.segOff[s];
      const n = this.segLen[s];
      for (let i = 0; i < n; i++) v[off + i] = buf[at + i];
      at += n;
    }
    return true;
  }

  /** Copies the translated segments from (toMemory) or into `buf` starting at `at`: bulk data. */
  copySegments(buf: Uint8Array, at: number, toMemory: boolean): void {
    for (let s = 0; s < this.segCount; s++) {
      const v = this.segView[s] as Uint8Array;
      const off = this.segOff[s];
      const n = this.segLen[s];
      if (toMemory) v.set(buf.subarray(at, at + n), off);
      else buf.set(v.subarray(off, off + n), at);
      at += n;
    }
  }

  private fail(r: number, iova: number, write: boolean, kind?: DmaFault['kind']): false {
    const f = this.fault;
    f.iova = iova;
    f.write = write;
    if (kind !== undefined) {
      f.kind = kind;
      f.reason = 0;
    } else if (r === TR_INTERRUPT_WINDOW) {
      f.kind = 'interrupt-window';
      f.reason = 0;
    } else if (r === TR_INVALID_ADDRESS || r === 0) {
      f.kind = 'unbacked';
      f.reason = 0;
    } else {
      f.kind = 'fault';
      f.reason = -r;
    }
    return false;
  }
}

/**
 * Test and bench memory: 4 KiB pages created on first touch below `size`, each its own view (so
 * nothing coalesces across pages, which exercises the segment logic).
 */
export class PageMemory implements DmaMemory {
  private readonly pages = new Map<number, Uint8Array>();

  constructor(readonly size: number) {}

  /** Backs page `pfn` with the caller's 4 KiB (a test rig shares it with a driver's view). */
  adopt(pfn: number, bytes: Uint8Array): void {
    if (bytes.length !== PAGE) throw new RangeError('a page is 4 KiB');
    this.pages.set(pfn, bytes);
  }

  /** Whether page `pfn` was ever touched (a refused DMA must not have created it). */
  has(pfn: number): boolean {
    return this.pages.has(pfn);
  }

  page(pfn: number): Uint8Array {
    let p = this.pages.get(pfn);
    if (p === undefined) {
      p = new Uint8Array(PAGE);
      this.pages.set(pfn, p);
    }
    return p;
  }

  locate(pa: number, out: Float64Array): Uint8Array | null {
    if (!(pa >= 0 && pa < this.size)) return null;
    const off = pa % PAGE;
    out[0] = off;
    out[1] = PAGE - off;
    return this.page((pa - off) / PAGE);
  }

  readU64(pa: number, out: Uint32Array): boolean {
    return readU64Bytewise(this, pa, out);
  }

  read(pa: number, dst: Uint8Array): boolean {
    return this.each(pa, dst.length, (v, off, at, n) => dst.set(v.subarray(off, off + n), at));
  }

  write(pa: number, src: Uint8Array): boolean {
    return this.each(pa, src.length, (v, off, at, n) => v.set(src.subarray(at, at + n), off));
  }

  private each(pa: number, len: number, f: (v: Uint8Array, off: number, at: number, n: number) => void): boolean {
    if (!(Number.isSafeInteger(pa) && pa >= 0 && pa + len <= this.size)) return false;
    let at = 0;
    while (at < len) {
      const a = pa + at;
      const off = a % PAGE;
      const n = Math.min(PAGE - off, len - at);
      f(this.page((a - off) / PAGE), off, at, n);
      at += n;
    }
    return true;
  }
}

/**
 * Page-sized views of DMA memory, made once per page and reused: a vectored medium transfer
 * (preadv/pwritev) names each segment by a view of exactly its bytes, and whole pages, the common
 * case, then cost no allocation. Weakly keyed by the memory's view, so a view that goes away (a
 * dead domain's mapping) takes its pages with it.
 */
export class PageViews {
  private readonly byView = new WeakMap<Uint8Array, (Uint8Array | undefined)[]>();

  /** Appends views of the engine's translated segments, in order, to `iov`. */
  append(d: DmaEngine, iov: Uint8Array[]): void {
    for (let s = 0; s < d.segCount; s++) {
      const v = d.segView[s] as Uint8Array;
      const off = d.segOff[s];
      const len = d.segLen[s];
      if (off === 0 && len === v.length) {
        iov.push(v);
        continue;
      }
      if (off % PAGE !== 0 || len % PAGE !== 0) {
        iov.push(v.subarray(off, off + len));
        continue;
      }
      let pages = this.byView.get(v);
      if (pages === undefined) {
        pages = [];
        this.byView.set(v, pages);
      }
      for (let p = off / PAGE, end = (off + len) / PAGE; p < end; p++) {
        let pv = pages[p];
        if (pv === undefined) {
          pv = v.subarray(p * PAGE, (p + 1) * PAGE);
          pages[p] = pv;
        }
        iov.push(pv);
      }
    }
  }
}
