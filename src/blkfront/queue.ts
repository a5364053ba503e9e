// One blkfront queue: a ring, an event channel, a grant pool and a shadow per ring slot saying
// what each outstanding request id is. Responses come from a domain we do not trust: an id we did
// not issue, an operation that does not match, or an impossible rsp_prod stops the queue (the
// device then keeps those requests for replay) instead of completing anybody's I/O wrongly.
import {
  BLKIF_OP_DISCARD, BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_INDIRECT, BLKIF_OP_READ, BLKIF_OP_WRITE, BLKIF_OP_WRITE_BARRIER,
  BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_RING, BLKIF_RSP_EOPNOTSUPP, BLKIF_RSP_OKAY, BLKIF_SEGMENT_SIZE,
  blkifOpName, blkifResponse, newBlkifResponse, writeBlkifDiscard, writeBlkifIndirect, writeBlkifIndirectGref,
  writeBlkifRw, writeBlkifSegment,
} from '../abi/blkif.js';
import { XEN_PAGE_SIZE } from '../abi/sring.js';
import { FrontRing } from '../ring/front.js';
import { RingFaultError } from '../ring/sring.js';
import { DiskError } from '../blkif/disk.js';
import type { FrontendServices } from '../domain/services.js';
import { GrantPool } from './pool.js';
import { PartKind, type Part } from './part.js';

const SECTOR = 512;
const SECTORS_PER_PAGE = 8;

export interface FrontQueueConfig {
  backendDomid: number;
  handle: number;
  ringPageOrder: number;
  poolPages: number;
  /** segments per request: 11, or the negotiated indirect maximum */
  maxSegs: number;
  /** operation used for flush: FLUSH_DISKCACHE or WRITE_BARRIER */
  flushOp: number;
}

/**
 * Indirect descriptor pages per queue. With the 1024-page data pool this keeps a queue's grants
 * at 1056, Linux blkback's persistent-grant cap, so every one of them stays mapped.
 */
export const INDIRECT_PAGES = 32;

class Shadow {
  part: Part | null = null;
  ringOp = 0;
  npages = 0;
  /** index of the indirect page this request uses, or -1 */
  indirect = -1;
  readonly pages: Int32Array;
  constructor(maxSegs: number) {
    this.pages = new Int32Array(maxSegs);
  }
}

export class FrontQueue {
  readonly ring: FrontRing;
  readonly ringRefs: number[] = [];
  port = -1;
  /** why this queue stopped (the backend misbehaved), or null */
  fault: string | null = null;
  readonly pool: GrantPool;
  private readonly ringGfn: number;
  private readonly shadows: Shadow[] = [];
  private readonly freeIds: number[] = [];
  /** a few pages for indirect descriptors, shared by the requests that need one */
  private readonly indirectGfns: number[] = [];
  private readonly indirectFree: number[] = [];
  private readonly indirectRefs: number[] = [];
  private readonly indirectViews: DataView[] = [];
  private readonly rsp = newBlkifResponse();
  private dirty = false;

  constructor(
    private readonly env: FrontendServices,
    private readonly cfg: FrontQueueConfig,
    private readonly onComplete: (part: Part, err: DiskError | null) => void,
    private readonly onFault: (q: FrontQueue, reason: string) => void,
    /** after a batch of completions: freed slots and pages can take waiting requests */
    private readonly onPolled: () => void,
  ) {
    const pages = 1 << cfg.ringPageOrder;
    this.ringGfn = env.frames.allocContiguous(pages);
    const view = env.frames.view(this.ringGfn, pages);
    this.ring = FrontRing.init(view.buffer as ArrayBuffer, BLKIF_RING, { byteOffset: view.byteOffset, byteLength: view.byteLength });
    for (let i = 0; i < pages; i++) this.ringRefs.push(env.grants.grantAccess(cfg.backendDomid, this.ringGfn + i, false));
    for (let i = 0; i < this.ring.size; i++) {
      this.shadows.push(new Shadow(cfg.maxSegs));
      this.freeIds.push(this.ring.size - 1 - i);
    }
    if (cfg.maxSegs > BLKIF_MAX_SEGMENTS_PER_REQUEST) {
      for (let i = 0; i < INDIRECT_PAGES; i++) {
        this.indirectFree.push(i);
        const gfn = env.frames.alloc();
        this.indirectGfns.push(gfn);
        this.indirectRefs.push(env.grants.grantAccess(cfg.backendDomid, gfn, false));
        const v = env.frames.view(gfn);
        this.indirectViews.push(new DataView(v.buffer, v.byteOffset, v.byteLength));
      }
    }
    this.pool = new GrantPool(env, cfg.backendDomid, cfg.poolPages);
  }

