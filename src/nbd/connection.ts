// One NBD client: the fixed-newstyle handshake, then the transmission phase. The client is not
// trusted: every length is bounded before anything is buffered, a bad magic, an oversized option
// or payload, or a command before the handshake ends the connection with a logged reason. Commands
// already handed to the disk finish normally, so a client that goes bad mid-stream cannot leave a
// half-done write behind.
import type { Socket } from 'node:net';
import { DiskError, type VirtualDisk } from '../blkif/disk.js';
import type { BufferPool } from './buffers.js';
import * as P from './protocol.js';

export interface NbdExport {
  name: string;
  description?: string;
  disk: VirtualDisk;
}

export interface NbdConnectionContext {
  exports: NbdExport[];
  pool: BufferPool;
  log: (line: string) => void;
  /** serialises read-modify-write of unaligned writes across all connections of an export */
  rmwLock: Map<VirtualDisk, Promise<void>>;
}

type State = 'flags' | 'opt-header' | 'opt-data' | 'cmd' | 'payload' | 'closed';

const SECTOR = 512;
/** bounded in-flight work per connection: beyond it we stop reading the socket */
const MAX_INFLIGHT = 128;
const MAX_INFLIGHT_BYTES = 64 << 20;
const MAX_OPTIONS = 256;
const ZERO = Buffer.alloc(1 << 20);

/** A command in flight; pooled per connection so steady-state traffic allocates none of these. */
class Cmd {
  type = 0;
  flags = 0;
  hi = 0;
  lo = 0;
  offset = 0;
  length = 0;
  buf: Buffer | null = null;
  view: Buffer | null = null;
  filled = 0;
  ok: () => void = () => undefined;
  fail: (e: unknown) => void = () => undefined;
  written: () => void = () => undefined;
}

export class NbdConnection {
  private state: State = 'flags';
  private readonly chunks: Buffer[] = [];
  private avail = 0;
  private readonly hdr = Buffer.alloc(P.REQUEST_HEADER_SIZE);
  private optType = 0;
  private optLen = 0;
  private options = 0;
  private noZeroes = false;
  private structured = false;
  private exp: NbdExport | null = null;
  private cur: Cmd | null = null;
  private readonly freeCmds: Cmd[] = [];
  private inflight = 0;
  private inflightBytes = 0;
  private paused = false;
  private corked = false;
  private disconnectRequested = false;
  private readonly uncorkBound = () => this.uncork();

  constructor(
    readonly id: number,
    private readonly sock: Socket,
    private readonly ctx: NbdConnectionContext,
  ) {
    sock.setNoDelay?.(true);
    sock.on('data', (b: Buffer) => {
      this.chunks.push(b);
      this.avail += b.length;
      this.pump();
    });
    sock.on('error', () => this.closeNow(null));
    sock.on('close', () => this.closeNow(null));
    // S: NBDMAGIC, IHAVEOPT, handshake flags
    const g = Buffer.alloc(18);
    g.writeBigUInt64BE(P.NBDMAGIC, 0);
    g.writeBigUInt64BE(P.IHAVEOPT, 8);
    g.writeUInt16BE(P.FLAG_FIXED_NEWSTYLE | P.FLAG_NO_ZEROES, 16);
    sock.write(g);
  }

  get closed(): boolean {
    return this.state === 'closed';
  }

  /** Ends the connection; `why` (if given) is logged as the reason. */
  drop(why: string | null): void {
    if (why !== null) this.ctx.log(`nbd: client ${this.id} disconnected: ${why}`);
    this.closeNow(null);
    this.sock.destroy();
  }

  private closeNow(_: null): void {
    this.state = 'closed';
    this.chunks.length = 0;
    this.avail = 0;
  }

  // ---- input ----

