// The frontend end of a shared ring (xen/io/ring.h semantics): it produces requests and consumes
// responses. Slot contents are written by the caller at the offsets this class hands out, through
// the abi/ accessors; this class owns only the indices and the notification decisions.
//
// Cost model: an Atomics op is ~40 ns, a DataView field access a few ns. So the peer's producer
// index is read once per poll (unconsumedResponses) and ours is published once per batch
// (pushRequests*), never per request.

import { SRING_HEADER_SIZE, SRING_W_REQ_EVENT, SRING_W_REQ_PROD, SRING_W_RSP_EVENT, SRING_W_RSP_PROD, type RingLayout } from '../abi/sring.js';
import { PrivateEntry, RingFaultError, needsNotify, ringGeometry, sharedRingInit, sharedRingSetIndices, type RingAttachOptions } from './sring.js';

export class FrontRing {
  readonly layout: RingLayout;
  readonly entrySize: number;
  /** slots (a power of two) */
  readonly size: number;
  readonly mask: number;
  /** the sring (header at 0, slots from 64) as shared memory; write requests here */
  readonly view: DataView;
  /** the last response taken by consumeResponse(), copied out of shared memory */
  readonly rsp: DataView;
  /** private producer index: requests written but maybe not yet pushed */
  reqProdPvt: number;
  /** responses consumed */
  rspCons: number;
  /** set once the backend published an impossible rsp_prod; the ring is dead from then on */
  fault: RingFaultError | null = null;

  /**
   * the sring as 32-bit words (index = byte offset >> 2), for layouts whose slots are 4-aligned:
   * write requests at produceRequestWord()'s offset, read responses with consumeResponseWords
   */
  readonly words: Int32Array;
  private readonly w: Int32Array;
  private readonly u8: Uint8Array;
  private readonly rspCopy: PrivateEntry;
  private readonly rspWords: number;
  /** req_prod as we last published it: we are its only writer, so no need to read it back */
  private published: number;

  /**
   * SHARED_RING_INIT + FRONT_RING_INIT: the frontend creating a fresh ring. With `start`, the
   * indices begin there instead of 0 (producers = start, events = start + 1), as after
   * FRONT_RING_ATTACH; tests use it to cross 2^32 quickly.
   */
  static init(buffer: ArrayBuffer, layout: RingLayout, opts: RingAttachOptions = {}): FrontRing {
    sharedRingInit(buffer, opts);
    const start = (opts.start ?? 0) >>> 0;
    if (start !== 0) sharedRingSetIndices(buffer, start, opts);
    return new FrontRing(buffer, layout, { ...opts, start });
  }

  /** FRONT_RING_ATTACH: take over an initialised ring at index `start` */
  static attach(buffer: ArrayBuffer, layout: RingLayout, opts: RingAttachOptions = {}): FrontRing {
    return new FrontRing(buffer, layout, opts);
  }

  private constructor(buffer: ArrayBuffer, layout: RingLayout, opts: RingAttachOptions) {
    const g = ringGeometry(buffer, layout, opts);
    this.layout = layout;
    this.entrySize = layout.entrySize;
    this.size = g.size;
    this.mask = g.size - 1;
    this.view = new DataView(buffer, g.byteOffset, g.byteLength);
    this.w = new Int32Array(buffer, g.byteOffset, g.byteLength >> 2);
    this.words = this.w;
    this.u8 = new Uint8Array(buffer, g.byteOffset, g.byteLength);
    this.rspCopy = new PrivateEntry(layout.responseSize);
    this.rsp = this.rspCopy.view;
    // whole words when the entry allows it, bytes otherwise (a layout nobody here uses today)
    this.rspWords = layout.entrySize % 4 === 0 && layout.responseSize % 4 === 0 ? layout.responseSize >> 2 : -1;
    const start = (opts.start ?? 0) >>> 0;
    this.reqProdPvt = start;
    this.rspCons = start;
    this.published = Atomics.load(this.w, SRING_W_REQ_PROD) >>> 0;
  }

  /** RING_FREE_REQUESTS */
  freeRequests(): number {
    return this.size - ((this.reqProdPvt - this.rspCons) >>> 0);
  }

  /** RING_FULL */
  full(): boolean {
    return this.freeRequests() === 0;
  }

  /** byte offset in `view` of the slot for index `idx` (RING_GET_REQUEST / RING_GET_RESPONSE) */
  slotOffset(idx: number): number {
    return SRING_HEADER_SIZE + (idx & this.mask) * this.entrySize;
  }

  /**
   * The slot at req_prod_pvt, then req_prod_pvt++ (RING_GET_REQUEST(r, r->req_prod_pvt++)). The caller
   * checks freeRequests() first; the request becomes visible at the next push.
   */
  produceRequest(): number {
    const idx = this.reqProdPvt;
    this.reqProdPvt = (idx + 1) >>> 0;
    return SRING_HEADER_SIZE + (idx & this.mask) * this.entrySize;
  }

