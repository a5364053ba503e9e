import { describe, expect, it } from 'vitest';
import { readBlkifRequestWords, readBlkifResponseWords, writeBlkifRwWords, writeBlkifSegmentWords, blkifResponseWord2 } from '../abi/blkif.js';
import { FrontRing } from './front.js';
import { BackRing } from './back.js';
import { RingFaultError, needsNotify, sharedRingIndices, sharedRingSetIndices } from './sring.js';
import { SRING_HEADER_SIZE, SRING_REQ_EVENT, SRING_REQ_PROD, SRING_RSP_EVENT, SRING_RSP_PROD, XEN_PAGE_SIZE, ringBytes } from '../abi/sring.js';
import {
  BLKIF_OP_READ,
  BLKIF_OP_WRITE,
  BLKIF_RING,
  BLKIF_RSP_OKAY,
  blkifRequest,
  blkifResponse,
  newBlkifRequest,
  newBlkifResponse,
  writeBlkifResponse,
  writeBlkifRw,
  writeBlkifSegment,
} from '../abi/blkif.js';
import { NETIF_TX_RING, netifTxRequest, netifTxResponse, newNetifTxRequest } from '../abi/netif.js';
import { native } from '../native/index.js';

function pair(pages = 1, start?: number): { buf: ArrayBuffer; front: FrontRing; back: BackRing } {
  const buf = new ArrayBuffer(pages * XEN_PAGE_SIZE);
  let front = FrontRing.init(buf, BLKIF_RING);
  if (start !== undefined) {
    sharedRingSetIndices(buf, start);
    front = FrontRing.attach(buf, BLKIF_RING, { start });
  }
  const back = BackRing.attach(buf, BLKIF_RING, start === undefined ? {} : { start });
  return { buf, front, back };
}

/** push `n` requests with ids from `id0`; returns whether the push said to notify */
function pushN(front: FrontRing, n: number, id0: number): boolean {
  for (let i = 0; i < n; i++) {
    const off = front.produceRequest();
    writeBlkifRw(front.view, off, (id0 + i) & 1 ? BLKIF_OP_WRITE : BLKIF_OP_READ, 1, 7, id0 + i, (id0 + i) * 8);
    writeBlkifSegment(front.view, off, 0, 100 + i, 0, 7);
  }
  return front.pushRequestsAndCheckNotify();
}

/** answer everything the backend can see; returns the ids it saw */
function serve(back: BackRing): number[] {
  const req = newBlkifRequest();
  const ids: number[] = [];
  let n = back.unconsumedRequests();
  while (n-- > 0) {
    blkifRequest.read(back.consumeRequest(), 0, req);
    ids.push(req.idLo);
    writeBlkifResponse(back.view, back.produceResponse(), req.idLo, req.idHi, req.operation, BLKIF_RSP_OKAY);
  }
  back.pushResponsesAndCheckNotify();
  return ids;
}

function drain(front: FrontRing): number[] {
  const rsp = newBlkifResponse();
  const ids: number[] = [];
  let n = front.unconsumedResponses();
  while (n-- > 0) ids.push(blkifResponse.read(front.consumeResponse(), 0, rsp).idLo);
  return ids;
}

