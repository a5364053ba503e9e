// One blkif queue: its ring, its event channel and the requests in flight on it. The frontend is
// hostile: every request is copied out of the ring once (BackRing does that), decoded into a
// preallocated request and checked field by field before any of it is acted on. A request that
// fails a check is answered with BLKIF_RSP_ERROR or BLKIF_RSP_EOPNOTSUPP; a ring whose req_prod
// overflows is halted and the vbd told why.
import {
  BLKIF_DISCARD_SECURE, BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_OP_DISCARD, BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_INDIRECT,
  BLKIF_OP_READ, BLKIF_OP_WRITE, BLKIF_OP_WRITE_BARRIER, BLKIF_RSP_EOPNOTSUPP, BLKIF_RSP_ERROR, BLKIF_RSP_OKAY,
  BLKIF_SEGS_PER_INDIRECT_FRAME, BLKIF_SEGMENT_SIZE, blkifOpName, blkifRequest, newBlkifRequest, writeBlkifResponse,
} from '../abi/blkif.js';
import type { BackRing } from '../ring/back.js';
import { RingFaultError } from '../ring/sring.js';
import { isDmaBlockDevice, type BlockDevice, type DmaBlockDevice } from '../blkdev/device.js';
import type { BlkbackFeatures } from '../blkif/features.js';
import { sectorRangeValid, segmentSectors } from '../blkif/validate.js';
import type { BlkbackServices } from '../domain/services.js';
import { MAP_BATCH } from '../grant/mapper.js';
import { PersistentGrants } from './persistent.js';
import { pageOf, type GrantPage } from './grant-page.js';
import { BlkbackRequest } from './request.js';

const PAGE = 4096;
const SECTOR = 512;
/** log lines per queue before we only count (a hostile frontend must not flood the log) */
const LOG_BUDGET = 50;

export interface BlkbackQueueStats {
  requests: number;
  errors: number;
  unsupported: number;
  notifications: number;
  events: number;
  persistentGrants: number;
  transientMaps: number;
  /** data the medium's device moved straight to or from the frontend's pages (device_map) */
  dmaBytes: number;
  /** data of a DMA-capable medium that went through its driver's bounce buffers instead */
  bounceBytes: number;
}

export interface BlkbackQueueConfig {
  name: string;
  frontendDomid: number;
  /** disk size in 512-byte sectors */
  sectors: number;
  readonly: boolean;
  features: BlkbackFeatures;
  persistent: boolean;
  maxPersistentGrants: number;
}

export class BlkbackQueue {
  readonly stats: BlkbackQueueStats = {
    requests: 0, errors: 0, unsupported: 0, notifications: 0, events: 0, persistentGrants: 0, transientMaps: 0, dmaBytes: 0, bounceBytes: 0,
  };
  halted: string | null = null;
  private readonly free: BlkbackRequest[] = [];
  private readonly scratch = newBlkifRequest();
  private readonly why = { reason: '' };
  private readonly grants: PersistentGrants | null;
  /** the medium, when it DMAs by bus address: grants are then device_mapped as well */
  private readonly dma: DmaBlockDevice | null;
  private readonly maxSegs: number;
  private servicing = false;
  private pushScheduled = false;
  private responded = false;
  /** a WRITE_BARRIER waiting for the requests before it to finish */
  private barrierWaiting: BlkbackRequest | null = null;
  /** a WRITE_BARRIER executing: nothing after it is consumed until it is done */
  private barrierActive: BlkbackRequest | null = null;
  private logged = 0;
  private closing = false;
  /** the device was lost with requests outstanding: their grants stay mapped for good */
  private lost = false;
  private idleWaiters: (() => void)[] = [];
  private readonly pushBound = () => this.push();

  constructor(
    private readonly env: BlkbackServices,
    private readonly ring: BackRing,
    readonly port: number,
    private readonly dev: BlockDevice,
    private readonly cfg: BlkbackQueueConfig,
    private readonly onHalt: (reason: string) => void,
  ) {
    this.maxSegs = Math.max(BLKIF_MAX_SEGMENTS_PER_REQUEST, cfg.features.maxIndirectSegments);
    this.dma = isDmaBlockDevice(dev) ? dev : null;
    this.grants = cfg.persistent ? new PersistentGrants(env.mapper, cfg.frontendDomid, cfg.maxPersistentGrants, this.dma !== null) : null;
    for (let i = 0; i < ring.size; i++) {
      const r = new BlkbackRequest(this.maxSegs);
      r.ioDone = (err) => this.ioDone(r, err);
      r.flushDone = (err) => this.flushDone(r, err);
      this.free.push(r);
    }
  }

