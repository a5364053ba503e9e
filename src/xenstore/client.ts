// Promise-based xenstore client over a Unix socket, the role libxenstore plays for Xen guests. Requests
// are pipelined, watch events are dispatched by token, and transaction(fn) reruns fn on EAGAIN. It
// shares wire.ts with xenstored, so both ends agree on xs_wire.h framing.
import { createConnection, type Socket } from 'node:net';
import {
  encodeMessage,
  FrameDecoder,
  isXsErrorName,
  PAYLOAD_MAX,
  XsType,
  xsTypeName,
} from './wire.js';
import { XenstoreError, isXenstoreError } from './errors.js';
import { formatPerm, parsePerm, parsePermList, type XsPerm } from './perms.js';

export { XenstoreError, isXenstoreError } from './errors.js';
export type { XenstoreErrorCode } from './errors.js';
export type { XsPerm, XsPermKind } from './perms.js';

export type WatchCallback = (path: string, token: string) => void;

export interface XenstoreClientOptions {
  // Receives exceptions thrown by watch callbacks and protocol oddities; the client keeps running.
  onError?: (err: Error) => void;
}

export interface TransactionOptions {
  // Attempts before an EAGAIN (conflicting concurrent change) is given up and thrown.
  maxAttempts?: number;
}

// Node operations, available directly on the client and inside transaction(fn).
export interface XsOps {
  read(path: string): Promise<string>;
  readBuffer(path: string): Promise<Buffer>;
  // undefined instead of ENOENT.
  tryRead(path: string): Promise<string | undefined>;
  exists(path: string): Promise<boolean>;
  write(path: string, value: string | Buffer): Promise<void>;
  mkdir(path: string): Promise<void>;
  rm(path: string): Promise<void>;
  directory(path: string): Promise<string[]>;
  getPerms(path: string): Promise<XsPerm[]>;
  // Perms as entries or as text such as "n0,r5".
  setPerms(path: string, perms: readonly XsPerm[] | string): Promise<void>;
}

interface Pending {
  type: XsType;
  op: string;
  path: string | undefined;
  resolve: (payload: Buffer) => void;
  reject: (err: Error) => void;
}

interface WatchEntry {
  path: string;
  cb: WatchCallback;
}

function nulStrings(payload: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  for (;;) {
    const nul = payload.indexOf(0, start);
    if (nul < 0) return out;
    out.push(payload.subarray(start, nul));
    start = nul + 1;
  }
}

function args(...parts: (string | Buffer)[]): Buffer {
  return Buffer.concat(parts.flatMap((p) => [typeof p === 'string' ? Buffer.from(p, 'utf8') : p, Buffer.from([0])]));
}

function stripNul(b: Buffer): string {
  const nul = b.indexOf(0);
  return b.toString('utf8', 0, nul < 0 ? b.length : nul);
}

// Whether an event path falls under a watch as the server reports it (relative watches get relative
// paths; special @names only match themselves).
function covers(watchPath: string, eventPath: string): boolean {
  if (watchPath === eventPath) return true;
  if (watchPath.startsWith('@')) return false;
  if (watchPath === '/') return eventPath.startsWith('/');
  return eventPath.startsWith(`${watchPath}/`);
}

class TxOps implements XsOps {
  constructor(
    private readonly c: XenstoreClient,
    readonly id: number,
  ) {}
  read(path: string): Promise<string> {
    return this.c.read(path, this.id);
  }
  readBuffer(path: string): Promise<Buffer> {
    return this.c.readBuffer(path, this.id);
  }
  tryRead(path: string): Promise<string | undefined> {
    return this.c.tryRead(path, this.id);
  }
  exists(path: string): Promise<boolean> {
    return this.c.exists(path, this.id);
  }
  write(path: string, value: string | Buffer): Promise<void> {
    return this.c.write(path, value, this.id);
  }
  mkdir(path: string): Promise<void> {
    return this.c.mkdir(path, this.id);
  }
  rm(path: string): Promise<void> {
    return this.c.rm(path, this.id);
  }
  directory(path: string): Promise<string[]> {
    return this.c.directory(path, this.id);
  }
  getPerms(path: string): Promise<XsPerm[]> {
    return this.c.getPerms(path, this.id);
  }
  setPerms(path: string, perms: readonly XsPerm[] | string): Promise<void> {
    return this.c.setPerms(path, perms, this.id);
  }
}

