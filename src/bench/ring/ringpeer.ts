// The TypeScript side of the ring bench: a blkif frontend or backend over memfd-shared srings, the
// same workload as the C peer's bench mode (blkif_peer.c), so the two are compared like for like.
//
// Frontend: keeps every slot busy with 1-segment READ/WRITE requests (id = ring index, gref = slot,
// whose data page is a persistent-grant-like page of the data memfd), pushes per batch, times each
// batch, and at the end waits for all answers and sends OP_STOP. Backend: copies each request out,
// validates it, copies the payload between the data page and its private "medium", answers.
// Nothing on these paths allocates; latency is recorded into a fixed histogram.

import { writeSync } from 'node:fs';
import { native } from '../../native/index.js';
import { SRING_REQ_PROD, SRING_RSP_PROD, XEN_PAGE_SIZE, ringSlots } from '../../abi/sring.js';
import {
  BLKIF_MAX_SEGMENTS_PER_REQUEST,
  BLKIF_OP_READ,
  BLKIF_OP_WRITE,
  BLKIF_RING,
  BLKIF_RSP_ERROR,
  BLKIF_RSP_OKAY,
  BLKIF_WORDS_OK,
  blkifResponseWord2,
  newBlkifRequest,
  newBlkifResponse,
  readBlkifRequestWords,
  readBlkifResponseWords,
  writeBlkifRwWords,
  writeBlkifSegmentWords,
  type BlkifRequest,
} from '../../abi/blkif.js';
import { FrontRing } from '../../ring/front.js';
import { BackRing } from '../../ring/back.js';
import { Histogram, Windows } from './hist.js';
import { OP_STOP, type PeerResult, type RingMode, type RingPeerConfig } from './protocol.js';

interface Queue {
  buf: ArrayBuffer;
  pages: Uint8Array[] | null;
  kick: number;
  irq: number;
  stopped: boolean;
}

interface FrontQueue extends Queue {
  ring: FrontRing;
  words: Int32Array;
  mask: number;
  size: number;
  /** 0 running, 1 draining before the stop, 2 stop sent */
  stopping: number;
  tSent: Float64Array;
}

interface BackQueue extends Queue {
  ring: BackRing;
}

class Stats {
  completed = 0;
  notifies = 0;
  wakeups = 0;
  pushes = 0;
  errors = 0;
  /** 0 warm-up, 1 measuring, 2 finished */
  phase = 0;
  tStart = 0;
  tEnd = 0;
  readonly hist = new Histogram();
  readonly windows = new Windows();
  constructor(
    readonly mode: RingMode,
    readonly batch: number,
    readonly payload: number,
    readonly latency: boolean,
  ) {}
}

/** map a queue's ring frames contiguously, and its data memfd as one persistent page per slot */
function mapQueue(q: RingPeerConfig['queues'][number], payload: number): { buf: ArrayBuffer; pages: Uint8Array[] | null } {
  const buf = native.mmapFrames(q.frames, true);
  let pages: Uint8Array[] | null = null;
  if (payload > 0) {
    if (q.data < 0) throw new Error('payload needs a data memfd');
    const n = ringSlots(buf.byteLength, BLKIF_RING.entrySize);
    const data = native.mmap(q.data, n * XEN_PAGE_SIZE, true);
    pages = [];
    for (let i = 0; i < n; i++) pages.push(new Uint8Array(data, i * XEN_PAGE_SIZE, payload));
  }
  return { buf, pages };
}

function result(role: 'front' | 'back', st: Stats, ringSize: number): PeerResult {
  return {
    role,
    completed: st.completed,
    elapsed_ns: Math.round((st.tEnd - st.tStart) * 1e6),
    notifies: st.notifies,
    wakeups: st.wakeups,
    pushes: st.pushes,
    errors: st.errors,
    ring_size: ringSize,
    hist: st.hist.toPairs(),
    windows: st.windows.toPairs(),
  };
}

function emit(r: PeerResult): void {
  writeSync(1, JSON.stringify(r) + '\n');
}

// ---------------------------------------------------------------- frontend

const privateData = new Uint8Array(XEN_PAGE_SIZE).fill(0xa5);
/**
 * Latency is sampled on one request in 64 (by ring index, as the C peer does): performance.now()
 * costs ~40 ns and allocates in Node 20, more than a whole round trip's ring work.
 */
