// blkfront: a guest's virtual disk over blkif. The XenBus glue drives its life:
//   prepare(backendDomid, features)  backend at InitWait: allocate rings, grants, event channels;
//                                    publish what it returns, go Initialised
//   connect(info)                    backend Connected: start (or resume) I/O
//   disconnect(reason)               backend gone (Closing/Closed, died): keep every unanswered
//                                    request, release the rings; prepare + connect again replays them
// Until connected, I/O waits. Nothing acknowledged to a caller is ever dropped by a reconnect.
import { BLKIF_MAX_SEGMENTS_PER_REQUEST, XEN_IO_PROTO_ABI_X86_64 } from '../abi/blkif.js';
import { DiskError, type VirtualDisk, type VirtualDiskFeatures, type WriteOptions } from '../blkif/disk.js';
import {
  BLKBACK_MAX_INDIRECT_SEGMENTS, BLKIF_MAX_QUEUES, isReadonlyInfo,
  type BlkbackConnectInfo, type BlkbackFeatures, type BlkfrontConnectInfo,
} from '../blkif/features.js';
import { sectorRangeValid } from '../blkif/validate.js';
import type { FrontendServices } from '../domain/services.js';
import { FLUSH_OPS, FrontQueue } from './queue.js';
import { Part, PartKind, UserOp } from './part.js';

export interface BlkfrontOptions {
  /** for log lines, e.g. "xvda" */
  name: string;
  /** the vbd's device number (virtual-device), carried in every request's handle */
  handle: number;
  /** queues wanted (the backend may offer fewer); default 1 */
  queues?: number;
  /** ring page order wanted; default: the most the backend offers, up to 2 */
  ringPageOrder?: number;
  /** data pages per queue granted once and reused; default 1024 (4 MiB) */
  poolPages?: number;
  /** segments per request wanted when the backend offers indirect descriptors; default 256 */
  maxIndirectSegments?: number;
}

type State = 'idle' | 'prepared' | 'connected' | 'closed';

export class Blkfront implements VirtualDisk {
  sectors = 0;
  readonly = false;
  features: VirtualDiskFeatures = { flush: false, fua: false, discard: false, secureDiscard: false };
  state: State = 'idle';
  /** the backend misbehaved (bad response) or the ring faulted: why, until the next connect */
  fault: string | null = null;
  private queues: FrontQueue[] = [];
  private pending: Part[] = [];
  private pendingHead = 0;
  private seq = 0;
  private rr = 0;
  private pushScheduled = false;
  private maxSegs = BLKIF_MAX_SEGMENTS_PER_REQUEST;
  private backendFeatures: BlkbackFeatures | null = null;
  private readonly faultListeners: ((reason: string) => void)[] = [];
  private readonly completeBound = (part: Part, err: DiskError | null) => part.op.partDone(err);
  private readonly faultBound = (q: FrontQueue, reason: string) => this.onQueueFault(q, reason);
  private readonly pushBound = () => this.pushAll();
  private readonly kickBound = () => this.kick();

  constructor(
    private readonly env: FrontendServices,
    private readonly opts: BlkfrontOptions,
  ) {}

  /** Called when the backend misbehaves; the glue should tear down and reconnect (or give up). */
  onFault(listener: (reason: string) => void): void {
    this.faultListeners.push(listener);
  }

  /** Backend at InitWait: set up rings for `backendDomid` within what it offered. */
  async prepare(backendDomid: number, offered: BlkbackFeatures): Promise<BlkfrontConnectInfo> {
    if (this.state === 'closed') throw new Error(`blkfront ${this.opts.name}: closed`);
    if (this.queues.length > 0) throw new Error(`blkfront ${this.opts.name}: already prepared; disconnect first`);
    this.backendFeatures = offered;
    const nq = Math.max(1, Math.min(this.opts.queues ?? 1, offered.maxQueues, BLKIF_MAX_QUEUES));
    const order = Math.min(this.opts.ringPageOrder ?? 2, offered.maxRingPageOrder, 4);
    const wantIndirect = this.opts.maxIndirectSegments ?? BLKBACK_MAX_INDIRECT_SEGMENTS;
    const indirect = Math.min(offered.maxIndirectSegments, wantIndirect, 512);
    this.maxSegs = indirect > BLKIF_MAX_SEGMENTS_PER_REQUEST ? indirect : BLKIF_MAX_SEGMENTS_PER_REQUEST;
    const poolPages = Math.max(this.opts.poolPages ?? 1024, this.maxSegs);
    const flushOp = offered.flushCache ? FLUSH_OPS.flush : FLUSH_OPS.barrier;
    const queues: FrontQueue[] = [];
    try {
      for (let i = 0; i < nq; i++) {
        const q = new FrontQueue(this.env, {
          backendDomid, handle: this.opts.handle, ringPageOrder: order, poolPages, maxSegs: this.maxSegs, flushOp,
        }, this.completeBound, this.faultBound, this.kickBound);
        queues.push(q);
        await q.bind();
      }
    } catch (e) {
      for (const q of queues) await q.release();
      throw e;
    }
    this.queues = queues;
    this.state = 'prepared';
    return {
      ringPageOrder: order,
      queues: queues.map((q) => ({ ringRefs: [...q.ringRefs], eventChannel: q.port })),
      protocol: XEN_IO_PROTO_ABI_X86_64,
      persistent: true,
    };
  }

