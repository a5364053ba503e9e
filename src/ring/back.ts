// The backend end of a shared ring (xen/io/ring.h semantics): it consumes requests and produces
// responses. The frontend is not trusted: its producer index is checked (RING_REQUEST_PROD_OVERFLOW,
// the min() clamp), each request is copied out of shared memory exactly once before anyone looks at
// it (XSA-155), and each response slot is zeroed before it is filled (XSA-216).
//
// Cost model as in front.ts: one Atomics.load per poll, one Atomics.store (+ a load for the
// notify decision) per batch of responses.

import { SRING_HEADER_SIZE, SRING_W_REQ_EVENT, SRING_W_REQ_PROD, SRING_W_RSP_EVENT, SRING_W_RSP_PROD, type RingLayout } from '../abi/sring.js';
import { PrivateEntry, RingFaultError, needsNotify, ringGeometry, type RingAttachOptions } from './sring.js';

export class BackRing {
  readonly layout: RingLayout;
  readonly entrySize: number;
  readonly size: number;
  readonly mask: number;
  /** the sring as shared memory; write responses at the offsets produceResponse() returns */
  readonly view: DataView;
  /** the request taken by the last consumeRequest(): private, validated and used from here only */
  readonly req: DataView;
  /** private producer index: responses written but maybe not yet pushed */
  rspProdPvt: number;
  /** requests consumed */
  reqCons: number;
  /** set once the frontend published an impossible req_prod; the ring is dead from then on */
  fault: RingFaultError | null = null;

  /**
   * the sring as 32-bit words (index = byte offset >> 2), for layouts whose slots are 4-aligned:
   * the word accessors (consumeRequestWords, produceResponse16) work on this
   */
  readonly words: Int32Array;
  private readonly w: Int32Array;
  private readonly u8: Uint8Array;
  private readonly reqCopy: PrivateEntry;
  private readonly reqWords: number;
  private readonly rspWords: number;
  /** responses zeroed 8 bytes at a time when every slot is 8-aligned (blkif, netif rx) */
  private readonly rspQwords: number;
  private readonly q: Float64Array;
  /** rsp_prod as we last published it (we are its only writer) */
  private published: number;

  /**
   * BACK_RING_ATTACH (BACK_RING_INIT when start is 0). The backend never initialises the sring:
   * the frontend did, before granting it.
   */
  static attach(buffer: ArrayBuffer, layout: RingLayout, opts: RingAttachOptions = {}): BackRing {
    return new BackRing(buffer, layout, opts);
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
    this.reqCopy = new PrivateEntry(layout.requestSize);
    this.req = this.reqCopy.view;
    const aligned = layout.entrySize % 4 === 0;
    this.reqWords = aligned && layout.requestSize % 4 === 0 ? layout.requestSize >> 2 : -1;
    this.rspWords = aligned && layout.responseSize % 4 === 0 ? layout.responseSize >> 2 : -1;
    this.rspQwords = layout.entrySize % 8 === 0 && layout.responseSize % 8 === 0 ? layout.responseSize >> 3 : 0;
    this.q = new Float64Array(buffer, g.byteOffset, g.byteLength >> 3);
    const start = (opts.start ?? 0) >>> 0;
    this.rspProdPvt = start;
    this.reqCons = start;
    this.published = Atomics.load(this.w, SRING_W_RSP_PROD) >>> 0;
  }

  slotOffset(idx: number): number {
    return SRING_HEADER_SIZE + (idx & this.mask) * this.entrySize;
  }

  /**
   * RING_HAS_UNCONSUMED_REQUESTS with one Atomics.load of req_prod: min(req_prod - req_cons,
   * free response slots). The clamp bounds what a frontend that moves req_prod backwards can make
   * us re-read to slots it owns anyway. Throws RingFaultError on RING_REQUEST_PROD_OVERFLOW (more
   * requests than the ring can hold: a garbage or hostile req_prod), and from then on.
   */
  unconsumedRequests(): number {
    if (this.fault !== null) throw this.fault;
    const prod = Atomics.load(this.w, SRING_W_REQ_PROD) >>> 0;
    const pvt = this.rspProdPvt;
    if ((prod - pvt) >>> 0 > this.size) return this.halt(prod);
    const cons = this.reqCons;
    const req = (prod - cons) >>> 0;
    const rsp = this.size - ((cons - pvt) >>> 0);
    return req < rsp ? req : rsp;
  }


  /** RING_REQUEST_PROD_OVERFLOW */
  requestProdOverflow(prod: number): boolean {
    return (prod - this.rspProdPvt) >>> 0 > this.size;
  }

  /** RING_REQUEST_CONS_OVERFLOW: would consuming index `cons` overrun the responses not yet produced? */
  requestConsOverflow(cons: number = this.reqCons): boolean {
    return (cons - this.rspProdPvt) >>> 0 >= this.size;
  }

  private halt(prod: number): never {
    this.fault = new RingFaultError(
      'req-prod-overflow',
      prod,
      `frontend provided bogus ring requests: req_prod ${prod} is more than ${this.size} ahead of rsp_prod_pvt ${this.rspProdPvt}`,
    );
    throw this.fault;
  }