  /** produceRequest() as a word offset in `words` (slots must be 4-aligned: blkif, netif) */
  produceRequestWord(): number {
    if (this.entrySize % 4 !== 0) throw new RangeError(`ring layout ${this.layout.name}: slots are not 4-aligned`);
    const idx = this.reqProdPvt;
    this.reqProdPvt = (idx + 1) >>> 0;
    return (SRING_HEADER_SIZE + (idx & this.mask) * this.entrySize) >> 2;
  }

  /** RING_PUSH_REQUESTS: the seq-cst store orders every slot write before the new index */
  pushRequests(): void {
    const p = this.reqProdPvt;
    Atomics.store(this.w, SRING_W_REQ_PROD, p | 0);
    this.published = p;
  }

  /**
   * RING_PUSH_REQUESTS_AND_CHECK_NOTIFY: publish, then (after the full barrier that Atomics.store
   * is) read req_event; true iff the backend asked to be woken for an index we just published.
   */
  pushRequestsAndCheckNotify(): boolean {
    const old = this.published;
    const p = this.reqProdPvt;
    Atomics.store(this.w, SRING_W_REQ_PROD, p | 0);
    this.published = p;
    return needsNotify(p, old, Atomics.load(this.w, SRING_W_REQ_EVENT) >>> 0);
  }

  /** req_prod as this end last published it */
  get reqProd(): number {
    return this.published;
  }

  /**
   * Responses published and not yet consumed (one Atomics.load). Throws RingFaultError when the
   * backend claims more responses than requests we have published: a stricter form of
   * RING_RESPONSE_PROD_OVERFLOW (which only bounds it by the ring size).
   */
  unconsumedResponses(): number {
    if (this.fault !== null) throw this.fault;
    const prod = Atomics.load(this.w, SRING_W_RSP_PROD) >>> 0;
    const n = (prod - this.rspCons) >>> 0;
    if (n > ((this.published - this.rspCons) >>> 0)) return this.halt(prod);
    return n;
  }


  /** RING_RESPONSE_PROD_OVERFLOW as ring.h defines it */
  responseProdOverflow(prod: number): boolean {
    return (prod - this.rspCons) >>> 0 > this.size;
  }

  private halt(prod: number): never {
    this.fault = new RingFaultError(
      'rsp-prod-overflow',
      prod,
      `backend published rsp_prod ${prod} with rsp_cons ${this.rspCons} and only ${(this.published - this.rspCons) >>> 0} requests outstanding`,
    );
    throw this.fault;
  }

  /**
   * RING_COPY_RESPONSE at rsp_cons, then rsp_cons++: the response is read from `rsp` (offset 0),
   * a private copy the backend can no longer change. Call only for responses unconsumedResponses()
   * reported.
   */
  consumeResponse(): DataView {
    const idx = this.rspCons;
    this.rspCons = (idx + 1) >>> 0;
    this.rspCopy.copyFrom(this.w, this.u8, SRING_HEADER_SIZE + (idx & this.mask) * this.entrySize, this.rspWords);
    return this.rsp;
  }

  /**
   * RING_COPY_RESPONSE through a layout decoder: `decode` reads each field of the response at
   * rsp_cons once into `into`, then rsp_cons++. `decode` must fetch every byte at most once.
   */
  consumeResponseInto<T>(decode: (view: DataView, off: number, into: T) => T, into: T): T {
    const idx = this.rspCons;
    this.rspCons = (idx + 1) >>> 0;
    return decode(this.view, SRING_HEADER_SIZE + (idx & this.mask) * this.entrySize, into);
  }

  /**
   * consumeResponseInto over 32-bit words: `decode(words, wordOffset, into)` reads each word of the
   * response at rsp_cons at most once into `into`, then rsp_cons++ (readBlkifResponseWords for
   * blkif). Needs 4-aligned slots.
   */
  consumeResponseWords<T>(decode: (words: Int32Array, wordOffset: number, into: T) => T, into: T): T {
    if (this.rspWords < 0) throw new RangeError(`ring layout ${this.layout.name}: slots are not 4-aligned`);
    const idx = this.rspCons;
    this.rspCons = (idx + 1) >>> 0;
    return decode(this.w, (SRING_HEADER_SIZE + (idx & this.mask) * this.entrySize) >> 2, into);
  }

  /** skip the response at rsp_cons without copying it (rsp_cons++), e.g. after reading it in place */
  skipResponse(): number {
    const idx = this.rspCons;
    this.rspCons = (idx + 1) >>> 0;
    return SRING_HEADER_SIZE + (idx & this.mask) * this.entrySize;
  }

  /**
   * RING_FINAL_CHECK_FOR_RESPONSES: before going to sleep, ask to be notified of the next response
   * (rsp_event = rsp_cons + 1) and look again, so a response published in between is not missed.
   */
  finalCheckForResponses(): boolean {
    if (this.unconsumedResponses() > 0) return true;
    Atomics.store(this.w, SRING_W_RSP_EVENT, (this.rspCons + 1) | 0);
    return this.unconsumedResponses() > 0;
  }

  /** requests pushed or pending whose responses have not been consumed */
  outstanding(): number {
    return (this.reqProdPvt - this.rspCons) >>> 0;
  }
}