  get inFlight(): number {
    return this.ring.size - this.free.length;
  }

  /** The frontend's event: it published requests (or is checking we are alive). */
  onEvent(): void {
    this.stats.events++;
    this.service();
  }

  /** Consume what the frontend published; called on every event and after completions. */
  service(): void {
    if (this.halted !== null || this.servicing || this.closing) return;
    this.servicing = true;
    try {
      for (;;) {
        if (this.barrierWaiting !== null || this.barrierActive !== null) break;
        const n = this.ring.unconsumedRequests();
        if (n === 0) {
          // Nothing left: ask for an event at the next request, and look once more.
          if (this.ring.finalCheckForRequests()) continue;
          break;
        }
        let i = 0;
        for (; i < n && this.free.length > 0 && this.barrierWaiting === null && this.barrierActive === null; i++) {
          const r = this.free.pop()!;
          this.decode(r, this.ring.consumeRequest());
          this.stats.requests++;
          this.dispatch(r);
        }
        if (i < n) break; // out of request objects or behind a barrier: completions re-run us
      }
    } catch (e) {
      if (e instanceof RingFaultError) this.halt(e.message);
      else throw e;
    } finally {
      this.servicing = false;
    }
    if (this.responded) this.push();
  }

  /** Stops the queue for good (ring fault, or the vbd halted for another queue's fault). */
  halt(reason: string): void {
    if (this.halted !== null) return;
    this.halted = reason;
    this.onHalt(reason);
  }

  /**
   * The medium was lost: requests it holds will never complete, and it may still write their
   * pages. Those grants (and every persistent one, which they may use) stay mapped.
   */
  deviceLost(why: string): void {
    this.lost = true;
    this.halt(why);
    for (const w of this.idleWaiters.splice(0)) w();
  }

  /** Waits for in-flight requests, then unmaps every persistent grant; a lost device's are kept. */
  async close(): Promise<void> {
    this.closing = true;
    if (this.inFlight > 0 && !this.lost) await new Promise<void>((r) => this.idleWaiters.push(r));
    if (this.lost) {
      this.note(`device lost: ${this.inFlight} request(s) left outstanding, ${this.grants?.size ?? 0} persistent grant(s) and their transient maps stay mapped`);
      return;
    }
    await this.grants?.releaseAll();
  }

  private decode(r: BlkbackRequest, view: DataView): void {
    const s = blkifRequest.read(view, 0, this.scratch);
    r.rawOp = s.operation;
    r.idLo = s.idLo;
    r.idHi = s.idHi;
    r.sector = s.sectorNumber;
    r.nseg = s.nrSegments;
    r.bytes = 0;
    r.flushAfter = false;
    r.status = BLKIF_RSP_OKAY;
    r.transient.length = 0;
    if (s.operation === BLKIF_OP_INDIRECT) {
      r.indirect = true;
      r.op = s.indirectOp;
      r.indirectGrefs.set(s.indirectGrefs);
    } else {
      r.indirect = false;
      r.op = s.operation;
      if (s.operation === BLKIF_OP_DISCARD) {
        r.discardFlag = s.discardFlag;
        r.nrSectors = s.nrSectors;
      } else {
        const m = r.nseg < BLKIF_MAX_SEGMENTS_PER_REQUEST ? r.nseg : BLKIF_MAX_SEGMENTS_PER_REQUEST;
        for (let i = 0; i < m; i++) {
          r.segGref[i] = s.segGref[i];
          r.segFirst[i] = s.segFirstSect[i];
          r.segLast[i] = s.segLastSect[i];
        }
      }
    }
  }