describe('shared ring init and geometry', () => {
  it('SHARED_RING_INIT sets prods 0, events 1 and zeroes pvt and pad', () => {
    const buf = new ArrayBuffer(XEN_PAGE_SIZE);
    new Uint8Array(buf).fill(0xee);
    const front = FrontRing.init(buf, BLKIF_RING);
    const dv = new DataView(buf);
    expect(dv.getUint32(SRING_REQ_PROD, true)).toBe(0);
    expect(dv.getUint32(SRING_REQ_EVENT, true)).toBe(1);
    expect(dv.getUint32(SRING_RSP_PROD, true)).toBe(0);
    expect(dv.getUint32(SRING_RSP_EVENT, true)).toBe(1);
    expect([...new Uint8Array(buf, 16, 48)].every((b) => b === 0)).toBe(true);
    expect(new Uint8Array(buf)[SRING_HEADER_SIZE]).toBe(0xee); // slots are not the init's business
    expect(front.size).toBe(32);
    expect(front.freeRequests()).toBe(32);
  });

  it('sizes multi-page rings by order', () => {
    const sizes = [0, 1, 2, 3, 4].map((o) => FrontRing.init(new ArrayBuffer(ringBytes(o)), BLKIF_RING).size);
    expect(sizes).toEqual([32, 64, 128, 256, 512]);
    expect(FrontRing.init(new ArrayBuffer(XEN_PAGE_SIZE), NETIF_TX_RING).size).toBe(256);
  });

  it('places a ring at a byte offset inside a larger buffer', () => {
    const buf = new ArrayBuffer(3 * XEN_PAGE_SIZE);
    const region = { byteOffset: XEN_PAGE_SIZE, byteLength: XEN_PAGE_SIZE };
    const front = FrontRing.init(buf, BLKIF_RING, region);
    const back = BackRing.attach(buf, BLKIF_RING, region);
    pushN(front, 3, 0);
    expect(new DataView(buf).getUint32(XEN_PAGE_SIZE + SRING_REQ_PROD, true)).toBe(3);
    expect(new DataView(buf).getUint32(SRING_REQ_PROD, true)).toBe(0);
    expect(serve(back)).toEqual([0, 1, 2]);
    expect(drain(front)).toEqual([0, 1, 2]);
  });

  it('refuses regions that hold no entry or are misaligned', () => {
    expect(() => FrontRing.init(new ArrayBuffer(100), BLKIF_RING)).toThrow(RangeError);
    expect(() => FrontRing.init(new ArrayBuffer(8192), BLKIF_RING, { byteOffset: 4 })).toThrow(RangeError);
    expect(() => FrontRing.init(new ArrayBuffer(4096), BLKIF_RING, { byteOffset: 4096, byteLength: 4096 })).toThrow(RangeError);
  });
});