  /** Backend Connected: learn the disk, then issue everything waiting (replays first). */
  connect(info: BlkbackConnectInfo): void {
    if (this.state !== 'prepared') throw new Error(`blkfront ${this.opts.name}: connect while ${this.state}`);
    const f = this.backendFeatures!;
    if (this.state === 'prepared' && this.sectors !== 0 && info.sectors !== this.sectors) {
      this.env.log(`blkfront ${this.opts.name}: disk size changed across reconnect: ${this.sectors} -> ${info.sectors} sectors`);
    }
    this.sectors = info.sectors;
    this.readonly = isReadonlyInfo(info.info);
    const flush = f.flushCache || f.barrier;
    this.features = { flush, fua: flush, discard: f.discard !== null, secureDiscard: f.discard?.secure ?? false };
    this.fault = null;
    this.state = 'connected';
    this.env.log(
      `blkfront ${this.opts.name}: connected: ${info.sectors} sectors, ${this.queues.length} queue(s), ${this.maxSegs} segments/request` +
        `${this.readonly ? ', read-only' : ''}${this.pendingCount > 0 ? `, replaying ${this.pendingCount} request(s)` : ''}`,
    );
    this.kick();
  }

  /**
   * The backend is gone or must be dropped. Unanswered requests go back to the head of the
   * queue, in their original order, to be issued again after the next connect.
   */
  async disconnect(reason: string): Promise<void> {
    if (this.queues.length === 0) {
      if (this.state !== 'closed') this.state = 'idle';
      return;
    }
    const queues = this.queues;
    this.queues = [];
    if (this.state !== 'closed') this.state = 'idle';
    const replay: Part[] = [];
    for (const q of queues) replay.push(...q.takeOutstanding());
    replay.sort((a, b) => a.seq - b.seq);
    this.pending = [...replay, ...this.pending.slice(this.pendingHead)];
    this.pendingHead = 0;
    let leaked = 0;
    for (const q of queues) leaked += await q.release();
    this.env.log(
      `blkfront ${this.opts.name}: disconnected (${reason}); ${replay.length} in-flight request(s) kept for replay` +
        (leaked > 0 ? `; ${leaked} frame(s) still mapped by the backend were left granted` : ''),
    );
  }

  /** Fails everything outstanding and releases the rings for good. */
  async close(): Promise<void> {
    const was = this.queues;
    this.state = 'closed';
    const dropped = [...was.flatMap((q) => q.takeOutstanding()), ...this.pending.slice(this.pendingHead)];
    this.pending = [];
    this.pendingHead = 0;
    for (const q of was) await q.release();
    this.queues = [];
    const err = new DiskError('ESHUTDOWN', `blkfront ${this.opts.name} closed`);
    for (const p of dropped) p.op.partDone(err);
  }

  get pendingCount(): number {
    return this.pending.length - this.pendingHead;
  }

  read(sector: number, buf: Uint8Array): Promise<void> {
    return this.rw(PartKind.Read, sector, buf);
  }

  async write(sector: number, buf: Uint8Array, opts?: WriteOptions): Promise<void> {
    if (this.readonly && this.state === 'connected') throw new DiskError('EPERM', `${this.opts.name} is read-only`);
    await this.rw(PartKind.Write, sector, buf);
    // blkif has no FUA bit: a forced-unit-access write is a write and then a flush.
    if (opts?.fua && this.features.flush) await this.flush();
  }