  private dispatch(r: BlkbackRequest): void {
    const f = this.cfg.features;
    if (r.indirect) {
      if (f.maxIndirectSegments === 0) return this.reject(r, BLKIF_RSP_EOPNOTSUPP, 'indirect request, but feature-max-indirect-segments is not offered');
      if (r.op !== BLKIF_OP_READ && r.op !== BLKIF_OP_WRITE) return this.reject(r, BLKIF_RSP_ERROR, `indirect request with indirect_op ${r.op} (only read and write)`);
      if (r.nseg === 0 || r.nseg > f.maxIndirectSegments) return this.reject(r, BLKIF_RSP_ERROR, `indirect request with ${r.nseg} segments (1..${f.maxIndirectSegments})`);
      return this.fetchIndirect(r);
    }
    switch (r.op) {
      case BLKIF_OP_READ:
      case BLKIF_OP_WRITE:
        if (r.nseg === 0) return this.reject(r, BLKIF_RSP_ERROR, `${blkifOpName(r.op)} with 0 segments (only flush may have none)`);
        return this.rw(r);
      case BLKIF_OP_FLUSH_DISKCACHE:
        if (!f.flushCache) return this.reject(r, BLKIF_RSP_EOPNOTSUPP, 'flush-diskcache not offered');
        return this.flushClass(r);
      case BLKIF_OP_WRITE_BARRIER:
        if (!f.barrier) return this.reject(r, BLKIF_RSP_EOPNOTSUPP, 'write-barrier not offered');
        // Everything before the barrier completes before it starts; nothing after it is consumed
        // until it is done.
        if (this.inFlight > 1) {
          this.barrierWaiting = r;
          return;
        }
        this.barrierActive = r;
        return this.flushClass(r);
      case BLKIF_OP_DISCARD:
        return this.discard(r);
      default:
        return this.reject(r, BLKIF_RSP_EOPNOTSUPP, `unknown operation ${r.rawOp}`);
    }
  }

  private flushClass(r: BlkbackRequest): void {
    if (r.nseg === 0) {
      if (this.cfg.readonly) return this.reject(r, BLKIF_RSP_ERROR, `${blkifOpName(r.op)} on a read-only vbd`);
      this.dev.flush(r.flushDone);
      return;
    }
    // With data it is a write that must be durable before it is acknowledged.
    r.flushAfter = true;
    this.rw(r);
  }

  private discard(r: BlkbackRequest): void {
    const d = this.cfg.features.discard;
    if (d === null) return this.reject(r, BLKIF_RSP_EOPNOTSUPP, 'discard not offered');
    if ((r.discardFlag & BLKIF_DISCARD_SECURE) !== 0 && !d.secure) return this.reject(r, BLKIF_RSP_EOPNOTSUPP, 'secure discard not offered');
    if (this.cfg.readonly) return this.reject(r, BLKIF_RSP_ERROR, 'discard on a read-only vbd');
    if (!sectorRangeValid(r.sector, r.nrSectors, this.cfg.sectors)) {
      return this.reject(r, BLKIF_RSP_ERROR, `discard of sectors [${r.sector}, +${r.nrSectors}) outside the disk's ${this.cfg.sectors}`);
    }
    this.dev.discard(r.sector * SECTOR, r.nrSectors * SECTOR, r.flushDone);
  }

  /** The segment list of an indirect request lives in granted pages: map them, copy it out once. */
  private fetchIndirect(r: BlkbackRequest): void {
    const npages = Math.ceil(r.nseg / BLKIF_SEGS_PER_INDIRECT_FRAME);
    let missing = false;
    for (let p = 0; p < npages; p++) {
      const page = this.grants?.get(r.indirectGrefs[p]);
      r.pages[p] = page ?? null;
      if (page === undefined) missing = true;
    }
    if (!missing) {
      this.copyIndirectSegments(r, npages);
      return this.rw(r);
    }
    const refs = Array.from(r.indirectGrefs.subarray(0, npages));
    this.mapMissing(r, refs, false).then(
      (pages) => {
        if (pages === null) return;
        for (let p = 0; p < npages; p++) r.pages[p] ??= pages.get(r.indirectGrefs[p]) ?? null;
        this.copyIndirectSegments(r, npages);
        this.rw(r);
      },
      (e: unknown) => this.fail(r, `indirect pages: ${(e as Error).message}`),
    );
  }