describe('requests and responses', () => {
  it('moves requests and responses with every field intact', () => {
    const { front, back } = pair();
    const off = front.produceRequest();
    const r = newBlkifRequest();
    r.operation = BLKIF_OP_WRITE;
    r.nrSegments = 2;
    r.handle = 0xbeef;
    r.idLo = 0x89abcdef;
    r.idHi = 0xfedcba98;
    r.sectorNumber = 2 ** 40 + 5;
    r.segGref.set([11, 12]);
    r.segFirstSect.set([0, 3]);
    r.segLastSect.set([7, 5]);
    blkifRequest.write(front.view, off, r);
    expect(front.pushRequestsAndCheckNotify()).toBe(true);
    expect(back.unconsumedRequests()).toBe(1);
    const got = blkifRequest.read(back.consumeRequest(), 0, newBlkifRequest());
    expect(got.operation).toBe(BLKIF_OP_WRITE);
    expect(got.handle).toBe(0xbeef);
    expect([got.idLo, got.idHi]).toEqual([0x89abcdef, 0xfedcba98]);
    expect(got.sectorNumber).toBe(2 ** 40 + 5);
    expect([...got.segGref.subarray(0, 2)]).toEqual([11, 12]);
    expect([...got.segFirstSect.subarray(0, 2)]).toEqual([0, 3]);
    expect([...got.segLastSect.subarray(0, 2)]).toEqual([7, 5]);
    writeBlkifResponse(back.view, back.produceResponse(), got.idLo, got.idHi, got.operation, -2);
    expect(back.pushResponsesAndCheckNotify()).toBe(true);
    expect(front.unconsumedResponses()).toBe(1);
    const rsp = blkifResponse.read(front.consumeResponse(), 0, newBlkifResponse());
    expect(rsp).toEqual({ idLo: 0x89abcdef, idHi: 0xfedcba98, operation: BLKIF_OP_WRITE, status: -2 });
    expect(front.freeRequests()).toBe(32);
  });

  it('keeps the free count and refuses nothing when full', () => {
    const { front, back } = pair();
    pushN(front, 32, 0);
    expect(front.full()).toBe(true);
    expect(back.unconsumedRequests()).toBe(32);
    serve(back);
    expect(front.full()).toBe(true); // responses not consumed yet: slots still owned
    expect(drain(front).length).toBe(32);
    expect(front.freeRequests()).toBe(32);
  });

  it('wraps the free-running u32 indices at 2^32', () => {
    const start = 0xffffffff - 40;
    const { buf, front, back } = pair(1, start);
    const seen: number[] = [];
    let next = 0;
    const batches = [1, 7, 32, 3, 31, 5, 16, 32, 2, 32, 11];
    for (const b of batches) {
      const n = Math.min(b, front.freeRequests());
      pushN(front, n, next);
      next += n;
      serve(back);
      seen.push(...drain(front));
    }
    expect(seen).toEqual(Array.from({ length: next }, (_, i) => i));
    const expectIdx = (start + next) % 2 ** 32;
    expect(expectIdx).toBeLessThan(start); // we did cross the wrap
    expect(front.reqProdPvt).toBe(expectIdx);
    expect(front.rspCons).toBe(expectIdx);
    expect(back.reqCons).toBe(expectIdx);
    expect(back.rspProdPvt).toBe(expectIdx);
    const idx = sharedRingIndices(buf);
    expect(idx.reqProd).toBe(expectIdx);
    expect(idx.rspProd).toBe(expectIdx);
    expect(front.freeRequests()).toBe(32);
  });

  it('fills and drains a full ring across the wrap', () => {
    const { front, back } = pair(1, 0xfffffff0);
    for (let round = 0; round < 4; round++) {
      expect(front.freeRequests()).toBe(32);
      pushN(front, 32, round * 32);
      expect(back.unconsumedRequests()).toBe(32);
      expect(serve(back)).toHaveLength(32);
      expect(drain(front)).toEqual(Array.from({ length: 32 }, (_, i) => round * 32 + i));
    }
  });

  it('copies a request out of shared memory once (XSA-155)', () => {
    const { front, back } = pair();
    pushN(front, 1, 42);
    back.unconsumedRequests();
    const off = back.slotOffset(back.reqCons);
    const priv = back.consumeRequest();
    // the frontend rewrites the slot after the copy: the backend must not see it
    front.view.setUint8(off + 1, 200);
    front.view.setUint32(off + 8, 666, true);
    const req = blkifRequest.read(priv, 0, newBlkifRequest());
    expect(req.nrSegments).toBe(1);
    expect(req.idLo).toBe(42);
    expect(priv.buffer).not.toBe(front.view.buffer);
  });

  it('zeroes a response slot before it is filled (XSA-216)', () => {
    const { front, back } = pair();
    pushN(front, 1, 1);
    back.unconsumedRequests();
    back.consumeRequest();
    const slot = back.slotOffset(back.rspProdPvt);
    new Uint8Array(back.view.buffer, slot, 112).fill(0xaa);
    const off = back.produceResponse();
    expect(off).toBe(slot);
    const bytes = new Uint8Array(back.view.buffer, slot, 112);
    expect([...bytes.subarray(0, 16)].every((b) => b === 0)).toBe(true);
    expect(bytes[16]).toBe(0xaa); // beyond the response: the frontend's own request bytes, untouched
    // a caller that writes only id and status leaves the padding zero
    back.view.setUint32(off, 1, true);
    back.view.setInt16(off + 10, 0, true);
    expect(bytes[9]).toBe(0);
    expect([...bytes.subarray(12, 16)]).toEqual([0, 0, 0, 0]);
  });

  it('zeroes only a netif tx response (4 bytes of a 12-byte slot)', () => {
    const buf = new ArrayBuffer(XEN_PAGE_SIZE);
    const front = FrontRing.init(buf, NETIF_TX_RING);
    const back = BackRing.attach(buf, NETIF_TX_RING);
    netifTxRequest.write(front.view, front.produceRequest(), 9, 0, 0, 3, 60);
    front.pushRequests();
    expect(back.unconsumedRequests()).toBe(1);
    const req = netifTxRequest.read(back.consumeRequest(), 0, newNetifTxRequest());
    expect(req).toEqual({ gref: 9, offset: 0, flags: 0, id: 3, size: 60 });
    const off = back.produceResponse();
    expect(new DataView(buf).getUint32(SRING_HEADER_SIZE, true)).toBe(0);
    expect(new DataView(buf).getUint16(SRING_HEADER_SIZE + 10, true)).toBe(60);
    netifTxResponse.write(back.view, off, req.id, 0);
    back.pushResponses();
    expect(front.unconsumedResponses()).toBe(1);
    expect(front.consumeResponse().getUint16(0, true)).toBe(3);
  });
});