  private take(dst: Uint8Array, dstOff: number, n: number): void {
    while (n > 0) {
      const c = this.chunks[0];
      const k = c.length <= n ? c.length : n;
      c.copy(dst, dstOff, 0, k);
      dstOff += k;
      n -= k;
      this.avail -= k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
  }

  private pump(): void {
    while (this.state !== 'closed' && !this.paused) {
      switch (this.state) {
        case 'flags': {
          if (this.avail < 4) return;
          this.take(this.hdr, 0, 4);
          const f = this.hdr.readUInt32BE(0);
          if ((f & ~(P.FLAG_C_FIXED_NEWSTYLE | P.FLAG_C_NO_ZEROES)) !== 0) return this.drop(`unknown client flags 0x${f.toString(16)}`);
          this.noZeroes = (f & P.FLAG_C_NO_ZEROES) !== 0;
          this.state = 'opt-header';
          break;
        }
        case 'opt-header': {
          if (this.avail < 16) return;
          this.take(this.hdr, 0, 16);
          if (this.hdr.readBigUInt64BE(0) !== P.IHAVEOPT) return this.drop(`bad option magic 0x${this.hdr.readBigUInt64BE(0).toString(16)}`);
          this.optType = this.hdr.readUInt32BE(8);
          this.optLen = this.hdr.readUInt32BE(12);
          if (this.optLen > P.MAX_OPTION) return this.drop(`option ${this.optType} with ${this.optLen} bytes of data (at most ${P.MAX_OPTION})`);
          if (++this.options > MAX_OPTIONS) return this.drop(`more than ${MAX_OPTIONS} options`);
          this.state = 'opt-data';
          break;
        }
        case 'opt-data': {
          if (this.avail < this.optLen) return;
          const data = Buffer.alloc(this.optLen);
          this.take(data, 0, this.optLen);
          this.state = 'opt-header';
          this.option(this.optType, data);
          break;
        }
        case 'cmd': {
          if (this.inflight >= MAX_INFLIGHT || this.inflightBytes >= MAX_INFLIGHT_BYTES) return this.pause();
          if (this.avail < P.REQUEST_HEADER_SIZE) return;
          this.take(this.hdr, 0, P.REQUEST_HEADER_SIZE);
          this.command();
          break;
        }
        case 'payload': {
          const c = this.cur!;
          const n = Math.min(this.avail, c.length - c.filled);
          if (n === 0) return;
          this.take(c.view!, c.filled, n);
          c.filled += n;
          if (c.filled === c.length) {
            this.cur = null;
            this.state = 'cmd';
            this.startWrite(c);
          }
          break;
        }
      }
    }
  }

  private pause(): void {
    if (!this.paused) {
      this.paused = true;
      this.sock.pause();
    }
  }

  private resumeIfRoom(): void {
    if (this.paused && this.inflight < MAX_INFLIGHT / 2 && this.inflightBytes < MAX_INFLIGHT_BYTES / 2) {
      this.paused = false;
      this.sock.resume();
      this.pump();
    }
  }

  // ---- handshake ----

  private optReply(opt: number, type: number, data?: Buffer): void {
    const h = Buffer.alloc(20);
    h.writeBigUInt64BE(P.OPT_REPLY_MAGIC, 0);
    h.writeUInt32BE(opt, 8);
    h.writeUInt32BE(type, 12);
    h.writeUInt32BE(data?.length ?? 0, 16);
    this.sock.write(data ? Buffer.concat([h, data]) : h);
  }

  private findExport(name: string): NbdExport | null {
    if (name === '') return this.ctx.exports[0] ?? null;
    return this.ctx.exports.find((e) => e.name === name) ?? null;
  }

  private flagsFor(e: NbdExport): number {
    const d = e.disk;
    let f = P.TF_HAS_FLAGS | P.TF_SEND_FLUSH | P.TF_SEND_FUA | P.TF_CAN_MULTI_CONN;
    if (d.readonly) f |= P.TF_READ_ONLY;
    else {
      f |= P.TF_SEND_WRITE_ZEROES;
      if (d.features.discard) f |= P.TF_SEND_TRIM;
    }
    if (this.structured) f |= P.TF_SEND_DF;
    return f;
  }

  private option(opt: number, data: Buffer): void {
    switch (opt) {
      case P.OPT_EXPORT_NAME: {
        const e = this.findExport(data.toString('utf8'));
        // EXPORT_NAME has no error reply: an unknown name can only be answered by hanging up.
        if (e === null) return this.drop(`unknown export ${JSON.stringify(data.toString('utf8').slice(0, 64))}`);
        const r = Buffer.alloc(this.noZeroes ? 10 : 134);
        r.writeBigUInt64BE(BigInt(e.disk.sectors * SECTOR), 0);
        r.writeUInt16BE(this.flagsFor(e), 8);
        this.sock.write(r);
        this.exp = e;
        this.state = 'cmd';
        return;
      }
      case P.OPT_ABORT:
        this.optReply(opt, P.REP_ACK);
        this.sock.end();
        this.closeNow(null);
        return;
      case P.OPT_LIST: {
        if (data.length !== 0) return this.optReply(opt, P.REP_ERR_INVALID);
        for (const e of this.ctx.exports) {
          const name = Buffer.from(e.name, 'utf8');
          const b = Buffer.alloc(4 + name.length);
          b.writeUInt32BE(name.length, 0);
          name.copy(b, 4);
          this.optReply(opt, P.REP_SERVER, b);
        }
        return this.optReply(opt, P.REP_ACK);
      }
      case P.OPT_INFO:
      case P.OPT_GO:
        return this.infoOrGo(opt, data);
      case P.OPT_STRUCTURED_REPLY:
        if (data.length !== 0 || this.structured) return this.optReply(opt, P.REP_ERR_INVALID);
        this.structured = true;
        return this.optReply(opt, P.REP_ACK);
      case P.OPT_LIST_META_CONTEXT:
      case P.OPT_SET_META_CONTEXT:
        // We offer no metadata contexts: an empty answer selects none.
        if (!this.structured) return this.optReply(opt, P.REP_ERR_INVALID);
        return this.optReply(opt, P.REP_ACK);
      default:
        return this.optReply(opt, P.REP_ERR_UNSUP);
    }
  }

  private infoOrGo(opt: number, data: Buffer): void {
    if (data.length < 6) return this.optReply(opt, P.REP_ERR_INVALID);
    const nameLen = data.readUInt32BE(0);
    if (nameLen > data.length - 6) return this.optReply(opt, P.REP_ERR_INVALID);
    const name = data.toString('utf8', 4, 4 + nameLen);
    const nreq = data.readUInt16BE(4 + nameLen);
    if (data.length !== 6 + nameLen + 2 * nreq) return this.optReply(opt, P.REP_ERR_INVALID);
    const wanted = new Set<number>();
    for (let i = 0; i < nreq; i++) wanted.add(data.readUInt16BE(6 + nameLen + 2 * i));
    const e = this.findExport(name);
    if (e === null) return this.optReply(opt, P.REP_ERR_UNKNOWN);
    const ex = Buffer.alloc(12);
    ex.writeUInt16BE(P.INFO_EXPORT, 0);
    ex.writeBigUInt64BE(BigInt(e.disk.sectors * SECTOR), 2);
    ex.writeUInt16BE(this.flagsFor(e), 10);
    this.optReply(opt, P.REP_INFO, ex);
    if (wanted.has(P.INFO_BLOCK_SIZE)) {
      // Only a client that asked may be held to 512-byte alignment; others get read-modify-write.
      const bs = Buffer.alloc(14);
      bs.writeUInt16BE(P.INFO_BLOCK_SIZE, 0);
      bs.writeUInt32BE(SECTOR, 2);
      bs.writeUInt32BE(4096, 6);
      bs.writeUInt32BE(P.MAX_REQUEST, 10);
      this.optReply(opt, P.REP_INFO, bs);
    }
    if (wanted.has(P.INFO_NAME)) {
      const n = Buffer.from(e.name, 'utf8');
      const b = Buffer.alloc(2 + n.length);
      b.writeUInt16BE(P.INFO_NAME, 0);
      n.copy(b, 2);
      this.optReply(opt, P.REP_INFO, b);
    }
    if (wanted.has(P.INFO_DESCRIPTION) && e.description) {
      const n = Buffer.from(e.description, 'utf8');
      const b = Buffer.alloc(2 + n.length);
      b.writeUInt16BE(P.INFO_DESCRIPTION, 0);
      n.copy(b, 2);
      this.optReply(opt, P.REP_INFO, b);
    }
    this.optReply(opt, P.REP_ACK);
    if (opt === P.OPT_GO) {
      this.exp = e;
      this.state = 'cmd';
    }
  }

  // ---- transmission ----

  private newCmd(): Cmd {
    const c = this.freeCmds.pop();
    if (c !== undefined) return c;
    const n = new Cmd();
    n.ok = () => this.done(n, 0, null);
    n.fail = (e: unknown) => this.done(n, errnoOf(e), e);
    n.written = () => this.release(n);
    return n;
  }

  private command(): void {
    const h = this.hdr;
    const magic = h.readUInt32BE(0);
    if (magic !== P.REQUEST_MAGIC) return this.drop(`bad request magic 0x${magic.toString(16)}`);
    const c = this.newCmd();
    c.flags = h.readUInt16BE(4);
    c.type = h.readUInt16BE(6);
    c.hi = h.readUInt32BE(8);
    c.lo = h.readUInt32BE(12);
    c.offset = h.readUInt32BE(16) * 4294967296 + h.readUInt32BE(20);
    c.length = h.readUInt32BE(24);
    c.buf = null;
    c.view = null;
    c.filled = 0;
    const e = this.exp!;
    const size = e.disk.sectors * SECTOR;
    this.inflight++;
    const inRange = c.offset <= size && c.length <= size - c.offset;
    switch (c.type) {
      case P.CMD_READ:
        if (c.length === 0 || c.length > P.MAX_REQUEST) return this.done(c, P.NBD_EINVAL, null);
        if (!inRange) return this.done(c, P.NBD_EINVAL, null);
        c.buf = this.ctx.pool.take(c.length);
        c.view = c.buf.subarray(0, c.length);
        this.inflightBytes += c.length;
        this.startRead(c);
        return;
      case P.CMD_WRITE:
        // The payload follows whatever we think of the header; a length we will not buffer can
        // only be answered by hanging up.
        if (c.length > P.MAX_REQUEST) {
          this.inflight--;
          return this.drop(`write of ${c.length} bytes (at most ${P.MAX_REQUEST})`);
        }
        c.buf = this.ctx.pool.take(Math.max(c.length, 1));
        c.view = c.buf.subarray(0, c.length);
        this.inflightBytes += c.length;
        this.cur = c;
        this.state = 'payload';
        return;
      case P.CMD_DISC:
        // Answer what is in flight, then hang up; read nothing more.
        this.release(c);
        this.disconnectRequested = true;
        this.state = 'closed';
        if (this.inflight === 0) this.finishDisconnect();
        return;
      case P.CMD_FLUSH:
        e.disk.flush().then(c.ok, c.fail);
        return;
      case P.CMD_TRIM:
        if (e.disk.readonly) return this.done(c, P.NBD_EPERM, null);
        if (!e.disk.features.discard) return this.done(c, P.NBD_EINVAL, null);
        if (!inRange) return this.done(c, P.NBD_EINVAL, null);
        this.trim(e.disk, c.offset, c.length).then(c.ok, c.fail);
        return;
      case P.CMD_WRITE_ZEROES:
        if (e.disk.readonly) return this.done(c, P.NBD_EPERM, null);
        if (!inRange) return this.done(c, P.NBD_ENOSPC, null);
        this.writeZeroes(e.disk, c.offset, c.length, (c.flags & P.CMD_FLAG_FUA) !== 0).then(c.ok, c.fail);
        return;
      default:
        return this.done(c, P.NBD_EINVAL, null);
    }
  }

  private startRead(c: Cmd): void {
    const d = this.exp!.disk;
    if (c.offset % SECTOR === 0 && c.length % SECTOR === 0) d.read(c.offset / SECTOR, c.view!).then(c.ok, c.fail);
    else this.unalignedRead(d, c.offset, c.view!).then(c.ok, c.fail);
  }

  private startWrite(c: Cmd): void {
    const d = this.exp!.disk;
    const size = d.sectors * SECTOR;
    if (d.readonly) return this.done(c, P.NBD_EPERM, null);
    if (c.length === 0) return this.done(c, 0, null);
    if (!(c.offset <= size && c.length <= size - c.offset)) return this.done(c, P.NBD_ENOSPC, null);
    const fua = (c.flags & P.CMD_FLAG_FUA) !== 0;
    if (c.offset % SECTOR === 0 && c.length % SECTOR === 0) d.write(c.offset / SECTOR, c.view!, fua ? FUA : undefined).then(c.ok, c.fail);
    else this.unalignedWrite(d, c.offset, c.view!, fua).then(c.ok, c.fail);
  }

  private done(c: Cmd, error: number, cause: unknown): void {
    if (error !== 0 && cause !== null) this.ctx.log(`nbd: client ${this.id}: ${cmdName(c.type)} at ${c.offset} +${c.length} failed: ${(cause as Error).message ?? cause}`);
    if (this.sock.destroyed) return this.release(c);
    if (!this.corked) {
      this.corked = true;
      this.sock.cork();
      process.nextTick(this.uncorkBound);
    }
    if (c.type === P.CMD_READ && this.structured) {
      if (error === 0) {
        const h = Buffer.allocUnsafe(28);
        h.writeUInt32BE(P.STRUCTURED_REPLY_MAGIC, 0);
        h.writeUInt16BE(P.REPLY_FLAG_DONE, 4);
        h.writeUInt16BE(P.REPLY_TYPE_OFFSET_DATA, 6);
        h.writeUInt32BE(c.hi, 8);
        h.writeUInt32BE(c.lo, 12);
        h.writeUInt32BE(8 + c.length, 16);
        h.writeUInt32BE(Math.floor(c.offset / 4294967296), 20);
        h.writeUInt32BE(c.offset >>> 0, 24);
        this.sock.write(h);
        this.sock.write(c.view!, c.written);
        return;
      }
      const h = Buffer.allocUnsafe(26);
      h.writeUInt32BE(P.STRUCTURED_REPLY_MAGIC, 0);
      h.writeUInt16BE(P.REPLY_FLAG_DONE, 4);
      h.writeUInt16BE(P.REPLY_TYPE_ERROR, 6);
      h.writeUInt32BE(c.hi, 8);
      h.writeUInt32BE(c.lo, 12);
      h.writeUInt32BE(6, 16);
      h.writeUInt32BE(error, 20);
      h.writeUInt16BE(0, 24);
      this.sock.write(h);
      return this.release(c);
    }
    const h = Buffer.allocUnsafe(16);
    h.writeUInt32BE(P.SIMPLE_REPLY_MAGIC, 0);
    h.writeUInt32BE(error, 4);
    h.writeUInt32BE(c.hi, 8);
    h.writeUInt32BE(c.lo, 12);
    if (c.type === P.CMD_READ && error === 0) {
      this.sock.write(h);
      this.sock.write(c.view!, c.written);
      return;
    }
    this.sock.write(h);
    this.release(c);
  }

  private uncork(): void {
    this.corked = false;
    this.sock.uncork();
  }

  private release(c: Cmd): void {
    if (c.buf !== null) {
      this.inflightBytes -= c.length;
      this.ctx.pool.give(c.buf);
      c.buf = null;
      c.view = null;
    }
    this.inflight--;
    this.freeCmds.push(c);
    if (this.disconnectRequested) {
      if (this.inflight === 0) this.finishDisconnect();
      return;
    }
    this.resumeIfRoom();
  }

  private finishDisconnect(): void {
    this.sock.end();
  }

  // ---- the slow paths: unaligned I/O and zeroing ----

  private async unalignedRead(d: VirtualDisk, offset: number, out: Uint8Array): Promise<void> {
    const s0 = Math.floor(offset / SECTOR);
    const s1 = Math.ceil((offset + out.length) / SECTOR);
    const tmp = Buffer.alloc((s1 - s0) * SECTOR);
    await d.read(s0, tmp);
    out.set(tmp.subarray(offset - s0 * SECTOR, offset - s0 * SECTOR + out.length));
  }

  private unalignedWrite(d: VirtualDisk, offset: number, data: Uint8Array, fua: boolean): Promise<void> {
    const prev = this.ctx.rmwLock.get(d) ?? Promise.resolve();
    const next = prev.then(async () => {
      const s0 = Math.floor(offset / SECTOR);
      const s1 = Math.ceil((offset + data.length) / SECTOR);
      const tmp = Buffer.alloc((s1 - s0) * SECTOR);
      await d.read(s0, tmp);
      tmp.set(data, offset - s0 * SECTOR);
      await d.write(s0, tmp, fua ? FUA : undefined);
    });
    this.ctx.rmwLock.set(d, next.catch(() => undefined));
    return next;
  }

  private async writeZeroes(d: VirtualDisk, offset: number, length: number, fua: boolean): Promise<void> {
    let end = offset + length;
    const headEnd = Math.min(end, Math.ceil(offset / SECTOR) * SECTOR);
    if (headEnd > offset) await this.unalignedWrite(d, offset, ZERO.subarray(0, headEnd - offset), false);
    const tailStart = Math.max(headEnd, Math.floor(end / SECTOR) * SECTOR);
    if (end > tailStart) await this.unalignedWrite(d, tailStart, ZERO.subarray(0, end - tailStart), false);
    end = tailStart;
    for (let at = headEnd; at < end; at += ZERO.length) {
      const n = Math.min(ZERO.length, end - at);
      await d.write(at / SECTOR, ZERO.subarray(0, n));
    }
    if (fua) await d.flush();
  }

  private async trim(d: VirtualDisk, offset: number, length: number): Promise<void> {
    // TRIM is advisory: only whole sectors inside the range are discarded.
    const s0 = Math.ceil(offset / SECTOR);
    const s1 = Math.floor((offset + length) / SECTOR);
    if (s1 > s0) await d.discard(s0, s1 - s0);
  }
}

const FUA = { fua: true };

function errnoOf(e: unknown): number {
  if (e instanceof DiskError) {
    switch (e.code) {
      case 'EPERM':
        return P.NBD_EPERM;
      case 'EINVAL':
        return P.NBD_EINVAL;
      case 'ENOSPC':
        return P.NBD_ENOSPC;
      case 'EOPNOTSUPP':
        return P.NBD_ENOTSUP;
      case 'ESHUTDOWN':
        return P.NBD_ESHUTDOWN;
      default:
        return P.NBD_EIO;
    }
  }
  return P.NBD_EIO;
}

function cmdName(t: number): string {
  return ['read', 'write', 'disc', 'flush', 'trim', 'cache', 'write-zeroes'][t] ?? `cmd(${t})`;
}