const LATENCY_SAMPLE_MASK = 63;
const rspScratch = newBlkifResponse();

function frontPush(q: FrontQueue, st: Stats): void {
  st.pushes++;
  if (!q.ring.pushRequestsAndCheckNotify()) return;
  st.notifies++;
  if (st.mode === 'eventfd') native.eventfdSignal(q.kick);
  else if (st.mode === 'futex') native.futexWake(q.buf, SRING_REQ_PROD, 1);
}

function reap(q: FrontQueue, st: Stats): boolean {
  const ring = q.ring;
  const n = ring.unconsumedResponses();
  if (n === 0) return false;
  const measuring = st.phase === 1;
  const sampling = st.latency && measuring;
  const pages = q.pages;
  const mask = q.mask;
  let t = 0;
  let errors = 0;
  let done = 0;
  const rsp = rspScratch;
  for (let i = 0; i < n; i++) {
    ring.consumeResponseWords(readBlkifResponseWords, rsp);
    const op = rsp.operation;
    if (op === OP_STOP) {
      q.stopped = true;
      continue;
    }
    if (rsp.status !== BLKIF_RSP_OKAY) errors++;
    const slot = rsp.idLo & mask;
    if (pages !== null && op === BLKIF_OP_READ) privateData.set(pages[slot]);
    if (sampling && (rsp.idLo & LATENCY_SAMPLE_MASK) === 0) {
      if (t === 0) t = performance.now();
      st.hist.add((t - q.tSent[slot]) * 1e6);
    }
    done++;
  }
  st.errors += errors;
  if (measuring) st.completed += done;
  return true;
}

function issue(q: FrontQueue, st: Stats): boolean {
  const ring = q.ring;
  const w = q.words;
  const mask = q.mask;
  const pages = q.pages;
  const latency = st.latency;
  let did = false;
  for (;;) {
    const free = ring.freeRequests();
    if (free === 0 || q.stopped || q.stopping === 2) return did;
    if (q.stopping === 1) {
      if (free !== q.size) return did; // every answer first, then the stop
      writeBlkifRwWords(w, ring.produceRequestWord(), OP_STOP, 0, 0, 0, 0);
      frontPush(q, st);
      q.stopping = 2;
      return true;
    }
    const n = free < st.batch ? free : st.batch;
    let t = 0;
    for (let k = 0; k < n; k++) {
      const idx = ring.reqProdPvt;
      const wo = ring.produceRequestWord();
      const slot = idx & mask;
      const op = idx & 1 ? BLKIF_OP_WRITE : BLKIF_OP_READ;
      writeBlkifRwWords(w, wo, op, 1, 0, idx, (idx & 0xfffff) * 8);
      writeBlkifSegmentWords(w, wo, 0, slot, 0, 7);
      if (pages !== null && op === BLKIF_OP_WRITE) pages[slot].set(privateData);
      if ((idx & LATENCY_SAMPLE_MASK) === 0 && latency) {
        if (t === 0) t = performance.now();
        q.tSent[slot] = t;
      }
    }
    frontPush(q, st);
    did = true;
  }
}

/** one pass over all queues; true if anything moved */
function frontPass(qs: FrontQueue[], st: Stats): boolean {
  let did = false;
  for (let i = 0; i < qs.length; i++) {
    const q = qs[i];
    if (reap(q, st)) did = true;
    if (issue(q, st)) did = true;
  }
  return did;
}

function allStopped(qs: Queue[]): boolean {
  for (let i = 0; i < qs.length; i++) if (!qs[i].stopped) return false;
  return true;
}

/** warm-up -> measuring -> draining, by the clock */
function clockFront(qs: FrontQueue[], st: Stats, tMeasure: number, tEnd: number): void {
  if (st.phase === 2) return;
  const t = performance.now();
  if (st.phase === 0 && t >= tMeasure) {
    st.phase = 1;
    st.completed = st.notifies = st.wakeups = st.pushes = 0;
    st.hist.reset();
    st.tStart = t;
    st.windows.start(t, 0);
  } else if (st.phase === 1 && t >= tEnd) {
    st.windows.close(t, st.completed);
    st.phase = 2;
    st.tEnd = t;
    for (const q of qs) q.stopping = 1;
  } else if (st.phase === 1) {
    st.windows.tick(t, st.completed);
  }
}