  private copyIndirectSegments(r: BlkbackRequest, npages: number): void {
    let seg = 0;
    for (let p = 0; p < npages; p++) {
      const b = r.pages[p]!.bytes;
      const n = Math.min(BLKIF_SEGS_PER_INDIRECT_FRAME, r.nseg - seg);
      for (let i = 0, o = 0; i < n; i++, o += BLKIF_SEGMENT_SIZE, seg++) {
        r.segGref[seg] = (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;
        r.segFirst[seg] = b[o + 4];
        r.segLast[seg] = b[o + 5];
      }
    }
  }

  /** READ / WRITE (and the data part of flush-class ops): validate, find the pages, transfer. */
  private rw(r: BlkbackRequest): void {
    if (!r.indirect && r.nseg > BLKIF_MAX_SEGMENTS_PER_REQUEST) {
      return this.reject(r, BLKIF_RSP_ERROR, `${r.nseg} segments (at most ${BLKIF_MAX_SEGMENTS_PER_REQUEST} without indirect descriptors)`);
    }
    const writes = r.op !== BLKIF_OP_READ;
    if (writes && this.cfg.readonly) return this.reject(r, BLKIF_RSP_ERROR, `${blkifOpName(r.op)} to a read-only vbd`);
    const sectors = segmentSectors(r.segFirst, r.segLast, r.nseg, this.why);
    if (sectors < 0) return this.reject(r, BLKIF_RSP_ERROR, this.why.reason);
    if (!sectorRangeValid(r.sector, sectors, this.cfg.sectors)) {
      return this.reject(r, BLKIF_RSP_ERROR, `sectors [${r.sector}, +${sectors}) outside the disk's ${this.cfg.sectors}`);
    }
    r.bytes = sectors * SECTOR;
    let missing = false;
    const g = this.grants;
    for (let i = 0; i < r.nseg; i++) {
      const page = g === null ? undefined : g.get(r.segGref[i]);
      if (page === undefined) {
        missing = true;
        r.pages[i] = null;
      } else r.pages[i] = page;
    }
    if (!missing) return this.transfer(r);
    const refs: number[] = [];
    for (let i = 0; i < r.nseg; i++) if (r.pages[i] === null) refs.push(r.segGref[i]);
    this.mapMissing(r, refs, !writes).then(
      (pages) => {
        if (pages === null) return;
        for (let i = 0; i < r.nseg; i++) r.pages[i] ??= pages.get(r.segGref[i]) ?? null;
        this.transfer(r);
      },
      (e: unknown) => this.fail(r, (e as Error).message),
    );
  }

  /**
   * Maps refs not in the persistent cache: into the cache while it has room, otherwise for this
   * request only. Resolves null when the request was already answered (a grant did not map).
   */
  private async mapMissing(r: BlkbackRequest, refs: number[], writable: boolean): Promise<Map<number, GrantPage> | null> {
    const unique = [...new Set(refs)];
    const out = new Map<number, GrantPage>();
    const g = this.grants;
    try {
      if (g !== null && g.room >= unique.length) {
        await g.add(unique);
        this.stats.persistentGrants = g.size;
        for (const ref of unique) out.set(ref, g.get(ref)!);
        return out;
      }
      for (let i = 0; i < unique.length; i += MAP_BATCH) {
        const chunk = unique.slice(i, i + MAP_BATCH);
        // A write only reads the frontend's pages: map them read-only, as Xen's blkback does;
        // their IOMMU entries are then read-only too, so the device cannot write them either.
        const m = await this.env.mapper.map(this.cfg.frontendDomid, chunk, { readonly: !writable, deviceMap: this.dma !== null });
        this.stats.transientMaps++;
        r.transient.push(m);
        chunk.forEach((ref, j) => out.set(ref, pageOf(m, j)));
      }
      return out;
    } catch (e) {
      this.respondAfterUnmap(r, BLKIF_RSP_ERROR, `grant of dom${this.cfg.frontendDomid} did not map: ${(e as Error).message}`);
      return null;
    }
  }

  private transfer(r: BlkbackRequest): void {
    const pos = r.sector * SECTOR;
    const dma = this.dma;
    if (dma !== null) {
      // the device says whether it can address the list as it is when it starts the transfer
      const started = this.dmaList(r) && (r.op === BLKIF_OP_READ ? dma.readDma(r.dma, pos, r.ioDone) : dma.writeDma(r.dma, pos, r.ioDone));
      if (started) {
        this.stats.dmaBytes += r.bytes;
        return;
      }
      this.stats.bounceBytes += r.bytes;
    }
    if (r.nseg === 1) {
      const off = r.segStart(0);
      if (r.op === BLKIF_OP_READ) this.dev.read(r.pages[0]!.bytes, off, r.bytes, pos, r.ioDone);
      else this.dev.write(r.pages[0]!.bytes, off, r.bytes, pos, r.ioDone);
      return;
    }
    // Several pages: one preadv/pwritev straight between the mapped pages and the medium. A
    // persistently mapped page is its own vector entry, so full-page segments allocate nothing.
    const iov = r.iov;
    iov.length = r.nseg;
    for (let i = 0; i < r.nseg; i++) {
      const from = r.segStart(i);
      const to = r.segEnd(i);
      const page = r.pages[i]!.bytes;
      iov[i] = from === 0 && to === PAGE ? page : page.subarray(from, to);
    }
    if (r.op === BLKIF_OP_READ) this.dev.readv(iov, pos, r.ioDone);
    else this.dev.writev(iov, pos, r.ioDone);
  }

  /** Fills the request's DmaList from its segments; false when a page has no bus address. */
  private dmaList(r: BlkbackRequest): boolean {
    const l = r.dma;
    l.clear();
    for (let i = 0; i < r.nseg; i++) {
      const bus = r.pages[i]!.busAddr;
      if (bus < 0) return false;
      const from = r.segStart(i);
      l.push(bus + from, r.segEnd(i) - from);
    }
    return true;
  }

  private ioDone(r: BlkbackRequest, err: Error | null): void {
    if (err) return this.fail(r, `${blkifOpName(r.op)} of [${r.sector}, +${r.bytes / SECTOR}) failed: ${err.message}`);
    if (r.flushAfter) {
      r.flushAfter = false;
      this.dev.flush(r.flushDone);
      return;
    }
    this.complete(r, BLKIF_RSP_OKAY);
  }

  private flushDone(r: BlkbackRequest, err: Error | null): void {
    if (err) return this.fail(r, `${blkifOpName(r.op)} failed: ${err.message}`);
    this.complete(r, BLKIF_RSP_OKAY);
  }

  private fail(r: BlkbackRequest, why: string): void {
    this.respondAfterUnmap(r, BLKIF_RSP_ERROR, why);
  }

  private reject(r: BlkbackRequest, status: number, why: string): void {
    this.respondAfterUnmap(r, status, why);
  }

  private respondAfterUnmap(r: BlkbackRequest, status: number, why: string): void {
    if (status === BLKIF_RSP_EOPNOTSUPP) this.stats.unsupported++;
    else this.stats.errors++;
    this.note(`id ${r.idHi ? `${r.idHi}:` : ''}${r.idLo} ${blkifOpName(r.rawOp)}: ${why}`);
    this.complete(r, status);
  }

  /** Undo per-request mappings first: the frontend may revoke its grants once it sees the response. */
  private complete(r: BlkbackRequest, status: number): void {
    if (r.transient.length === 0) return this.respond(r, status);
    const maps = r.transient.splice(0);
    Promise.all(maps.map((m) => this.env.mapper.unmap(m))).then(
      () => this.respond(r, status),
      (e: unknown) => {
        this.note(`unmap failed: ${(e as Error).message}`);
        this.respond(r, status);
      },
    );
  }

  private respond(r: BlkbackRequest, status: number): void {
    for (let i = 0; i < r.nseg && i < this.maxSegs; i++) r.pages[i] = null;
    r.iov.length = 0;
    if (this.halted === null) {
      // An unknown op is echoed as sent; an indirect request is answered with its indirect_op.
      const op = r.indirect ? r.op : r.rawOp;
      writeBlkifResponse(this.ring.view, this.ring.produceResponse(), r.idLo, r.idHi, op, status);
      this.responded = true;
    }
    this.free.push(r);
    if (r === this.barrierActive) this.barrierActive = null;
    if (this.barrierWaiting !== null && this.inFlight === 1) {
      const b = this.barrierWaiting;
      this.barrierWaiting = null;
      this.barrierActive = b;
      this.flushClass(b);
    }
    if (!this.servicing && !this.pushScheduled) {
      // Batch: every completion of this loop turn goes out with one push and at most one event.
      this.pushScheduled = true;
      setImmediate(this.pushBound);
    }
    if (this.inFlight === 0 && this.idleWaiters.length > 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  private push(): void {
    this.pushScheduled = false;
    if (this.responded && this.halted === null) {
      this.responded = false;
      if (this.ring.pushResponsesAndCheckNotify()) {
        this.stats.notifications++;
        this.env.evtchn.notify(this.port);
      }
    }
    this.service();
  }

  private note(line: string): void {
    this.logged++;
    if (this.logged <= LOG_BUDGET) this.env.log(`blkback ${this.cfg.name}: ${line}`);
    else if (this.logged % 1000 === 0) this.env.log(`blkback ${this.cfg.name}: ${this.logged} bad requests so far (logging every 1000th)`);
  }
}