  async bind(): Promise<number> {
    this.port = await this.env.evtchn.allocUnbound(this.cfg.backendDomid);
    this.env.evtchn.on(this.port, () => this.poll());
    return this.port;
  }

  /** pages a part needs from the pool */
  static pagesFor(part: Part): number {
    return part.kind === PartKind.Read || part.kind === PartKind.Write ? Math.ceil(part.count / SECTORS_PER_PAGE) : 0;
  }

  canIssue(pages: number): boolean {
    return (
      this.fault === null && this.freeIds.length > 0 && this.pool.free >= pages &&
      (pages <= BLKIF_MAX_SEGMENTS_PER_REQUEST || this.indirectFree.length > 0)
    );
  }

  get inFlight(): number {
    return this.ring.size - this.freeIds.length;
  }

  /** Puts `part` on the ring (visible at the next push). The caller checked canIssue. */
  issue(part: Part): void {
    const id = this.freeIds.pop()!;
    const sh = this.shadows[id];
    sh.part = part;
    const view = this.ring.view;
    const off = this.ring.produceRequest();
    const h = this.cfg.handle;
    switch (part.kind) {
      case PartKind.Flush:
        sh.ringOp = this.cfg.flushOp;
        sh.npages = 0;
        writeBlkifRw(view, off, this.cfg.flushOp, 0, h, id, 0);
        break;
      case PartKind.Discard:
        sh.ringOp = BLKIF_OP_DISCARD;
        sh.npages = 0;
        writeBlkifDiscard(view, off, part.secure ? 1 : 0, h, id, part.sector, part.count);
        break;
      default: {
        const op = part.kind === PartKind.Read ? BLKIF_OP_READ : BLKIF_OP_WRITE;
        sh.ringOp = op;
        const npages = Math.ceil(part.count / SECTORS_PER_PAGE);
        sh.npages = npages;
        const pool = this.pool;
        const buf = part.buf!;
        let src = part.bufOff;
        let left = part.count * SECTOR;
        for (let i = 0; i < npages; i++) {
          const p = pool.take();
          sh.pages[i] = p;
          if (op === BLKIF_OP_WRITE) {
            const n = left < XEN_PAGE_SIZE ? left : XEN_PAGE_SIZE;
            pool.pages[p].set(buf.subarray(src, src + n));
            src += n;
            left -= n;
          }
        }
        const lastSect = (part.count - 1) % SECTORS_PER_PAGE;
        if (npages <= BLKIF_MAX_SEGMENTS_PER_REQUEST) {
          writeBlkifRw(view, off, op, npages, h, id, part.sector);
          for (let i = 0; i < npages; i++) writeBlkifSegment(view, off, i, pool.refs[sh.pages[i]], 0, i === npages - 1 ? lastSect : 7);
        } else {
          const k = this.indirectFree.pop()!;
          sh.indirect = k;
          const ind = this.indirectViews[k];
          for (let i = 0, o = 0; i < npages; i++, o += BLKIF_SEGMENT_SIZE) {
            ind.setUint32(o, pool.refs[sh.pages[i]], true);
            ind.setUint32(o + 4, i === npages - 1 ? lastSect << 8 : 7 << 8, true);
          }
          writeBlkifIndirect(view, off, op, npages, h, id, part.sector);
          writeBlkifIndirectGref(view, off, 0, this.indirectRefs[k]);
        }
      }
    }
    this.dirty = true;
  }

  /** Publishes what issue() wrote; one event for the batch, only if the backend asked for it. */
  push(): void {
    if (!this.dirty || this.fault !== null) return;
    this.dirty = false;
    if (this.ring.pushRequestsAndCheckNotify()) this.env.evtchn.notify(this.port);
  }

