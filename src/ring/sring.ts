// What the front and back rings share: locating an sring inside a buffer, SHARED_RING_INIT, and the
// error a ring raises when its peer publishes an index no well-behaved peer could.

import {
  SRING_HEADER_SIZE,
  SRING_PVT,
  SRING_W_REQ_EVENT,
  SRING_W_REQ_PROD,
  SRING_W_RSP_EVENT,
  SRING_W_RSP_PROD,
  ringSlots,
  type RingLayout,
} from '../abi/sring.js';

export interface RingRegion {
  /** where the sring starts in the buffer (default 0); must be 8-aligned */
  byteOffset?: number;
  /** bytes of the sring, header included (default: the rest of the buffer) */
  byteLength?: number;
}

export interface RingAttachOptions extends RingRegion {
  /**
   * FRONT/BACK_RING_ATTACH index: where this end's private indices start. Default 0, which is
   * FRONT/BACK_RING_INIT. A reconnecting end passes the indices it resumes from.
   */
  start?: number;
}

export type RingFaultCode = 'req-prod-overflow' | 'rsp-prod-overflow';

/**
 * The peer published an impossible producer index (RING_REQUEST_PROD_OVERFLOW on a backend,
 * RING_RESPONSE_PROD_OVERFLOW on a frontend). The ring is halted: every later poll throws the same
 * error, and the owner is expected to disconnect the peer with this message as the logged reason.
 */
export class RingFaultError extends Error {
  constructor(
    readonly code: RingFaultCode,
    readonly producer: number,
    message: string,
  ) {
    super(message);
    this.name = 'RingFaultError';
  }
}

export interface RingGeometry {
  byteOffset: number;
  byteLength: number;
  size: number;
}

export function ringGeometry(buffer: ArrayBuffer, layout: RingLayout, region: RingRegion = {}): RingGeometry {
  const byteOffset = region.byteOffset ?? 0;
  const byteLength = region.byteLength ?? buffer.byteLength - byteOffset;
  if (!Number.isInteger(byteOffset) || byteOffset < 0 || byteOffset % 8 !== 0) {
    throw new RangeError(`sring byteOffset ${byteOffset} must be a non-negative multiple of 8`);
  }
  if (!Number.isInteger(byteLength) || byteLength < 0 || byteOffset + byteLength > buffer.byteLength) {
    throw new RangeError(`sring [${byteOffset}, +${byteLength}) outside a ${buffer.byteLength}-byte buffer`);
  }
  if (layout.requestSize > layout.entrySize || layout.responseSize > layout.entrySize || layout.responseSize < 1 || layout.requestSize < 1) {
    throw new RangeError(`ring layout ${layout.name}: request/response must fit the ${layout.entrySize}-byte entry`);
  }
  const size = ringSlots(byteLength, layout.entrySize);
  if (size < 1) throw new RangeError(`a ${byteLength}-byte sring holds no ${layout.entrySize}-byte entry`);
  return { byteOffset, byteLength, size };
}

/**
 * SHARED_RING_INIT: producers 0, events 1, private and pad bytes zeroed. Only the frontend does this,
 * before it grants the ring; a backend must never re-initialise a ring it was given.
 */
export function sharedRingInit(buffer: ArrayBuffer, region: RingRegion = {}): void {
  const byteOffset = region.byteOffset ?? 0;
  const hdr = new Int32Array(buffer, byteOffset, SRING_HEADER_SIZE / 4);
  hdr.fill(0, SRING_PVT / 4);
  Atomics.store(hdr, SRING_W_REQ_EVENT, 1);
  Atomics.store(hdr, SRING_W_RSP_EVENT, 1);
  Atomics.store(hdr, SRING_W_RSP_PROD, 0);
  Atomics.store(hdr, SRING_W_REQ_PROD, 0);
}

/** Set all four header indices, e.g. to start a test or a resumed ring near 2^32. */
export function sharedRingSetIndices(buffer: ArrayBuffer, idx: number, region: RingRegion = {}): void {
  const hdr = new Int32Array(buffer, region.byteOffset ?? 0, SRING_HEADER_SIZE / 4);
  Atomics.store(hdr, SRING_W_REQ_EVENT, (idx + 1) | 0);
  Atomics.store(hdr, SRING_W_RSP_EVENT, (idx + 1) | 0);
  Atomics.store(hdr, SRING_W_RSP_PROD, idx | 0);
  Atomics.store(hdr, SRING_W_REQ_PROD, idx | 0);
}

/** The four header indices as u32, read with Atomics (for tests and diagnostics). */
export function sharedRingIndices(buffer: ArrayBuffer, region: RingRegion = {}): { reqProd: number; reqEvent: number; rspProd: number; rspEvent: number } {
  const hdr = new Int32Array(buffer, region.byteOffset ?? 0, SRING_HEADER_SIZE / 4);
  return {
    reqProd: Atomics.load(hdr, SRING_W_REQ_PROD) >>> 0,
    reqEvent: Atomics.load(hdr, SRING_W_REQ_EVENT) >>> 0,
    rspProd: Atomics.load(hdr, SRING_W_RSP_PROD) >>> 0,
    rspEvent: Atomics.load(hdr, SRING_W_RSP_EVENT) >>> 0,
  };
}

/**
 * The CHECK_NOTIFY test: notify iff the peer's event index lies in (old, new], computed in u32
 * arithmetic so it holds across the 2^32 wrap.
 */
export function needsNotify(newProd: number, oldProd: number, event: number): boolean {
  return (newProd - event) >>> 0 < (newProd - oldProd) >>> 0;
}

/**
 * A private copy target of `bytes` bytes: the entry copied out of shared memory is read from here,
 * so a peer rewriting the slot after the copy changes nothing we validated (XSA-155).
 */
export class PrivateEntry {
  readonly view: DataView;
  readonly words: Int32Array;
  readonly bytes: Uint8Array;
  constructor(private readonly size: number) {
    const buf = new ArrayBuffer((size + 7) & ~7);
    this.view = new DataView(buf);
    this.words = new Int32Array(buf);
    this.bytes = new Uint8Array(buf);
  }

  /**
   * RING_COPY_REQUEST / RING_COPY_RESPONSE: copies the entry at byte `off` of the ring out of
   * shared memory, word by word when slots are 4-aligned (`nw` words), else byte by byte.
   */
  copyFrom(w: Int32Array, u8: Uint8Array, off: number, nw: number): void {
    if (nw >= 0) {
      const dst = this.words;
      const s = off >> 2;
      for (let i = 0; i < nw; i++) dst[i] = w[s + i];
    } else {
      const dst = this.bytes;
      for (let i = 0, n = this.size; i < n; i++) dst[i] = u8[off + i];
    }
  }
}