function runFrontSync(qs: FrontQueue[], st: Stats, cfg: RingPeerConfig): void {
  const t0 = performance.now();
  const tMeasure = t0 + cfg.warmupMs;
  const tEnd = tMeasure + cfg.durationMs;
  st.tStart = t0;
  st.phase = cfg.warmupMs > 0 ? 0 : 1;
  st.windows.start(t0, 0);
  let idle = 0;
  let tick = 0;
  for (;;) {
    const did = frontPass(qs, st);
    if (allStopped(qs)) return;
    if ((++tick & 63) === 0) clockFront(qs, st, tMeasure, tEnd);
    if (did) {
      idle = 0;
      continue;
    }
    if (st.mode === 'poll' || ++idle < cfg.spin) continue;
    idle = 0;
    let more = false;
    for (const q of qs) if (q.ring.finalCheckForResponses()) more = true;
    if (more) continue;
    st.wakeups++;
    native.futexWait(qs[0].buf, SRING_RSP_PROD, qs[0].ring.rspCons);
  }
}

function runFrontEvented(qs: FrontQueue[], st: Stats, cfg: RingPeerConfig): Promise<void> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const tMeasure = t0 + cfg.warmupMs;
    const tEnd = tMeasure + cfg.durationMs;
    st.tStart = t0;
    st.phase = cfg.warmupMs > 0 ? 0 : 1;
    st.windows.start(t0, 0);
    let finished = false;
    const watchers = qs.map((q) => {
      const w = new native.Watcher(q.irq, 'eventfd', () => {
        st.wakeups++;
        pump();
      });
      w.ref();
      return w;
    });
    const timers = [setTimeout(() => pump(), cfg.warmupMs + 1), setTimeout(() => pump(), cfg.warmupMs + cfg.durationMs + 1)];
    function pump(): void {
      let tick = 0;
      while (!finished) {
        const did = frontPass(qs, st);
        if (allStopped(qs)) {
          finished = true;
          for (const w of watchers) w.close();
          for (const t of timers) clearTimeout(t);
          resolve();
          return;
        }
        if ((++tick & 63) === 0 || !did) clockFront(qs, st, tMeasure, tEnd);
        if (did) continue;
        let more = false;
        for (const q of qs) if (q.ring.finalCheckForResponses()) more = true;
        if (!more) return; // back to the event loop until an eventfd fires
      }
    }
    pump();
  });
}

// ---------------------------------------------------------------- backend

const medium = new Uint8Array(XEN_PAGE_SIZE).fill(0x5a);
const reqScratch: BlkifRequest = newBlkifRequest();

function backPush(q: BackQueue, st: Stats): void {
  st.pushes++;
  if (!q.ring.pushResponsesAndCheckNotify()) return;
  st.notifies++;
  if (st.mode === 'eventfd') native.eventfdSignal(q.kick);
  else if (st.mode === 'futex') native.futexWake(q.buf, SRING_RSP_PROD, 1);
}

function serve(q: BackQueue, st: Stats): boolean {
  const ring = q.ring;
  const n = ring.unconsumedRequests();
  if (n === 0) return false;
  const req = reqScratch;
  const gref = req.segGref;
  const firstSect = req.segFirstSect;
  const lastSect = req.segLastSect;
  const size = ring.size;
  const pages = q.pages;
  const batch = st.batch;
  let inBatch = 0;
  let errors = 0;
  for (let i = 0; i < n; i++) {
    // the request is copied out of the slot (each word once) and only the copy is looked at
    ring.consumeRequestWords(readBlkifRequestWords, req);
    let status = BLKIF_RSP_OKAY;
    const op = req.operation;
    if (op === OP_STOP) {
      q.stopped = true;
    } else {
      const nseg = req.nrSegments;
      let ok = (op === BLKIF_OP_READ || op === BLKIF_OP_WRITE) && nseg >= 1 && nseg <= BLKIF_MAX_SEGMENTS_PER_REQUEST;
      for (let s = 0; ok && s < nseg; s++) {
        const last = lastSect[s];
        ok = last < 8 && last >= firstSect[s] && gref[s] < size;
      }
      if (!ok) {
        status = BLKIF_RSP_ERROR;
        errors++;
      } else if (pages !== null) {
        const page = pages[gref[0]];
        if (op === BLKIF_OP_WRITE) medium.set(page);
        else page.set(medium);
      }
    }
    // all 16 bytes of the response, padding included (XSA-216)
    ring.produceResponse16(req.idLo, req.idHi, blkifResponseWord2(op, status), 0);
    if (++inBatch === batch) {
      backPush(q, st);
      inBatch = 0;
    }
  }
  st.completed += n;
  st.errors += errors;
  if (inBatch > 0) backPush(q, st);
  return true;
}