  flush(): Promise<void> {
    if (this.state === 'connected' && !this.features.flush) return Promise.resolve();
    return this.submit((op) => [new Part(PartKind.Flush, 0, 0, null, 0, false, op)]);
  }

  discard(sector: number, count: number, opts?: { secure?: boolean }): Promise<void> {
    if (this.state === 'connected') {
      if (!this.features.discard) return Promise.reject(new DiskError('EOPNOTSUPP', `${this.opts.name}: backend offers no discard`));
      if (opts?.secure && !this.features.secureDiscard) return Promise.reject(new DiskError('EOPNOTSUPP', `${this.opts.name}: backend offers no secure discard`));
      if (!sectorRangeValid(sector, count, this.sectors)) return Promise.reject(new DiskError('EINVAL', `discard [${sector}, +${count}) outside ${this.sectors} sectors`));
    }
    if (count === 0) return Promise.resolve();
    return this.submit((op) => [new Part(PartKind.Discard, sector, count, null, 0, opts?.secure ?? false, op)]);
  }

  private rw(kind: PartKind, sector: number, buf: Uint8Array): Promise<void> {
    if (buf.length % 512 !== 0) return Promise.reject(new DiskError('EINVAL', `buffer of ${buf.length} bytes is not a multiple of 512`));
    const count = buf.length / 512;
    if (this.state === 'connected' && !sectorRangeValid(sector, count, this.sectors)) {
      return Promise.reject(new DiskError('EINVAL', `[${sector}, +${count}) outside ${this.sectors} sectors`));
    }
    if (count === 0) return Promise.resolve();
    return this.submit((op) => {
      const per = this.maxSegs * 8;
      const parts: Part[] = [];
      for (let s = 0; s < count; s += per) parts.push(new Part(kind, sector + s, Math.min(per, count - s), buf, s * 512, false, op));
      return parts;
    });
  }

  private submit(make: (op: UserOp) => Part[]): Promise<void> {
    if (this.state === 'closed') return Promise.reject(new DiskError('ESHUTDOWN', `blkfront ${this.opts.name} closed`));
    return new Promise<void>((resolve, reject) => {
      const op = new UserOp(resolve, reject);
      const parts = make(op);
      op.remaining = parts.length;
      for (const p of parts) {
        p.seq = this.seq++;
        this.pending.push(p);
      }
      this.kick();
    });
  }

  /** Issues waiting parts in order while some queue has a free slot and enough pool pages. */
  private kick(): void {
    if (this.state !== 'connected') return;
    const nq = this.queues.length;
    while (this.pendingHead < this.pending.length) {
      const part = this.pending[this.pendingHead];
      let pages = FrontQueue.pagesFor(part);
      if (pages > this.maxSegs) {
        // A replay sized for a backend that allowed more segments than this one.
        this.splitHead(part);
        pages = FrontQueue.pagesFor(part);
      }
      let chosen: FrontQueue | null = null;
      for (let k = 0; k < nq; k++) {
        const q = this.queues[(this.rr + k) % nq];
        if (q.canIssue(pages)) {
          chosen = q;
          this.rr = (this.rr + k + 1) % nq;
          break;
        }
      }
      if (chosen === null) break;
      this.pendingHead++;
      chosen.issue(part);
    }
    if (this.pendingHead > 1024 && this.pendingHead * 2 > this.pending.length) {
      this.pending = this.pending.slice(this.pendingHead);
      this.pendingHead = 0;
    }
    if (!this.pushScheduled) {
      // Requests issued in this turn (e.g. all commands of one NBD read) go out with one push.
      this.pushScheduled = true;
      queueMicrotask(this.pushBound);
    }
  }

  private splitHead(part: Part): void {
    const per = this.maxSegs * 8;
    const rest = new Part(part.kind, part.sector + per, part.count - per, part.buf, part.bufOff + per * 512, part.secure, part.op);
    rest.seq = part.seq;
    part.count = per;
    part.op.remaining++;
    this.pending.splice(this.pendingHead + 1, 0, rest);
  }

  private pushAll(): void {
    this.pushScheduled = false;
    for (const q of this.queues) q.push();
  }

  private onQueueFault(q: FrontQueue, reason: string): void {
    const why = `backend dom misbehaved on a queue: ${reason}`;
    this.env.log(`blkfront ${this.opts.name}: ${why}`);
    this.fault = why;
    for (const l of this.faultListeners) l(why);
    void q;
  }
}
