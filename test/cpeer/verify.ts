// The TypeScript half of the interop workload of blkif_peer.c (--workload verify): every field of
// request number `seq` on queue `q` is derived from mix(q, seq), so each side can check each field
// the other produced. Keep in step with verify_fill / verify_check / expected_status in the C.

import { native } from '../../src/native/index.js';
import {
  BLKIF_DISCARD_SECURE,
  BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST,
  BLKIF_MAX_SEGMENTS_PER_REQUEST,
  BLKIF_OP_DISCARD,
  BLKIF_OP_FLUSH_DISKCACHE,
  BLKIF_OP_INDIRECT,
  BLKIF_OP_READ,
  BLKIF_OP_WRITE,
  BLKIF_RSP_EOPNOTSUPP,
  BLKIF_RSP_ERROR,
  BLKIF_RSP_OKAY,
  blkifRequest,
  blkifResponse,
  newBlkifRequest,
  newBlkifResponse,
  writeBlkifResponse,
  writeBlkifRw,
  type BlkifRequest,
} from '../../src/abi/blkif.js';
import type { FrontRing } from '../../src/ring/front.js';
import type { BackRing } from '../../src/ring/back.js';

export const OP_STOP = 0xff;
export const STATUS_MISMATCH = -99;

export function mix(q: number, seq: number): number {
  let x = (Math.imul(seq, 2654435761) ^ Math.imul(q + 1, 0x5bd1e995)) >>> 0;
  x = (x ^ (x >>> 13)) >>> 0;
  x = Math.imul(x, 0x5bd1e995) >>> 0;
  return (x ^ (x >>> 15)) >>> 0;
}

const OPS = [BLKIF_OP_READ, BLKIF_OP_READ, BLKIF_OP_READ, BLKIF_OP_WRITE, BLKIF_OP_WRITE, BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_DISCARD, BLKIF_OP_INDIRECT];

export function verifyOp(h: number): number {
  return OPS[h & 7];
}

export function expectedStatus(h: number): number {
  return h % 5 === 0 ? BLKIF_RSP_ERROR : h % 5 === 1 ? BLKIF_RSP_EOPNOTSUPP : BLKIF_RSP_OKAY;
}

/** the request number `seq` of queue `q`, as the C frontend builds it */
export function verifyRequest(q: number, seq: number, into: BlkifRequest): BlkifRequest {
  const h = mix(q, seq);
  const op = verifyOp(h);
  into.operation = op;
  into.idLo = seq >>> 0;
  into.idHi = (h ^ 0xa5a5a5a5) >>> 0;
  into.sectorNumber = ((h >>> 24) & 0xffff) * 2 ** 32 + (Math.imul(h, 7) >>> 0);
  into.handle = (h >>> 8) & 0xffff;
  if (op === BLKIF_OP_DISCARD) {
    into.discardFlag = h & 1 ? BLKIF_DISCARD_SECURE : 0;
    into.nrSectors = (h >>> 5) + 1;
    into.nrSegments = 0;
  } else if (op === BLKIF_OP_INDIRECT) {
    into.indirectOp = h & 1 ? BLKIF_OP_WRITE : BLKIF_OP_READ;
    into.nrSegments = 1 + (h % 4096);
    for (let i = 0; i < BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST; i++) into.indirectGrefs[i] = (h ^ Math.imul(i, 0x1000193)) >>> 0;
  } else {
    const n = op === BLKIF_OP_FLUSH_DISKCACHE ? 0 : 1 + ((h >>> 4) % BLKIF_MAX_SEGMENTS_PER_REQUEST);
    into.nrSegments = n;
    for (let i = 0; i < n; i++) {
      const first = (h + i) & 7;
      into.segGref[i] = (h + i * 977) >>> 0;
      into.segFirstSect[i] = first;
      into.segLastSect[i] = first + (((h >>> 3) + i) % (8 - first));
    }
  }
  return into;
}

const expected = newBlkifRequest();