describe('copy-once through a layout decoder', () => {
  it('decodes each request field once into a private object, then advances', () => {
    const { front, back } = pair();
    pushN(front, 3, 10);
    expect(back.unconsumedRequests()).toBe(3);
    const req = newBlkifRequest();
    const off = back.slotOffset(back.reqCons);
    expect(back.consumeRequestInto(blkifRequest.read, req)).toBe(req);
    front.view.setUint32(off + 8, 999, true); // rewritten after the decode: not seen
    expect(req.idLo).toBe(10);
    expect(back.reqCons).toBe(1);
    expect(back.consumeRequestInto(blkifRequest.read, req).idLo).toBe(11);
    writeBlkifResponse(back.view, back.produceResponse(), 10, 0, BLKIF_OP_READ, 0);
    back.pushResponses();
    const rsp = newBlkifResponse();
    expect(front.unconsumedResponses()).toBe(1);
    expect(front.consumeResponseInto(blkifResponse.read, rsp).idLo).toBe(10);
    expect(front.rspCons).toBe(1);
  });

  it('copies and zeroes byte by byte for a layout that is not word sized', () => {
    const layout = { name: 'odd', entrySize: 6, requestSize: 5, responseSize: 3 };
    const buf = new ArrayBuffer(XEN_PAGE_SIZE);
    const front = FrontRing.init(buf, layout);
    const back = BackRing.attach(buf, layout);
    expect(front.size).toBe(512);
    const off = front.produceRequest();
    new Uint8Array(buf, off, 6).set([1, 2, 3, 4, 5, 6]);
    front.pushRequests();
    expect(back.unconsumedRequests()).toBe(1);
    const priv = back.consumeRequest();
    expect([...new Uint8Array(priv.buffer, 0, 5)]).toEqual([1, 2, 3, 4, 5]);
    expect(back.produceResponse()).toBe(off);
    expect([...new Uint8Array(buf, off, 6)]).toEqual([0, 0, 0, 4, 5, 6]);
    new Uint8Array(buf, off, 3).set([9, 8, 7]);
    back.pushResponses();
    expect(front.unconsumedResponses()).toBe(1);
    expect([...new Uint8Array(front.consumeResponse().buffer, 0, 3)]).toEqual([9, 8, 7]);
  });
});