function backPass(qs: BackQueue[], st: Stats): boolean {
  let did = false;
  for (let i = 0; i < qs.length; i++) if (serve(qs[i], st)) did = true;
  return did;
}

function runBackSync(qs: BackQueue[], st: Stats, cfg: RingPeerConfig): void {
  let idle = 0;
  for (;;) {
    const did = backPass(qs, st);
    if (allStopped(qs)) return;
    if (did) {
      idle = 0;
      continue;
    }
    if (st.mode === 'poll' || ++idle < cfg.spin) continue;
    idle = 0;
    let more = false;
    for (const q of qs) if (q.ring.finalCheckForRequests()) more = true;
    if (more) continue;
    st.wakeups++;
    native.futexWait(qs[0].buf, SRING_REQ_PROD, qs[0].ring.reqCons);
  }
}

function runBackEvented(qs: BackQueue[], st: Stats): Promise<void> {
  return new Promise((resolve) => {
    let finished = false;
    const watchers = qs.map((q) => {
      const w = new native.Watcher(q.irq, 'eventfd', () => {
        st.wakeups++;
        pump();
      });
      w.ref();
      return w;
    });
    function pump(): void {
      while (!finished) {
        const did = backPass(qs, st);
        if (allStopped(qs)) {
          finished = true;
          for (const w of watchers) w.close();
          resolve();
          return;
        }
        if (did) continue;
        let more = false;
        for (const q of qs) if (q.ring.finalCheckForRequests()) more = true;
        if (!more) return;
      }
    }
    pump();
  });
}

// ---------------------------------------------------------------- entry

function waitForGo(): Promise<void> {
  return new Promise((resolve) => {
    process.stdin.once('data', () => {
      process.stdin.pause();
      resolve();
    });
  });
}

export async function runRingPeer(cfg: RingPeerConfig): Promise<void> {
  if (!BLKIF_WORDS_OK) throw new Error('the ring bench peer needs a little-endian host');
  const batch = cfg.batch > 0 ? cfg.batch : 1 << 30;
  const st = new Stats(cfg.mode, batch, cfg.payload, cfg.latency);
  if (cfg.role === 'front') {
    const qs: FrontQueue[] = cfg.queues.map((fds) => {
      const { buf, pages } = mapQueue(fds, cfg.payload);
      const ring = FrontRing.init(buf, BLKIF_RING);
      return {
        buf,
        pages,
        kick: fds.kick,
        irq: fds.irq,
        stopped: false,
        ring,
        words: ring.words,
        mask: ring.mask,
        size: ring.size,
        stopping: 0,
        tSent: new Float64Array(ring.size),
      };
    });
    writeSync(1, 'ready\n');
    await waitForGo();
    if (cfg.mode === 'eventfd') await runFrontEvented(qs, st, cfg);
    else runFrontSync(qs, st, cfg);
    emit(result('front', st, qs[0].size));
  } else {
    const qs: BackQueue[] = cfg.queues.map((fds) => {
      const { buf, pages } = mapQueue(fds, cfg.payload);
      return { buf, pages, kick: fds.kick, irq: fds.irq, stopped: false, ring: BackRing.attach(buf, BLKIF_RING) };
    });
    writeSync(1, 'ready\n');
    if (cfg.mode === 'eventfd') await runBackEvented(qs, st);
    else runBackSync(qs, st, cfg);
    emit(result('back', st, qs[0].ring.size));
  }
}
