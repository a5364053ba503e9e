// What a Node developer would use instead of a shared ring, moving the same blkif requests and
// responses (same bytes where the transport takes bytes) with the same number in flight:
//   postmessage  worker_threads, one postMessage(Uint8Array) per request and per response
//   unix         a Unix domain socket, u32 length-prefixed frames, corked per batch of frames
//   process-send child_process IPC, one JSON message per request and per response
// These paths allocate per message: that is part of what is being measured.

import { fork } from 'node:child_process';
import { writeSync } from 'node:fs';
import { createConnection, createServer, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { Worker, parentPort, workerData } from 'node:worker_threads';
import {
  BLKIF_OP_READ,
  BLKIF_OP_WRITE,
  BLKIF_REQUEST_SIZE,
  BLKIF_RESPONSE_SIZE,
  BLKIF_RSP_ERROR,
  BLKIF_RSP_OKAY,
  BLKIF_RSP_OPERATION,
  BLKIF_RSP_STATUS,
  BLKIF_RSP_ID,
  blkifRequest,
  newBlkifRequest,
  writeBlkifResponse,
  writeBlkifRw,
  writeBlkifSegment,
} from '../../abi/blkif.js';
import { Histogram, WINDOW_MS, Windows } from './hist.js';
import { OP_STOP, type BaselinePeerConfig, type PeerResult } from './protocol.js';

const PAYLOAD_BYTE = 0xa5;

function encodeRequest(seq: number, window: number, payload: number): Uint8Array {
  const op = seq & 1 ? BLKIF_OP_WRITE : BLKIF_OP_READ;
  const extra = payload > 0 && op === BLKIF_OP_WRITE ? payload : 0;
  const u8 = new Uint8Array(BLKIF_REQUEST_SIZE + extra);
  const dv = new DataView(u8.buffer);
  writeBlkifRw(dv, 0, op, 1, 0, seq, (seq & 0xfffff) * 8);
  writeBlkifSegment(dv, 0, 0, seq % window, 0, 7);
  if (extra) u8.fill(PAYLOAD_BYTE, BLKIF_REQUEST_SIZE);
  return u8;
}

const medium = new Uint8Array(4096).fill(0x5a);
const req = newBlkifRequest();

/** the backend's work for one request: decode, validate, answer (with data for a READ) */
function answer(u8: Uint8Array, payload: number): Uint8Array {
  const dv = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  blkifRequest.read(dv, 0, req);
  const op = req.operation;
  let ok = (op === BLKIF_OP_READ || op === BLKIF_OP_WRITE) && req.nrSegments === 1;
  ok = ok && req.segLastSect[0] < 8 && req.segLastSect[0] >= req.segFirstSect[0];
  if (ok && payload > 0 && op === BLKIF_OP_WRITE) medium.set(u8.subarray(BLKIF_REQUEST_SIZE, BLKIF_REQUEST_SIZE + payload));
  const extra = ok && payload > 0 && op === BLKIF_OP_READ ? payload : 0;
  const out = new Uint8Array(BLKIF_RESPONSE_SIZE + extra);
  writeBlkifResponse(new DataView(out.buffer), 0, req.idLo, req.idHi, op, op === OP_STOP ? BLKIF_RSP_OKAY : ok ? BLKIF_RSP_OKAY : BLKIF_RSP_ERROR);
  if (extra) out.set(medium.subarray(0, payload), BLKIF_RESPONSE_SIZE);
  return out;
}

const privateData = new Uint8Array(4096);

/**
 * The frontend's closed loop, transport-agnostic: `send` one request; `received` for each response;
 * keeps `window` in flight until the measuring time is over, then drains and reports.
 */
class Front {
  seq = 0;
  outstanding = 0;
  phase = 0;
  completed = 0;
  errors = 0;
  pushes = 0;
  tStart = 0;
  tEnd = 0;
  readonly hist = new Histogram();
  readonly windows = new Windows();
  readonly tSent: Float64Array;
  done: Promise<PeerResult>;
  private finish: (r: PeerResult) => void = () => {};
  private endDue: () => void = () => {};
  /** set when the measured time is over but nothing has completed in it yet */
  private endWhenAnswered: (() => void) | null = null;

  constructor(
    readonly cfg: BaselinePeerConfig,
    /** send request number `seq` */
    readonly send: (seq: number) => void,
  ) {
    this.tSent = new Float64Array(cfg.window);
    this.done = new Promise((resolve) => {
      this.finish = resolve;
    });
  }

  start(): void {
    const t0 = performance.now();
    this.tStart = t0;
    this.phase = this.cfg.warmupMs > 0 ? 0 : 1;
    let ticker: NodeJS.Timeout | undefined;
    setTimeout(() => {
      this.phase = 1;
      this.completed = 0;
      this.pushes = 0;
      this.hist.reset();
      this.tStart = performance.now();
      this.windows.start(this.tStart, 0);
      ticker = setInterval(() => this.windows.tick(performance.now(), this.completed), WINDOW_MS);
    }, this.cfg.warmupMs);
    const end = () => {
      clearInterval(ticker);
      this.phase = 2;
      this.tEnd = performance.now();
      this.windows.close(this.tEnd, this.completed);
      this.maybeFinish();
    };
    // The window is at least durationMs and holds at least one round trip: on a loaded machine
    // the peer may not have answered yet, and a rate of zero would be a figure of the scheduler.
    this.endDue = () => {
      if (this.completed > 0) end();
      else this.endWhenAnswered = end;
    };
    setTimeout(() => this.endDue(), this.cfg.warmupMs + this.cfg.durationMs);
    this.fill();
  }

  fill(): void {
    if (this.phase === 2) return;
    while (this.outstanding < this.cfg.window) {
      const seq = this.seq++;
      this.tSent[seq % this.cfg.window] = performance.now();
      this.outstanding++;
      this.send(seq);
    }
    this.pushes++;
  }

  /** a response in blkif bytes (16-byte response, then the data of a READ) */
  receivedBytes(u8: Uint8Array): void {
    const dv = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
    const op = dv.getUint8(BLKIF_RSP_OPERATION);
    if (this.cfg.payload > 0 && op === BLKIF_OP_READ) privateData.set(u8.subarray(BLKIF_RESPONSE_SIZE));
    this.received(dv.getUint32(BLKIF_RSP_ID, true), dv.getInt16(BLKIF_RSP_STATUS, true));
  }

  received(id: number, status: number): void {
    if (status !== BLKIF_RSP_OKAY) this.errors++;
    this.outstanding--;
    if (this.phase === 1) {
      this.completed++;
      this.hist.add((performance.now() - this.tSent[id % this.cfg.window]) * 1e6);
      if (this.endWhenAnswered) {
        const end = this.endWhenAnswered;
        this.endWhenAnswered = null;
        end();
      }
    }
  }

  maybeFinish(): void {
    if (this.phase !== 2 || this.outstanding > 0) return;
    this.phase = 3;
    this.finish({
      role: 'front',
      completed: this.completed,
      elapsed_ns: Math.round((this.tEnd - this.tStart) * 1e6),
      notifies: 0,
      wakeups: 0,
      pushes: this.pushes,
      errors: this.errors,
      ring_size: this.cfg.window,
      hist: this.hist.toPairs(),
      windows: this.windows.toPairs(),
    });
  }
}

function emit(r: PeerResult): void {
  writeSync(1, JSON.stringify(r) + '\n');
}

function stopFrame(): Uint8Array {
  const u8 = new Uint8Array(BLKIF_REQUEST_SIZE);
  u8[0] = OP_STOP;
  return u8;
}

// ---------------------------------------------------------------- worker_threads postMessage

interface PmWorkerData {
  ringsideBaseline: 'postmessage';
  payload: number;
}

function isPmWorkerData(v: unknown): v is PmWorkerData {
  return typeof v === 'object' && v !== null && (v as { ringsideBaseline?: unknown }).ringsideBaseline === 'postmessage';
}

/** run inside the worker: the backend */
export function maybeRunPostMessageWorker(): boolean {
  if (parentPort === null || !isPmWorkerData(workerData)) return false;
  const port = parentPort;
  const payload = workerData.payload;
  port.on('message', (u8: Uint8Array) => {
    port.postMessage(answer(u8, payload));
  });
  return true;
}

async function runPostMessage(cfg: BaselinePeerConfig): Promise<void> {
  const data: PmWorkerData = { ringsideBaseline: 'postmessage', payload: cfg.payload };
  const worker = new Worker(fileURLToPath(import.meta.url), { workerData: data });
  await new Promise<void>((resolve, reject) => {
    worker.once('online', () => resolve());
    worker.once('error', reject);
  });
  const front = new Front(cfg, (seq) => worker.postMessage(encodeRequest(seq, cfg.window, cfg.payload)));
  worker.on('message', (u8: Uint8Array) => {
    front.receivedBytes(u8);
    if (front.phase === 2) front.maybeFinish();
    else front.fill();
  });
  writeSync(1, 'ready\n');
  front.start();
  const r = await front.done;
  await worker.terminate();
  emit(r);
}

// ---------------------------------------------------------------- Unix domain socket

/** split a stream into u32-length-prefixed frames */
class Deframer {
  private pending: Buffer | null = null;
  constructor(private readonly onFrame: (u8: Uint8Array) => void) {}
  push(chunk: Buffer): void {
    let buf = this.pending === null ? chunk : Buffer.concat([this.pending, chunk]);
    let off = 0;
    while (buf.length - off >= 4) {
      const len = buf.readUInt32LE(off);
      if (buf.length - off - 4 < len) break;
      this.onFrame(buf.subarray(off + 4, off + 4 + len));
      off += 4 + len;
    }
    buf = buf.subarray(off);
    this.pending = buf.length > 0 ? buf : null;
  }
}

function writeFrame(sock: Socket, u8: Uint8Array): void {
  const hdr = Buffer.allocUnsafe(4);
  hdr.writeUInt32LE(u8.length, 0);
  sock.write(hdr);
  sock.write(u8);
}

async function runUnixBack(cfg: BaselinePeerConfig): Promise<void> {
  const path = cfg.socketPath;
  if (path === undefined) throw new Error('unix baseline needs socketPath');
  const server = createServer((sock) => {
    sock.setNoDelay?.(true);
    let stop = false;
    const de = new Deframer((u8) => {
      if (u8[0] === OP_STOP) stop = true;
      writeFrame(sock, answer(u8, cfg.payload));
    });
    sock.on('data', (chunk: Buffer) => {
      sock.cork();
      de.push(chunk);
      sock.uncork();
      if (stop) sock.end(() => server.close());
    });
    sock.on('error', () => server.close());
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  writeSync(1, 'ready\n');
  await new Promise<void>((resolve) => server.on('close', resolve));
  emit({ role: 'back', completed: 0, elapsed_ns: 0, notifies: 0, wakeups: 0, pushes: 0, errors: 0, ring_size: cfg.window, hist: [], windows: [] });
}

async function runUnixFront(cfg: BaselinePeerConfig): Promise<void> {
  const path = cfg.socketPath;
  if (path === undefined) throw new Error('unix baseline needs socketPath');
  const sock = createConnection(path);
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', reject);
  });
  const front = new Front(cfg, (seq) => writeFrame(sock, encodeRequest(seq, cfg.window, cfg.payload)));
  const de = new Deframer((u8) => front.receivedBytes(u8));
  sock.on('data', (chunk: Buffer) => {
    de.push(chunk);
    if (front.phase === 2) {
      front.maybeFinish();
      return;
    }
    sock.cork();
    front.fill();
    sock.uncork();
  });
  writeSync(1, 'ready\n');
  sock.cork();
  front.start();
  sock.uncork();
  const r = await front.done;
  writeFrame(sock, stopFrame());
  await new Promise<void>((resolve) => sock.once('close', () => resolve()));
  emit(r);
}

// ---------------------------------------------------------------- process.send

interface IpcRequest {
  id: number;
  op: number;
  handle: number;
  sector: number;
  segs: [number, number, number][];
  data?: string;
}

interface IpcResponse {
  id: number;
  op: number;
  status: number;
  data?: string;
}

function isIpcRequest(v: unknown): v is IpcRequest {
  return typeof v === 'object' && v !== null && typeof (v as IpcRequest).id === 'number' && typeof (v as IpcRequest).op === 'number';
}

function isIpcResponse(v: unknown): v is IpcResponse {
  return typeof v === 'object' && v !== null && typeof (v as IpcResponse).id === 'number' && typeof (v as IpcResponse).status === 'number';
}

const payloadB64 = Buffer.alloc(4096, PAYLOAD_BYTE).toString('base64');
let mediumB64 = Buffer.from(medium).toString('base64');

/** the child: answers each JSON request */
async function runIpcBack(cfg: BaselinePeerConfig): Promise<void> {
  const send = process.send?.bind(process);
  if (send === undefined) throw new Error('process-send back must be forked with an IPC channel');
  await new Promise<void>((resolve) => {
    process.on('message', (m: unknown) => {
      if (!isIpcRequest(m)) return;
      if (m.op === OP_STOP) {
        process.disconnect();
        resolve();
        return;
      }
      const seg = m.segs[0];
      const ok = (m.op === BLKIF_OP_READ || m.op === BLKIF_OP_WRITE) && m.segs.length === 1 && seg !== undefined && seg[2] < 8 && seg[2] >= seg[1];
      if (ok && cfg.payload > 0 && m.op === BLKIF_OP_WRITE && m.data !== undefined) mediumB64 = m.data;
      const rsp: IpcResponse = { id: m.id, op: m.op, status: ok ? BLKIF_RSP_OKAY : BLKIF_RSP_ERROR };
      if (ok && cfg.payload > 0 && m.op === BLKIF_OP_READ) rsp.data = mediumB64;
      send(rsp);
    });
  });
}

async function runIpcFront(cfg: BaselinePeerConfig, script: string): Promise<void> {
  const child = fork(script, [JSON.stringify({ ...cfg, role: 'back' })], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  const front = new Front(cfg, (seq) => {
    const op = seq & 1 ? BLKIF_OP_WRITE : BLKIF_OP_READ;
    const m: IpcRequest = { id: seq, op, handle: 0, sector: (seq & 0xfffff) * 8, segs: [[seq % cfg.window, 0, 7]] };
    if (cfg.payload > 0 && op === BLKIF_OP_WRITE) m.data = payloadB64;
    child.send(m);
  });
  child.on('message', (m: unknown) => {
    if (!isIpcResponse(m)) return;
    if (m.data !== undefined) Buffer.from(m.data, 'base64').copy(privateData);
    front.received(m.id, m.status);
    if (front.phase === 2) front.maybeFinish();
    else front.fill();
  });
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', reject);
  });
  writeSync(1, 'ready\n');
  front.start();
  const r = await front.done;
  const stop: IpcRequest = { id: 0, op: OP_STOP, handle: 0, sector: 0, segs: [] };
  child.send(stop);
  await new Promise<void>((resolve) => child.once('exit', () => resolve()));
  emit(r);
}

export async function runBaselinePeer(cfg: BaselinePeerConfig, script: string): Promise<void> {
  if (cfg.kind === 'postmessage') {
    await runPostMessage(cfg);
  } else if (cfg.kind === 'unix') {
    if (cfg.role === 'back') await runUnixBack(cfg);
    else await runUnixFront(cfg);
  } else if (cfg.role === 'back') {
    await runIpcBack(cfg);
  } else {
    await runIpcFront(cfg, script);
  }
}