describe('hostile producer indices', () => {
  it('halts on RING_REQUEST_PROD_OVERFLOW and stays halted', () => {
    const { buf, back } = pair();
    const dv = new DataView(buf);
    dv.setUint32(SRING_REQ_PROD, 32, true);
    expect(back.unconsumedRequests()).toBe(32); // exactly a ring's worth is legal
    dv.setUint32(SRING_REQ_PROD, 33, true);
    expect(back.requestProdOverflow(33)).toBe(true);
    let err: unknown;
    try {
      back.unconsumedRequests();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(RingFaultError);
    expect((err as RingFaultError).code).toBe('req-prod-overflow');
    expect((err as RingFaultError).message).toMatch(/bogus ring requests/);
    dv.setUint32(SRING_REQ_PROD, 1, true); // too late: the ring stays dead
    expect(() => back.unconsumedRequests()).toThrow(RingFaultError);
    expect(() => back.finalCheckForRequests()).toThrow(RingFaultError);
  });

  it('detects garbage req_prod across the wrap', () => {
    const { buf, back } = pair(1, 0xfffffff8);
    new DataView(buf).setUint32(SRING_REQ_PROD, 0xfffffff8 + 33 - 2 ** 32, true);
    expect(() => back.unconsumedRequests()).toThrow(RingFaultError);
  });

  it('clamps unconsumed requests when req_prod moves backwards, then faults', () => {
    const { buf, front, back } = pair();
    pushN(front, 32, 0);
    let n = back.unconsumedRequests();
    expect(n).toBe(32);
    while (n-- > 0) back.consumeRequest();
    expect(back.requestConsOverflow()).toBe(true); // every slot awaits its response
    const dv = new DataView(buf);
    dv.setUint32(SRING_REQ_PROD, 16, true); // req_prod - req_cons is now ~2^32
    expect(back.unconsumedRequests()).toBe(0); // min() with the 0 free response slots
    for (let i = 0; i < 8; i++) back.produceResponse();
    expect(back.unconsumedRequests()).toBe(8); // bounded by the 8 slots the backend freed
    for (let i = 0; i < 8; i++) back.consumeRequest();
    for (let i = 0; i < 16; i++) back.produceResponse();
    // rsp_prod_pvt (24) passed req_prod (16): that is an overflow in u32 terms
    expect(() => back.unconsumedRequests()).toThrow(RingFaultError);
  });

  it('halts a frontend when the backend publishes more responses than requests', () => {
    const { buf, front, back } = pair();
    pushN(front, 2, 0);
    serve(back);
    new DataView(buf).setUint32(SRING_RSP_PROD, 3, true);
    expect(front.responseProdOverflow(3)).toBe(false); // ring.h's bound is the ring size...
    let err: unknown;
    try {
      front.unconsumedResponses(); // ...ours is the requests actually outstanding
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(RingFaultError);
    expect((err as RingFaultError).code).toBe('rsp-prod-overflow');
    expect(front.responseProdOverflow(40)).toBe(true);
  });
});

describe('notification decisions', () => {
  it('implements CHECK_NOTIFY in u32 arithmetic', () => {
    expect(needsNotify(5, 0, 1)).toBe(true);
    expect(needsNotify(5, 3, 3)).toBe(false); // event already passed before this push
    expect(needsNotify(5, 3, 4)).toBe(true);
    expect(needsNotify(5, 3, 5)).toBe(true);
    expect(needsNotify(5, 3, 6)).toBe(false); // event not reached yet
    expect(needsNotify(5, 5, 6)).toBe(false); // nothing new
    expect(needsNotify(2, 0xfffffffe, 0xffffffff)).toBe(true);
    expect(needsNotify(2, 0xfffffffe, 0)).toBe(true);
    expect(needsNotify(2, 0xfffffffe, 2)).toBe(true);
    expect(needsNotify(2, 0xfffffffe, 3)).toBe(false);
    expect(needsNotify(2, 0xfffffffe, 0xfffffffe)).toBe(false);
  });

  it('notifies a sleeping backend once, then suppresses until it sleeps again', () => {
    const { front, back } = pair();
    expect(pushN(front, 1, 0)).toBe(true); // req_event starts at 1
    expect(pushN(front, 1, 1)).toBe(false); // backend has not asked again
    expect(serve(back)).toEqual([0, 1]);
    expect(back.finalCheckForRequests()).toBe(false); // sleeps: req_event = 3
    expect(pushN(front, 1, 2)).toBe(true);
    expect(pushN(front, 4, 3)).toBe(false);
    // a backend that keeps polling never re-arms: a burst costs no notification
    serve(back);
    expect(pushN(front, 3, 7)).toBe(false);
  });

  it('batches: one notification for a whole push', () => {
    const { front, back } = pair();
    back.finalCheckForRequests();
    expect(pushN(front, 32, 0)).toBe(true);
    expect(back.unconsumedRequests()).toBe(32);
  });

  it('closes the final-check race: a push between the check and the re-arm is found', () => {
    const { front, back } = pair();
    pushN(front, 1, 0);
    serve(back); // req_event is still 1: stale
    expect(back.unconsumedRequests()).toBe(0); // backend looks: nothing
    expect(pushN(front, 1, 1)).toBe(false); // frontend pushes: event stale, so no notification
    expect(back.finalCheckForRequests()).toBe(true); // the re-check after re-arming catches it
    expect(serve(back)).toEqual([1]);
  });

  it('notifies the frontend for responses per rsp_event', () => {
    const { front, back } = pair();
    pushN(front, 4, 0);
    expect(drain(front)).toEqual([]);
    expect(front.finalCheckForResponses()).toBe(false); // rsp_event = rsp_cons + 1 = 1
    const req = newBlkifRequest();
    let n = back.unconsumedRequests();
    let notifies = 0;
    while (n-- > 0) {
      blkifRequest.read(back.consumeRequest(), 0, req);
      writeBlkifResponse(back.view, back.produceResponse(), req.idLo, req.idHi, req.operation, 0);
      if (back.pushResponsesAndCheckNotify()) notifies++;
    }
    expect(notifies).toBe(1); // only the first response crossed rsp_event
    expect(drain(front)).toEqual([0, 1, 2, 3]);
    // the frontend re-arms; a response published before that is found by the final check
    pushN(front, 1, 4);
    serve(back);
    expect(front.finalCheckForResponses()).toBe(true);
    expect(drain(front)).toEqual([4]);
    expect(front.finalCheckForResponses()).toBe(false);
    pushN(front, 1, 5);
    expect(serve(back)).toEqual([5]);
  });

  it('publishes indices to the header only on push', () => {
    const { buf, front } = pair();
    front.produceRequest();
    front.produceRequest();
    expect(sharedRingIndices(buf).reqProd).toBe(0);
    front.pushRequests();
    expect(sharedRingIndices(buf).reqProd).toBe(2);
    expect(front.reqProd).toBe(2);
    expect(new DataView(buf).getUint32(SRING_RSP_EVENT, true)).toBe(1);
  });
});

describe('rings in shared memory', () => {
  it('runs an order-2 ring over frames mapped twice, as two domains would', () => {
    const fds = [0, 1, 2, 3].map(() => native.memfdCreate('ring', XEN_PAGE_SIZE));
    const a = native.mmapFrames(fds, true);
    const b = native.mmapFrames(fds, true);
    const front = FrontRing.init(a, BLKIF_RING);
    const back = BackRing.attach(b, BLKIF_RING);
    expect(front.size).toBe(128);
    expect(back.size).toBe(128);
    let sent = 0;
    const got: number[] = [];
    while (got.length < 10_000) {
      const n = Math.min(front.freeRequests(), 10_000 - sent, 1 + (sent % 97));
      pushN(front, n, sent);
      sent += n;
      serve(back);
      got.push(...drain(front));
    }
    expect(got.every((v, i) => v === i)).toBe(true);
    native.munmap(a);
    native.munmap(b);
    fds.forEach((f) => native.close(f));
  });
});

describe('word fast path', () => {
  it('consumeRequestWords / produceResponse16 / consumeResponseWords carry a request and its full response', () => {
    const { front, back } = pair(1, 0xfffffffe); // across the u32 wrap
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < front.size; i++) {
        const idx = front.reqProdPvt;
        const wo = front.produceRequestWord();
        expect(wo * 4).toBe(front.slotOffset(idx));
        writeBlkifRwWords(front.words, wo, BLKIF_OP_READ, 1, 0, idx, 8);
        writeBlkifSegmentWords(front.words, wo, 0, i, 0, 7);
      }
      front.pushRequests();
      const n = back.unconsumedRequests();
      expect(n).toBe(front.size);
      const req = newBlkifRequest();
      for (let i = 0; i < n; i++) {
        const slot = back.slotOffset(back.rspProdPvt);
        back.consumeRequestWords(readBlkifRequestWords, req);
        expect(req.segGref[0]).toBe(i);
        new Uint8Array(back.view.buffer, slot, 16).fill(0xaa);
        back.produceResponse16(req.idLo, req.idHi, blkifResponseWord2(req.operation, BLKIF_RSP_OKAY), 0);
        // every byte of the response written: nothing of the 0xaa left (XSA-216)
        expect([...new Uint8Array(back.view.buffer, slot, 16)].includes(0xaa)).toBe(false);
      }
      back.pushResponses();
      const m = front.unconsumedResponses();
      expect(m).toBe(front.size);
      const rsp = newBlkifResponse();
      for (let i = 0; i < m; i++) {
        const idx = front.rspCons;
        front.consumeResponseWords(readBlkifResponseWords, rsp);
        expect(rsp).toEqual({ idLo: idx, idHi: 0, operation: BLKIF_OP_READ, status: BLKIF_RSP_OKAY });
      }
    }
  });
});