// Async xenstore client over a Unix stream socket. Requests are pipelined and matched to replies by
// req_id; watch events may arrive between replies at any time.
export class XenstoreClient implements XsOps {
  private readonly decoder = new FrameDecoder();
  private readonly pending = new Map<number, Pending>();
  private readonly watches = new Map<string, WatchEntry[]>();
  private nextReqId = 1;
  private isClosed = false;
  readonly closed: Promise<void>;

  private constructor(
    private readonly socket: Socket,
    private readonly opts: XenstoreClientOptions,
  ) {
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => {
      // 'close' follows and fails everything outstanding.
    });
    socket.on('close', () => this.shutdown('connection closed'));
  }

  static connect(socketPath: string, opts: XenstoreClientOptions = {}): Promise<XenstoreClient> {
    return new Promise((resolve, reject) => {
      const s = createConnection(socketPath);
      const fail = (e: Error): void => reject(e);
      s.once('error', fail);
      s.once('connect', () => {
        s.off('error', fail);
        resolve(new XenstoreClient(s, opts));
      });
    });
  }

  get isConnected(): boolean {
    return !this.isClosed;
  }

  close(): Promise<void> {
    if (!this.isClosed) this.socket.end();
    return this.closed;
  }

  // ---- plumbing ----

  private report(err: Error): void {
    if (this.opts.onError) this.opts.onError(err);
    else process.emitWarning(err);
  }

  private shutdown(reason: string): void {
    if (this.isClosed) return;
    this.isClosed = true;
    for (const p of this.pending.values()) p.reject(new XenstoreError('ECONNRESET', p.op, p.path, reason));
    this.pending.clear();
    this.socket.destroy();
  }

  private allocReqId(): number {
    while (this.pending.has(this.nextReqId) || this.nextReqId === 0) this.nextReqId = (this.nextReqId + 1) >>> 0;
    const id = this.nextReqId;
    this.nextReqId = (this.nextReqId + 1) >>> 0;
    return id;
  }

  private request(type: XsType, txId: number, payload: Buffer, path?: string): Promise<Buffer> {
    const op = xsTypeName(type);
    if (this.isClosed) return Promise.reject(new XenstoreError('ECONNRESET', op, path, 'not connected'));
    // libxenstore refuses locally too: xenstored cuts off a client that sends an oversized message.
    if (payload.length > PAYLOAD_MAX) return Promise.reject(new XenstoreError('E2BIG', op, path, 'request too large'));
    return new Promise((resolve, reject) => {
      const reqId = this.allocReqId();
      this.pending.set(reqId, { type, op, path, resolve, reject });
      this.socket.write(encodeMessage(type, reqId, txId, payload));
    });
  }

  private onData(chunk: Buffer): void {
    this.decoder.push(chunk);
    for (;;) {
      const f = this.decoder.next();
      if (!f) return;
      if (f.kind === 'oversized') {
        this.report(new XenstoreError('EPROTO', 'receive', undefined, `server sent ${f.header.len}-byte payload`));
        this.shutdown('protocol error');
        return;
      }
      const m = f.message;
      if (m.type === XsType.WATCH_EVENT) {
        this.onWatchEvent(m.payload);
        continue;
      }
      const p = this.pending.get(m.reqId);
      if (!p) {
        this.report(new XenstoreError('EPROTO', xsTypeName(m.type), undefined, `reply for unknown req_id ${m.reqId}`));
        continue;
      }
      this.pending.delete(m.reqId);
      if (m.type === XsType.ERROR) {
        const name = stripNul(m.payload);
        p.reject(new XenstoreError(isXsErrorName(name) ? name : 'EINVAL', p.op, p.path, isXsErrorName(name) ? undefined : name));
      } else if (m.type !== p.type) {
        p.reject(new XenstoreError('EPROTO', p.op, p.path, `reply type ${xsTypeName(m.type)}`));
      } else {
        p.resolve(m.payload);
      }
    }
  }

  private onWatchEvent(payload: Buffer): void {
    const parts = nulStrings(payload);
    if (parts.length < 2) {
      this.report(new XenstoreError('EPROTO', 'WATCH_EVENT', undefined, 'malformed event'));
      return;
    }
    const path = parts[0].toString('utf8');
    const token = parts[1].toString('utf8');
    for (const w of this.watches.get(token) ?? []) {
      if (!covers(w.path, path)) continue;
      try {
        w.cb(path, token);
      } catch (e) {
        this.report(e instanceof Error ? e : new Error(String(e)));
      }
    }
  }

  // ---- node operations (tx 0 = outside a transaction) ----

  async readBuffer(path: string, tx = 0): Promise<Buffer> {
    return this.request(XsType.READ, tx, args(path), path);
  }

  async read(path: string, tx = 0): Promise<string> {
    return (await this.readBuffer(path, tx)).toString('utf8');
  }

  async tryRead(path: string, tx = 0): Promise<string | undefined> {
    try {
      return await this.read(path, tx);
    } catch (e) {
      if (isXenstoreError(e, 'ENOENT')) return undefined;
      throw e;
    }
  }

  async exists(path: string, tx = 0): Promise<boolean> {
    return (await this.tryRead(path, tx)) !== undefined;
  }

  async write(path: string, value: string | Buffer, tx = 0): Promise<void> {
    const v = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
    await this.request(XsType.WRITE, tx, Buffer.concat([args(path), v]), path);
  }

  async mkdir(path: string, tx = 0): Promise<void> {
    await this.request(XsType.MKDIR, tx, args(path), path);
  }

  async rm(path: string, tx = 0): Promise<void> {
    await this.request(XsType.RM, tx, args(path), path);
  }

  async directory(path: string, tx = 0): Promise<string[]> {
    try {
      return nulStrings(await this.request(XsType.DIRECTORY, tx, args(path), path)).map((b) => b.toString('latin1'));
    } catch (e) {
      // Lists longer than one message come in parts.
      if (!isXenstoreError(e, 'E2BIG')) throw e;
      return this.directoryParts(path, tx);
    }
  }

  private async directoryParts(path: string, tx: number): Promise<string[]> {
    for (let attempt = 0; attempt < 8; attempt++) {
      const names: string[] = [];
      let gen: string | undefined;
      let offset = 0;
      let changed = false;
      while (!changed) {
        const parts = nulStrings(await this.request(XsType.DIRECTORY_PART, tx, args(path, String(offset)), path));
        if (parts.length === 0) throw new XenstoreError('EPROTO', 'DIRECTORY_PART', path, 'empty reply');
        const g = parts[0].toString('latin1');
        if (gen !== undefined && g !== gen) {
          changed = true; // the list changed between parts: start over
          break;
        }
        gen = g;
        let consumed = 0;
        for (const n of parts.slice(1)) {
          if (n.length === 0) return names;
          names.push(n.toString('latin1'));
          offset += n.length + 1;
          consumed++;
        }
        if (consumed === 0) throw new XenstoreError('EPROTO', 'DIRECTORY_PART', path, 'no progress');
      }
    }
    throw new XenstoreError('EAGAIN', 'DIRECTORY_PART', path, 'directory kept changing');
  }

  async getPerms(path: string, tx = 0): Promise<XsPerm[]> {
    const parts = nulStrings(await this.request(XsType.GET_PERMS, tx, args(path), path));
    return parts.map((b) => {
      const p = parsePerm(b.toString('latin1'));
      if (!p) throw new XenstoreError('EPROTO', 'GET_PERMS', path, `bad permission '${b.toString('latin1')}'`);
      return p;
    });
  }

  async setPerms(path: string, perms: readonly XsPerm[] | string, tx = 0): Promise<void> {
    const list = typeof perms === 'string' ? parsePermList(perms) : perms;
    if (list.length === 0) throw new XenstoreError('EINVAL', 'SET_PERMS', path, 'no permissions given');
    await this.request(XsType.SET_PERMS, tx, args(path, ...list.map(formatPerm)), path);
  }

  // ---- watches ----

  // As in Xen, the callback fires once right after registration, then for every change to the path or
  // below it (the changed path is passed). Relative paths are relative to the domain's home.
  async watch(path: string, token: string, cb: WatchCallback): Promise<void> {
    const entry: WatchEntry = { path, cb };
    const list = this.watches.get(token) ?? [];
    list.push(entry);
    this.watches.set(token, list);
    try {
      await this.request(XsType.WATCH, 0, args(path, token), path);
    } catch (e) {
      this.dropWatch(token, entry);
      throw e;
    }
  }

  async unwatch(path: string, token: string): Promise<void> {
    const entry = this.watches.get(token)?.find((w) => w.path === path);
    if (entry) this.dropWatch(token, entry);
    await this.request(XsType.UNWATCH, 0, args(path, token), path);
  }

  async resetWatches(): Promise<void> {
    this.watches.clear();
    await this.request(XsType.RESET_WATCHES, 0, args(''));
  }

  private dropWatch(token: string, entry: WatchEntry): void {
    const list = this.watches.get(token);
    if (!list) return;
    const rest = list.filter((w) => w !== entry);
    if (rest.length === 0) this.watches.delete(token);
    else this.watches.set(token, rest);
  }

  // ---- transactions ----

  async transactionStart(): Promise<number> {
    const id = Number(stripNul(await this.request(XsType.TRANSACTION_START, 0, args(''))));
    if (!Number.isInteger(id) || id <= 0) throw new XenstoreError('EPROTO', 'TRANSACTION_START', undefined, 'bad id');
    return id;
  }

  async transactionEnd(txId: number, commit: boolean): Promise<void> {
    await this.request(XsType.TRANSACTION_END, txId, args(commit ? 'T' : 'F'));
  }

  // Runs fn inside a transaction and commits; on EAGAIN (someone changed what fn read or wrote) the
  // whole of fn runs again, so fn must be free of side effects outside xenstore.
  async transaction<T>(fn: (tx: XsOps) => Promise<T>, opts: TransactionOptions = {}): Promise<T> {
    const maxAttempts = opts.maxAttempts ?? 32;
    for (let attempt = 1; ; attempt++) {
      const id = await this.transactionStart();
      let result: T;
      try {
        result = await fn(new TxOps(this, id));
      } catch (e) {
        await this.transactionEnd(id, false).catch(() => undefined);
        if (isXenstoreError(e, 'EAGAIN') && attempt < maxAttempts) continue;
        throw e;
      }
      try {
        await this.transactionEnd(id, true);
        return result;
      } catch (e) {
        if (!isXenstoreError(e, 'EAGAIN') || attempt >= maxAttempts) throw e;
        // Let the competing writers finish before trying again.
        await new Promise((r) => setTimeout(r, Math.min(attempt, 10)));
      }
    }
  }

  // ---- domains ----

  async getDomainPath(domid: number): Promise<string> {
    return stripNul(await this.request(XsType.GET_DOMAIN_PATH, 0, args(String(domid))));
  }

  async introduce(domid: number, mfn = 0, port = 0): Promise<void> {
    await this.request(XsType.INTRODUCE, 0, args(String(domid), String(mfn), String(port)));
  }

  async release(domid: number): Promise<void> {
    await this.request(XsType.RELEASE, 0, args(String(domid)));
  }

  async isDomainIntroduced(domid: number): Promise<boolean> {
    return stripNul(await this.request(XsType.IS_DOMAIN_INTRODUCED, 0, args(String(domid)))) === 'T';
  }

  async setTarget(domid: number, target: number): Promise<void> {
    await this.request(XsType.SET_TARGET, 0, args(String(domid), String(target)));
  }
}