/** does a request the backend decoded carry exactly what the frontend must have sent? */
export function verifyCheck(q: number, got: BlkifRequest): boolean {
  const want = verifyRequest(q, got.idLo, expected);
  if (got.operation !== want.operation || got.idHi !== want.idHi || got.sectorNumber !== want.sectorNumber || got.handle !== want.handle) return false;
  if (want.operation === BLKIF_OP_DISCARD) return got.discardFlag === want.discardFlag && got.nrSectors === want.nrSectors;
  if (want.operation === BLKIF_OP_INDIRECT) {
    if (got.indirectOp !== want.indirectOp || got.nrSegments !== want.nrSegments) return false;
    for (let i = 0; i < BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST; i++) if (got.indirectGrefs[i] !== want.indirectGrefs[i]) return false;
    return true;
  }
  if (got.nrSegments !== want.nrSegments) return false;
  for (let i = 0; i < want.nrSegments; i++) {
    if (got.segGref[i] !== want.segGref[i] || got.segFirstSect[i] !== want.segFirstSect[i] || got.segLastSect[i] !== want.segLastSect[i]) return false;
  }
  return true;
}

export interface VerifyStats {
  completed: number;
  errors: number;
  notifies: number;
  wakeups: number;
  /** request slots decoded by byte copy (consumeRequest) and by field decoder (consumeRequestInto) */
  byCopy: number;
  byDecoder: number;
}

function stats(): VerifyStats {
  return { completed: 0, errors: 0, notifies: 0, wakeups: 0, byCopy: 0, byDecoder: 0 };
}

export interface Notify {
  /** eventfd to signal the peer, -1 in busy-poll mode */
  kick: number;
  /** eventfd to sleep on, -1 in busy-poll mode */
  irq: number;
}

/**
 * Backend: answer requests until the stop, checking every field; status per expectedStatus, or
 * STATUS_MISMATCH for a request that arrived altered. Alternates the two copy-once paths.
 */
function serveOnce(back: BackRing, st: VerifyStats, n: Notify, q: number): boolean {
  const req = newBlkifRequest();
  let stopped = false;
  let avail = back.unconsumedRequests();
  while (avail-- > 0) {
    if (back.reqCons & 1) {
      back.consumeRequestInto(blkifRequest.read, req);
      st.byDecoder++;
    } else {
      blkifRequest.read(back.consumeRequest(), 0, req);
      st.byCopy++;
    }
    let status: number = BLKIF_RSP_OKAY;
    if (req.operation === OP_STOP) {
      stopped = true;
    } else if (verifyCheck(q, req)) {
      status = expectedStatus(mix(q, req.idLo));
      st.completed++;
    } else {
      status = STATUS_MISMATCH;
      st.errors++;
    }
    writeBlkifResponse(back.view, back.produceResponse(), req.idLo, req.idHi, req.operation, status);
    if ((back.rspProdPvt & 7) === 0) push(back, st, n);
  }
  push(back, st, n);
  return stopped;
}

function push(back: BackRing, st: VerifyStats, n: Notify): void {
  if (back.pushResponsesAndCheckNotify()) {
    st.notifies++;
    if (n.kick >= 0) native.eventfdSignal(n.kick);
  }
}

export function serveVerifyPoll(back: BackRing, q: number, deadlineMs: number): VerifyStats {
  const st = stats();
  const end = Date.now() + deadlineMs;
  let spins = 0;
  for (;;) {
    if (serveOnce(back, st, { kick: -1, irq: -1 }, q)) return st;
    if ((++spins & 0xffff) === 0 && Date.now() > end) throw new Error(`backend timed out after ${st.completed} requests`);
  }
}

/**
 * `onAsleep` runs once, the first time the backend has done its final check and goes to sleep on
 * `irq`: a test that starts its frontend from there knows the first request finds it asleep.
 */
export function serveVerifyEvented(back: BackRing, q: number, n: Notify, deadlineMs: number, onAsleep?: () => void): Promise<VerifyStats> {
  const st = stats();
  return untilDone(n.irq, deadlineMs, () => `backend timed out after ${st.completed} requests`, () => st.wakeups++, onAsleep, () => {
    for (;;) {
      if (serveOnce(back, st, n, q)) return st;
      if (!back.finalCheckForRequests()) return undefined;
    }
  });
}

/**
 * Runs `step` now and on every event on `irq`, until it returns a result (undefined: wait for the
 * next event) or throws, or `deadlineMs` passes.
 */