  /**
   * RING_COPY_REQUEST at req_cons, then req_cons++. The request's bytes are copied out of shared
   * memory once, into `req` (offset 0), which is what the caller decodes and validates. Call only for
   * requests unconsumedRequests() reported.
   */
  consumeRequest(): DataView {
    const idx = this.reqCons;
    this.reqCons = (idx + 1) >>> 0;
    this.reqCopy.copyFrom(this.w, this.u8, SRING_HEADER_SIZE + (idx & this.mask) * this.entrySize, this.reqWords);
    return this.req;
  }

  /**
   * RING_COPY_REQUEST through a layout decoder: `decode` reads each field of the slot at req_cons
   * exactly once into `into` (the private copy that is then validated and used), then req_cons++.
   * Cheaper than consumeRequest() when a request uses less than its slot (a 1-segment blkif
   * request is 32 of 112 bytes). `decode` must fetch every byte at most once, as the abi/ readers
   * do; the frontend may rewrite the slot while we read it.
   */
  consumeRequestInto<T>(decode: (view: DataView, off: number, into: T) => T, into: T): T {
    const idx = this.reqCons;
    this.reqCons = (idx + 1) >>> 0;
    return decode(this.view, SRING_HEADER_SIZE + (idx & this.mask) * this.entrySize, into);
  }

  /**
   * consumeRequestInto over 32-bit words: `decode(words, wordOffset, into)` reads each word of the
   * slot at req_cons at most once into `into` (the private copy that is then validated and used),
   * then req_cons++. Aligned Int32Array loads instead of DataView calls: the fast path for blkif
   * (readBlkifRequestWords). Needs 4-aligned slots.
   */
  consumeRequestWords<T>(decode: (words: Int32Array, wordOffset: number, into: T) => T, into: T): T {
    if (this.reqWords < 0) throw new RangeError(`ring layout ${this.layout.name}: slots are not 4-aligned`);
    const idx = this.reqCons;
    this.reqCons = (idx + 1) >>> 0;
    return decode(this.w, (SRING_HEADER_SIZE + (idx & this.mask) * this.entrySize) >> 2, into);
  }

  /**
   * produceResponse() for a 16-byte response given as its four little-endian words, then
   * rsp_prod_pvt++. All 16 bytes are stored, padding included, so nothing earlier in the slot can
   * leak (XSA-216) without a separate zeroing pass. Only for layouts with 16-byte, 4-aligned
   * responses (blkif).
   */
  produceResponse16(w0: number, w1: number, w2: number, w3: number): void {
    if (this.rspWords !== 4) throw new RangeError(`ring layout ${this.layout.name}: responses are not 16 aligned bytes`);
    const idx = this.rspProdPvt;
    this.rspProdPvt = (idx + 1) >>> 0;
    const s = (SRING_HEADER_SIZE + (idx & this.mask) * this.entrySize) >> 2;
    const w = this.w;
    w[s] = w0;
    w[s + 1] = w1;
    w[s + 2] = w2;
    w[s + 3] = w3;
  }

  /**
   * The slot at rsp_prod_pvt, zeroed over the response's size, then rsp_prod_pvt++. Zeroing first
   * means padding the caller does not write can never leak earlier bytes (XSA-216). The response
   * becomes visible at the next push.
   */
  produceResponse(): number {
    const idx = this.rspProdPvt;
    this.rspProdPvt = (idx + 1) >>> 0;
    const off = SRING_HEADER_SIZE + (idx & this.mask) * this.entrySize;
    const nq = this.rspQwords;
    const nw = this.rspWords;
    if (nq > 0) {
      // 8 bytes per store: +0.0 is all zero bits
      const q = this.q;
      const s = off >> 3;
      q[s] = 0;
      for (let i = 1; i < nq; i++) q[s + i] = 0;
    } else if (nw >= 0) {
      const w = this.w;
      const s = off >> 2;
      for (let i = 0; i < nw; i++) w[s + i] = 0;
    } else {
      this.u8.fill(0, off, off + this.layout.responseSize);
    }
    return off;
  }

  /** RING_PUSH_RESPONSES */
  pushResponses(): void {
    const p = this.rspProdPvt;
    Atomics.store(this.w, SRING_W_RSP_PROD, p | 0);
    this.published = p;
  }

  /** RING_PUSH_RESPONSES_AND_CHECK_NOTIFY: true iff the frontend asked to be woken for one of these */
  pushResponsesAndCheckNotify(): boolean {
    const old = this.published;
    const p = this.rspProdPvt;
    Atomics.store(this.w, SRING_W_RSP_PROD, p | 0);
    this.published = p;
    return needsNotify(p, old, Atomics.load(this.w, SRING_W_RSP_EVENT) >>> 0);
  }

  /** rsp_prod as this end last published it */
  get rspProd(): number {
    return this.published;
  }

  /**
   * RING_FINAL_CHECK_FOR_REQUESTS: before sleeping, ask for a notification at the next request
   * (req_event = req_cons + 1) and look again, so a request pushed in between is not missed.
   */
  finalCheckForRequests(): boolean {
    if (this.unconsumedRequests() > 0) return true;
    Atomics.store(this.w, SRING_W_REQ_EVENT, (this.reqCons + 1) | 0);
    return this.unconsumedRequests() > 0;
  }
}