  /** Takes every response the backend published. */
  poll(): void {
    if (this.fault !== null) return;
    const ring = this.ring;
    try {
      for (;;) {
        let n = ring.unconsumedResponses();
        while (n-- > 0) {
          const r = blkifResponse.read(ring.consumeResponse(), 0, this.rsp);
          if (!this.complete(r.idLo, r.idHi, r.operation, r.status)) return;
        }
        if (!ring.finalCheckForResponses()) break;
      }
    } catch (e) {
      if (e instanceof RingFaultError) return this.stop(e.message);
      throw e;
    }
    this.onPolled();
  }

  private complete(idLo: number, idHi: number, operation: number, status: number): boolean {
    if (idHi !== 0 || idLo >= this.shadows.length || this.shadows[idLo].part === null) {
      this.stop(`response for id ${idHi ? `${idHi}:` : ''}${idLo}, which is not outstanding`);
      return false;
    }
    const sh = this.shadows[idLo];
    const indirect = sh.npages > BLKIF_MAX_SEGMENTS_PER_REQUEST;
    if (operation !== sh.ringOp && !(indirect && operation === BLKIF_OP_INDIRECT)) {
      this.stop(`response for id ${idLo} says operation ${blkifOpName(operation)}, request was ${blkifOpName(sh.ringOp)}`);
      return false;
    }
    const part = sh.part!;
    sh.part = null;
    let err: DiskError | null = null;
    if (status === BLKIF_RSP_OKAY) {
      if (sh.ringOp === BLKIF_OP_READ) {
        const pool = this.pool;
        const buf = part.buf!;
        let dst = part.bufOff;
        let left = part.count * SECTOR;
        for (let i = 0; i < sh.npages; i++) {
          const n = left < XEN_PAGE_SIZE ? left : XEN_PAGE_SIZE;
          const page = pool.pages[sh.pages[i]];
          buf.set(n === XEN_PAGE_SIZE ? page : page.subarray(0, n), dst);
          dst += n;
          left -= n;
        }
      }
    } else if (status === BLKIF_RSP_EOPNOTSUPP) {
      err = new DiskError('EOPNOTSUPP', `backend does not support ${blkifOpName(sh.ringOp)}`);
    } else {
      err = new DiskError('EIO', `backend answered ${blkifOpName(sh.ringOp)} of sector ${part.sector} with status ${status}`);
    }
    for (let i = 0; i < sh.npages; i++) this.pool.give(sh.pages[i]);
    sh.npages = 0;
    if (sh.indirect >= 0) {
      this.indirectFree.push(sh.indirect);
      sh.indirect = -1;
    }
    this.freeIds.push(idLo);
    this.onComplete(part, err);
    return true;
  }

  private stop(reason: string): void {
    if (this.fault !== null) return;
    this.fault = reason;
    this.onFault(this, reason);
  }

  /** Parts still waiting for a response, in issue order (for replay), and forgets them. */
  takeOutstanding(): Part[] {
    const out: Part[] = [];
    for (const sh of this.shadows) {
      if (sh.part !== null) out.push(sh.part);
      sh.part = null;
      sh.npages = 0;
      sh.indirect = -1;
    }
    return out.sort((a, b) => a.seq - b.seq);
  }

  /** Closes the event channel and revokes every grant; returns how many frames were leaked. */
  async release(): Promise<number> {
    this.fault ??= 'released';
    if (this.port >= 0) await this.env.evtchn.close(this.port).catch(() => undefined);
    this.port = -1;
    let leaked = this.pool.release();
    const pages = 1 << this.cfg.ringPageOrder;
    let ringFree = true;
    for (const ref of this.ringRefs) if (!this.env.grants.endAccess(ref)) ringFree = false;
    if (ringFree) for (let i = 0; i < pages; i++) this.env.frames.release(this.ringGfn + i);
    else leaked += pages;
    for (let i = 0; i < this.indirectRefs.length; i++) {
      if (this.env.grants.endAccess(this.indirectRefs[i])) this.env.frames.release(this.indirectGfns[i]);
      else leaked++;
    }
    return leaked;
  }
}

export const FLUSH_OPS = { flush: BLKIF_OP_FLUSH_DISKCACHE, barrier: BLKIF_OP_WRITE_BARRIER } as const;