function untilDone<T>(irq: number, deadlineMs: number, timedOut: () => string, onWakeup: () => void, onAsleep: (() => void) | undefined, step: () => T | undefined): Promise<T> {
  return new Promise((resolve, reject) => {
    const end = (settle: () => void): void => {
      clearTimeout(timer);
      w.close();
      settle();
    };
    const pump = (): void => {
      try {
        const r = step();
        if (r !== undefined) end(() => resolve(r));
        else if (onAsleep) {
          const f = onAsleep;
          onAsleep = undefined;
          f();
        }
      } catch (e) {
        end(() => reject(e instanceof Error ? e : new Error(String(e))));
      }
    };
    const timer = setTimeout(() => end(() => reject(new Error(timedOut()))), deadlineMs);
    const w = new native.Watcher(irq, 'eventfd', () => {
      onWakeup();
      pump();
    });
    w.ref();
    pump();
  });
}

/** Frontend: `count` requests through the ring with batch sizes cycling 1..13, then the stop. */
class FrontVerifier {
  readonly st = stats();
  private sent = 0;
  private done = 0;
  private stopSent = false;
  stopped = false;
  private readonly answered: Uint8Array;
  private readonly req = newBlkifRequest();
  private readonly rsp = newBlkifResponse();
  private batch = 1;

  constructor(
    readonly front: FrontRing,
    readonly q: number,
    readonly count: number,
    readonly n: Notify,
  ) {
    this.answered = new Uint8Array(count);
  }

  reap(): boolean {
    const front = this.front;
    let avail = front.unconsumedResponses();
    const did = avail > 0;
    while (avail-- > 0) {
      const r = front.consumeResponseInto(blkifResponse.read, this.rsp);
      if (r.operation === OP_STOP) {
        this.stopped = true;
        continue;
      }
      const seq = r.idLo;
      const h = mix(this.q, seq);
      if (seq >= this.count || this.answered[seq] || r.idHi !== (h ^ 0xa5a5a5a5) >>> 0 || r.operation !== verifyOp(h) || r.status !== expectedStatus(h)) {
        this.st.errors++;
      } else {
        this.answered[seq] = 1;
        this.st.completed++;
      }
      this.done++;
    }
    return did;
  }

  issue(): boolean {
    const front = this.front;
    let did = false;
    while (front.freeRequests() > 0 && !this.stopSent) {
      if (this.sent === this.count) {
        if (this.done < this.count) return did;
        writeBlkifRw(front.view, front.produceRequest(), OP_STOP, 0, 0, 0, 0);
        this.stopSent = true;
      } else {
        const k = Math.min(this.batch, front.freeRequests(), this.count - this.sent);
        for (let i = 0; i < k; i++) blkifRequest.write(front.view, front.produceRequest(), verifyRequest(this.q, this.sent++, this.req));
        this.batch = (this.batch % 13) + 1;
      }
      if (front.pushRequestsAndCheckNotify()) {
        this.st.notifies++;
        if (this.n.kick >= 0) native.eventfdSignal(this.n.kick);
      }
      did = true;
    }
    return did;
  }

  finish(): VerifyStats {
    for (let s = 0; s < this.count; s++) if (!this.answered[s]) this.st.errors++;
    return this.st;
  }
}

export function runFrontVerifyPoll(front: FrontRing, q: number, count: number, deadlineMs: number): VerifyStats {
  const v = new FrontVerifier(front, q, count, { kick: -1, irq: -1 });
  const end = Date.now() + deadlineMs;
  let spins = 0;
  while (!v.stopped) {
    v.reap();
    v.issue();
    if ((++spins & 0xffff) === 0 && Date.now() > end) throw new Error(`frontend timed out with ${v.st.completed} answered`);
  }
  return v.finish();
}

export function runFrontVerifyEvented(front: FrontRing, q: number, count: number, n: Notify, deadlineMs: number): Promise<VerifyStats> {
  const v = new FrontVerifier(front, q, count, n);
  return untilDone(n.irq, deadlineMs, () => `frontend timed out with ${v.st.completed} answered`, () => v.st.wakeups++, undefined, () => {
    for (;;) {
      const did = v.reap() || v.issue();
      if (v.stopped) return v.finish();
      if (!did && !front.finalCheckForResponses()) return undefined;
    }
  });
}
