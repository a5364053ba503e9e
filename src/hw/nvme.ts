// The emulated NVMe-like block controller. Its queues live in the owning domain's memory at
// IOVAs the driver programs into the register page; every fetch, PRP list read, data transfer and
// completion post is a DMA through the remapping unit with the controller's source id. The medium
// is a raw image file: reads and writes move straight between the file and the translated memory
// (preadv/pwritev into the frames, no copy of ours) on libuv's threadpool, never on hv's event
// loop. A command's pages are translated before its first byte moves and the views stay pinned
// until it ends. The reads and writes one doorbell reveals are batched: consecutive commands of
// one direction on adjacent blocks become one preadv/pwritev (one threadpool job), which is what
// a large blkif request cut into MDTS-sized commands looks like. A write completes once its bytes
// reached the file, a flush starts its fdatasync only once every write and discard fetched before
// it has. A completion whose controller was reset, disabled or replaced (new owner) since the
// command was fetched is dropped.
//
// Clearing CC.EN is a controller reset, and as on hardware CSTS.RDY falls to 0 only once the
// controller has stopped touching host memory: transfers already on the threadpool cannot be
// recalled, so RDY stays 1 until the last of them returned. A host must wait for RDY=0 before it
// reuses (or lets anyone unmap) memory it gave the controller, and before it enables it again; an
// enable that comes earlier takes effect only once RDY fell.
//
// The same holds across models on one medium. A model built for a new owner (pci_assign, a reset,
// a driver domain restarted) shares the medium with the one it replaces, whose writes may still be
// on the threadpool; the pool runs jobs in no order, so one of those could land over the new
// owner's data on the same blocks. The hosting code therefore says (mediumFree) whether an earlier
// model still has a transfer in flight, and an enable waits, RDY 0, until none has.
//
// The register page is shared with a domain that may be hostile: every value is read once into a
// local, range-checked, and a bad one stops the controller (CSTS.CFS) or fails the command, never
// hv. A DMA fault fails just that command with "data transfer error" and the fault in DW0; a
// fault on the queues themselves is fatal to the controller, as on hardware. An exception in the
// model itself stops this controller alone (CSTS.CFS, reason INTERNAL), never the process hosting
// every other domain's devices.
//
// One process serves every device, so no controller may hold its event loop or its threadpool:
// a doorbell fetches at most CMD_BUDGET commands before the rest waits for the next turn, a
// deallocate punches at most PUNCH_CALLS holes a turn (and no later command is fetched until it
// is done, so a later write to the range lands after the hole and a flush after both), and at
// most MEDIUM_JOBS of a controller's transfers sit on the threadpool at once, the rest queued here.

import { fdatasync, read, readv, write, writev } from 'node:fs';
import { DmaEngine, faultWord, recordFault, PageViews, type DmaMemory, type PciFunctionOptions } from './dma.js';
import { native } from '../native/index.js';
import {
  CQE, NVME_BAR_SIZE, NVME_CC_EN, NVME_CFS, NVME_CQE_SIZE, NVME_CSTS_CFS, NVME_CSTS_RDY, NVME_DSM_AD,
  NVME_DSM_RANGE_SIZE, NVME_MAX_QUEUE_ENTRIES, NVME_MDTS_PAGES, NVME_OP, NVME_REG as R,
  NVME_SC, NVME_SQE_SIZE, NVME_VS, SQE, statusField,
} from '../abi/nvme.js';
import { RegisterPage } from './register-page.js';

const PAGE = 4096;
const TWO32 = 4294967296;
const LBA_SHIFT = 9;
/** Commands in flight at once. */
const MAX_INFLIGHT = 64;
const K_READ = 1;
const K_WRITE = 2;
const K_FLUSH = 3;
const K_DISCARD = 4;
/** iovec entries of one preadv/pwritev (Linux's IOV_MAX) */
const IOV_MAX = 1024;
/** Commands one doorbell fetches before yielding the event loop to every other device. */
const CMD_BUDGET = 64;
/** fallocate(PUNCH_HOLE) calls of a deallocate per event-loop turn, each at most PUNCH_CHUNK. */
const PUNCH_CALLS = 16;
const PUNCH_CHUNK = 64 << 20;
/**
 * Medium transfers of one controller queued on the shared threadpool at once. As deep as a
 * guest's ring, so one controller keeps the pool's threads busy (fewer, and threads idle while
 * completions travel back through the event loop: a cap of 4 cost 4x at QD32), but bounded, so
 * a controller cannot stack hundreds of jobs ahead of its neighbours in libuv's FIFO.
 */
export const MEDIUM_JOBS = 32;
/** An enable held this long for an earlier model's transfers gets a log line (and still waits). */
export const ENABLE_HELD_LOG_MS = 10_000;

/** One in-flight command: preallocated with its segment list and callback, reused. */
interface Slot {
  index: number;
  kind: number;
  cid: number;
  gen: number;
  /** write / discard order, for flush barriers; flush: writes below this must finish first */
  seq: number;
  waiting: boolean;
  len: number;
  dma: DmaEngine;
  seg: number;
  off: number;
  left: number;
  pos: number;
  ranges: Uint8Array | null;
  rangesDv: DataView | null;
  nr: number;
  range: number;
  /** byte offset of this command's data within the batch carrying it */
  batchAt: number;
  done: (err: Error | null, n?: number) => void;
  /** puts the slot's next medium operation on the threadpool (a queued job) */
  run: () => void;
}

/** One vectored medium transfer carrying the data of one or more commands (adjacent blocks). */
interface Batch {
  kind: number;
  pos: number;
  len: number;
  readonly iov: Uint8Array[];
  readonly members: Slot[];
  done: (err: Error | null, n?: number) => void;
  run: () => void;
}
const ZERO_CHUNK = 256 * 1024;

type MediumDone = (err: Error | null, n: number) => void;

/** The medium's system calls: node:fs's, unless a test holds transfers back to watch a reset. */
export interface MediumIo {
  readv(fd: number, iov: Uint8Array[], pos: number, done: MediumDone): void;
  writev(fd: number, iov: Uint8Array[], pos: number, done: MediumDone): void;
  read(fd: number, buf: Uint8Array, off: number, len: number, pos: number, done: MediumDone): void;
  write(fd: number, buf: Uint8Array, off: number, len: number, pos: number, done: MediumDone): void;
  fdatasync(fd: number, done: (err: Error | null) => void): void;
}

const fsIo: MediumIo = { readv, writev, read, write, fdatasync };

export interface NvmeMedium {
  fd: number;
  /** bytes; a whole number of 512-byte blocks is exposed */
  size: number;
  readonly?: boolean;
  /** medium transfers in flight from any model on this medium; the owner closes fd only at 0 */
  busy?: number;
  /** called when busy drops to 0 (the owner waits to close the fd) */
  onIdle?: (() => void) | null;
  /** defaults to node:fs */
  io?: MediumIo;
}

export interface NvmeModelOptions extends PciFunctionOptions {
  medium: NvmeMedium;
  /**
   * False while a model this one replaces still has a transfer on the medium in flight: until it
   * turns true an enable waits with CSTS.RDY 0 (kick the model when it does). Default: always free.
   */
  mediumFree?: () => boolean;
  /** medium transfers on the threadpool at once, 1..64; default MEDIUM_JOBS */
  mediumJobs?: number;
}

export interface NvmeStats {
  commands: number;
  errors: number;
  dmaFaults: number;
  reads: number;
  writes: number;
  flushes: number;
  discards: number;
  bytesRead: number;
  bytesWritten: number;
  /** preadv/pwritev jobs the reads and writes took (fewer than commands when batched) */
  transfers: number;
}

export class NvmeModel {
  readonly stats: NvmeStats = { commands: 0, errors: 0, dmaFaults: 0, reads: 0, writes: 0, flushes: 0, discards: 0, bytesRead: 0, bytesWritten: 0, transfers: 0 };
  private readonly regs: RegisterPage;
  private readonly ctl: DmaEngine;
  private readonly sqe = new Uint8Array(NVME_SQE_SIZE);
  private readonly sqeDv = new DataView(this.sqe.buffer);
  private readonly cqe = new Uint8Array(NVME_CQE_SIZE);
  private readonly cqeDv = new DataView(this.cqe.buffer);
  private readonly prpList = new Uint8Array(PAGE);
  private readonly prpDv = new DataView(this.prpList.buffer);
  private readonly nsze: number;
  private readonly log: (msg: string) => void;

  // queue state: device-private, never read back from the shared page
  private enabled = false;
  private fatal = false;
  private sqBase = 0;
  private cqBase = 0;
  private sqSize = 0;
  private cqSize = 0;
  private sqHead = 0;
  private cqTail = 0;
  private cqHead = 0;
  private phase = 1;
  private inflight = 0;
  /** bumped on reset and disable: completions of older commands are dropped */
  private generation = 0;
  private readonly slots: Slot[] = [];
  private readonly freeSlots: Slot[] = [];
  private writeSeq = 0;
  /** reads and writes this doorbell fetched, translated and pinned, not yet on the medium */
  private readonly fetched: Slot[] = [];
  private readonly batches: Batch[] = [];
  /** commands of ending batches, a stack: a completion that kicks may end another batch inside */
  private readonly ending: Slot[] = [];
  private readonly io: MediumIo;
  private readonly pageViews = new PageViews();
  private zeroes: Uint8Array | null = null;
  private kicking = false;
  private closed = false;
  /** CC.EN was cleared with transfers still running: CSTS.RDY stays 1 until they all returned */
  private draining = false;
  /** a deallocate in progress: no later command is fetched until it is done */
  private discarding: Slot | null = null;
  private readonly punchMore = () => this.punchStep();
  private rekickPending = false;
  private readonly rekick = () => {
    this.rekickPending = false;
    this.kick();
  };
  /** medium jobs waiting for one of this controller's MEDIUM_JOBS places, a ring */
  private readonly jobs: ((() => void) | null)[] = new Array<(() => void) | null>(2 * MAX_INFLIGHT).fill(null);
  private jobHead = 0;
  private jobCount = 0;
  private jobsRunning = 0;
  private readonly mediumJobs: number;
  private idle: (() => void) | null = null;
  private readonly mediumFree: () => boolean;
  /** armed while an enable waits for an earlier model's transfers: says so once it took long */
  private heldTimer: ReturnType<typeof setTimeout> | null = null;
  private readonly heldTooLong = () => {
    this.heldTimer = null;
    if (this.closed || this.enabled || this.mediumFree()) return;
    // Waiting on is the only safe course: an enable now would let an old write land over the new
    // owner's data. The owner's driver sees RDY 0 for as long as the medium keeps them.
    this.log(
      `nvme: enable held ${ENABLE_HELD_LOG_MS / 1000} s: the previous owner's transfers on this medium have not returned; ` +
        'CSTS.RDY stays 0 until they do (a slow or stuck medium)',
    );
  };

  constructor(private readonly o: NvmeModelOptions) {
    if (o.bar.byteLength < NVME_BAR_SIZE) throw new RangeError('NVMe register page must be 4 KiB');
    this.regs = new RegisterPage(o.bar, NVME_BAR_SIZE);
    this.ctl = new DmaEngine(o.unit, o.mem, o.sid, 4);
    this.nsze = Math.floor(o.medium.size / 512);
    this.log = o.log ?? (() => {});
    this.io = o.medium.io ?? fsIo;
    this.mediumFree = o.mediumFree ?? (() => true);
    this.mediumJobs = o.mediumJobs ?? MEDIUM_JOBS;
    if (!(this.mediumJobs >= 1 && this.mediumJobs <= MAX_INFLIGHT)) throw new RangeError(`mediumJobs must be 1..${MAX_INFLIGHT}`);
    for (let i = 0; i < MAX_INFLIGHT; i++) {
      const slot: Slot = {
        index: i, kind: 0, cid: 0, gen: 0, seq: 0, waiting: false, len: 0,
        dma: new DmaEngine(o.unit, o.mem, o.sid, NVME_MDTS_PAGES + 2),
        seg: 0, off: 0, left: 0, pos: 0, ranges: null, rangesDv: null, nr: 0, range: 0, batchAt: 0,
        done: (err, n) => {
          this.jobsRunning--;
          this.progress(slot, err, n ?? 0);
          this.startJobs();
        },
        run: () => this.runSlot(slot),
      };
      this.slots.push(slot);
      this.freeSlots.push(slot);
      const b: Batch = {
        kind: 0, pos: 0, len: 0, iov: [], members: [],
        done: (err, n) => {
          this.jobsRunning--;
          this.batchDone(b, err, n ?? 0);
          this.startJobs();
        },
        run: () => this.runBatch(b),
      };
      this.batches.push(b);
    }
    this.reset();
  }

  /** Function-level reset: queues forgotten, registers back to power-on values. */
  reset(): void {
    this.generation++;
    this.enabled = false;
    this.fatal = false;
    // a function-level reset is hv's: it keeps the memory of transfers still running pinned itself
    this.draining = false;
    this.sqHead = this.cqTail = this.cqHead = 0;
    this.phase = 1;
    this.regs.clear();
    this.regs.put(R.CAP, (NVME_MAX_QUEUE_ENTRIES - 1) | (1 << 16));
    this.regs.put(R.VS, NVME_VS);
    this.regs.put(R.NSZE, this.nsze >>> 0);
    this.regs.put(R.NSZE + 4, Math.floor(this.nsze / TWO32));
    this.regs.put(R.LBADS, LBA_SHIFT);
    this.regs.put(R.MDTS, NVME_MDTS_PAGES);
  }

  /** Medium transfers of this model still running (stale ones included). */
  get busySlots(): number {
    return MAX_INFLIGHT - this.freeSlots.length;
  }

  /** The model is being replaced (reset, new owner): late completions touch nothing. */
  close(): void {
    this.closed = true;
    this.generation++;
    this.enabled = false;
    this.stopHeldTimer();
  }

  private stopHeldTimer(): void {
    if (this.heldTimer === null) return;
    clearTimeout(this.heldTimer);
    this.heldTimer = null;
  }

  /**
   * `cb` runs once none of this model's transfers is in flight any more (busySlots 0): at once
   * when none is. Only then may its register page tell the old owner the device is gone.
   */
  whenIdle(cb: () => void): void {
    if (this.busySlots === 0) cb();
    else this.idle = cb;
  }

  /** The model itself failed (not the driver's doing): this controller stops, nothing else does. */
  failInternal(why: string): void {
    if (this.closed) return this.log(`nvme: internal error after the controller was replaced: ${why}`);
    if (this.fatal) return this.log(`nvme: internal error on a stopped controller: ${why}`);
    this.die(NVME_CFS.INTERNAL, `internal error: ${why}`);
  }

  get ready(): boolean {
    return this.enabled && !this.fatal;
  }

  /** The doorbell: the driver changed CC or a doorbell register. */
  kick(): void {
    try {
      this.fetch();
    } catch (e) {
      this.failInternal((e as Error).message);
    }
  }

  private fetch(): void {
    if (this.kicking || this.closed) return;
    this.kicking = true;
    try {
      this.checkEnable();
      if (!this.enabled || this.fatal || !this.o.busMaster()) return;
      const cqh = this.regs.get(R.CQ0HDBL) >>> 0;
      if (cqh >= this.cqSize) return this.die(NVME_CFS.BAD_CQ_DOORBELL, `CQ head doorbell ${cqh} outside a ${this.cqSize}-entry queue`);
      this.cqHead = cqh;
      const sqt = this.regs.get(R.SQ0TDBL) >>> 0;
      if (sqt >= this.sqSize) return this.die(NVME_CFS.BAD_SQ_DOORBELL, `SQ tail doorbell ${sqt} outside a ${this.sqSize}-entry queue`);
      let posted = false;
      let budget = CMD_BUDGET;
      while (this.sqHead !== sqt && !this.fatal && this.enabled && this.discarding === null) {
        // a command is fetched only when its completion is sure to have a slot
        const used = (this.cqTail - this.cqHead + this.cqSize) % this.cqSize;
        if (used + this.inflight >= this.cqSize - 1 || this.inflight >= MAX_INFLIGHT || this.freeSlots.length === 0) break;
        if (budget-- === 0) {
          // the rest next turn: the other devices' doorbells and hv's requests go first
          if (!this.rekickPending) {
            this.rekickPending = true;
            setImmediate(this.rekick);
          }
          break;
        }
        if (!this.ctl.read(this.sqBase + this.sqHead * NVME_SQE_SIZE, this.sqe, NVME_SQE_SIZE)) {
          this.noteFault(this.ctl);
          return this.die(NVME_CFS.SQ_FETCH_FAULT, `fetching SQ entry ${this.sqHead} faulted`);
        }
        this.sqHead = (this.sqHead + 1) % this.sqSize;
        if (this.execute()) posted = true;
      }
      if (posted) this.o.raiseIrq();
    } finally {
      try {
        this.submitFetched();
      } finally {
        this.kicking = false;
      }
    }
  }

  /** Puts the fetched reads and writes on the medium: adjacent ones of a direction in one job. */
  private submitFetched(): void {
    const q = this.fetched;
    let i = 0;
    while (i < q.length) {
      const first = q[i];
      const b = this.batches.pop();
      if (b === undefined) {
        // cannot happen while a batch goes back to the pool before its commands end (one batch
        // per slot); should it, the command moves segment by segment rather than stall
        this.log('nvme: no free batch: a command moves unbatched');
        i++;
        this.issue(first);
        continue;
      }
      b.kind = first.kind;
      b.pos = first.pos;
      b.len = 0;
      while (i < q.length) {
        const s = q[i];
        if (s.kind !== b.kind || s.pos !== b.pos + b.len || (b.members.length > 0 && b.iov.length + s.dma.segCount + Math.ceil(s.len / PAGE) > IOV_MAX)) break;
        s.batchAt = b.len;
        b.len += s.len;
        b.members.push(s);
        this.pageViews.append(s.dma, b.iov);
        i++;
      }
      this.stats.transfers++;
      this.enqueue(b.run);
    }
    q.length = 0;
  }

  private runBatch(b: Batch): void {
    // commands of a reset or replaced controller move nothing more: the reset drains sooner
    if (!this.current(b.members[0])) return this.batchDone(b, null, b.len);
    this.jobsRunning++;
    try {
      if (b.kind === K_READ) this.io.readv(this.o.medium.fd, b.iov, b.pos, b.done);
      else this.io.writev(this.o.medium.fd, b.iov, b.pos, b.done);
    } catch (e) {
      // argument validation in fs (a closed fd, a detached view): fail the commands, not hv
      this.jobsRunning--;
      this.batchDone(b, e as Error, 0);
    }
  }

  /** A medium job goes on the threadpool now, or once one of this controller's places frees. */
  private enqueue(job: () => void): void {
    if (this.jobsRunning < this.mediumJobs && this.jobCount === 0) return job();
    this.jobs[(this.jobHead + this.jobCount) % this.jobs.length] = job;
    this.jobCount++;
  }

  private startJobs(): void {
    while (this.jobCount > 0 && this.jobsRunning < this.mediumJobs) {
      const job = this.jobs[this.jobHead] as () => void;
      this.jobs[this.jobHead] = null;
      this.jobHead = (this.jobHead + 1) % this.jobs.length;
      this.jobCount--;
      job();
    }
  }

  /** A batch's transfer returned `n` bytes: its commands end, or go on one by one after a short one. */
  private batchDone(b: Batch, err: Error | null, n: number): void {
    // The batch goes back first: ending a command kicks, and the commands that kick fetches
    // into the freed slots need batches of their own.
    const q = this.ending;
    const base = q.length;
    for (let k = 0; k < b.members.length; k++) q.push(b.members[k]);
    const end = q.length;
    b.members.length = 0;
    b.iov.length = 0;
    this.batches.push(b);
    try {
      for (let k = base; k < end; k++) {
        const s = q[k];
        const got = n - s.batchAt;
        if (err !== null) this.finish(s, this.failCode(s), err);
        else if (got >= s.len || !this.current(s)) this.finish(s, NVME_SC.SUCCESS, null);
        else this.resume(s, got > 0 ? got : 0);
      }
    } catch (e) {
      this.failInternal(`completion failed: ${(e as Error).message}`);
    } finally {
      q.length = base;
    }
  }

  /** After a short vectored transfer: the rest of a command segment by segment (rare). */
  private resume(slot: Slot, got: number): void {
    const d = slot.dma;
    let seg = 0;
    let skip = got;
    while (skip >= d.segLen[seg]) skip -= d.segLen[seg++];
    slot.seg = seg;
    slot.off = d.segOff[seg] + skip;
    slot.left = d.segLen[seg] - skip;
    slot.pos += got;
    this.issue(slot);
  }

  private checkEnable(): void {
    const cc = this.regs.get(R.CC);
    const want = (cc & NVME_CC_EN) !== 0;
    if (want === this.enabled) return;
    // the host enabled before RDY fell: the controller comes up once the reset drained
    if (want && this.draining) return;
    // an earlier model's transfer may still land on the medium: up once the hosting code kicks
    if (want && !this.mediumFree()) {
      if (this.heldTimer === null) {
        this.heldTimer = setTimeout(this.heldTooLong, ENABLE_HELD_LOG_MS);
        // hw lives for its requests, not for this note
        this.heldTimer.unref();
      }
      return;
    }
    this.stopHeldTimer();
    this.generation++;
    // a controller reset clears the doorbells: stale values from before must not run commands
    this.regs.put(R.SQ0TDBL, 0);
    this.regs.put(R.CQ0HDBL, 0);
    if (!want) {
      this.enabled = false;
      this.fatal = false;
      this.inflight = 0;
      // RDY (and CFS) stay as they were until the last transfer into host memory returned
      if (this.busySlots > 0) this.draining = true;
      else this.regs.put(R.CSTS, 0);
      return;
    }
    const aqa = this.regs.get(R.AQA) >>> 0;
    const sqs = (aqa & 0xfff) + 1;
    const cqs = ((aqa >>> 16) & 0xfff) + 1;
    const sq = this.regs.get64(R.ASQ);
    const cq = this.regs.get64(R.ACQ);
    this.enabled = true;
    this.fatal = false;
    this.sqHead = this.cqTail = this.cqHead = 0;
    this.phase = 1;
    this.inflight = 0;
    if (sqs < 2 || cqs < 2 || sqs > NVME_MAX_QUEUE_ENTRIES || cqs > NVME_MAX_QUEUE_ENTRIES) {
      return this.die(NVME_CFS.BAD_QUEUE_CONFIG, `queue sizes SQ ${sqs} / CQ ${cqs} outside 2..${NVME_MAX_QUEUE_ENTRIES}`);
    }
    if (sq % PAGE !== 0 || cq % PAGE !== 0) return this.die(NVME_CFS.BAD_QUEUE_CONFIG, 'queue base addresses must be 4 KiB aligned');
    this.sqSize = sqs;
    this.cqSize = cqs;
    this.sqBase = sq;
    this.cqBase = cq;
    this.regs.put(R.CSTS, NVME_CSTS_RDY);
  }

  /** Runs the fetched command; true when its completion was posted now. */
  private execute(): boolean {
    this.stats.commands++;
    const dv = this.sqeDv;
    const cdw0 = dv.getUint32(SQE.CDW0, true);
    const op = cdw0 & 0xff;
    const cid = cdw0 >>> 16;
    const nsid = dv.getUint32(SQE.NSID, true);
    if (op === NVME_OP.FLUSH) {
      if (nsid !== 1 && nsid !== 0xffffffff) return this.complete(cid, NVME_SC.INVALID_NAMESPACE, 0);
      return this.flush(cid);
    }
    if (op !== NVME_OP.READ && op !== NVME_OP.WRITE && op !== NVME_OP.DSM) return this.complete(cid, NVME_SC.INVALID_OPCODE, 0);
    if (nsid !== 1) return this.complete(cid, NVME_SC.INVALID_NAMESPACE, 0);
    if (op === NVME_OP.DSM) return this.discard(cid);
    const slba = dv.getUint32(SQE.CDW10, true) + dv.getUint32(SQE.CDW11, true) * TWO32;
    const nlb = (dv.getUint32(SQE.CDW12, true) & 0xffff) + 1;
    const len = nlb << LBA_SHIFT;
    if (len > NVME_MDTS_PAGES * PAGE) return this.complete(cid, NVME_SC.INVALID_FIELD, 0);
    if (!(slba + nlb <= this.nsze)) return this.complete(cid, NVME_SC.LBA_OUT_OF_RANGE, 0);
    const isRead = op === NVME_OP.READ;
    if (!isRead && this.o.medium.readonly) return this.complete(cid, NVME_SC.WRITE_FAULT, 0);
    const slot = this.freeSlots.pop();
    if (slot === undefined) return this.complete(cid, NVME_SC.INTERNAL, 0);
    // every page translated now, before a byte moves (a read from the medium is a DMA write)
    const sc = this.mapPrps(slot.dma, len, isRead);
    if (sc !== NVME_SC.SUCCESS) {
      this.freeSlots.push(slot);
      return this.complete(cid, sc, sc === NVME_SC.DATA_TRANSFER_ERROR ? faultWord(slot.dma.fault) : 0);
    }
    this.begin(slot, isRead ? K_READ : K_WRITE, cid, len);
    slot.seg = 0;
    slot.off = slot.dma.segOff[0];
    slot.left = slot.dma.segLen[0];
    slot.pos = slba * 512;
    this.pinSegments(slot, true);
    this.fetched.push(slot);
    return false;
  }

  /** A slot starts a command of the current controller generation. */
  private begin(slot: Slot, kind: number, cid: number, len: number): void {
    slot.kind = kind;
    slot.cid = cid;
    slot.gen = this.generation;
    slot.len = len;
    slot.waiting = false;
    slot.seq = kind === K_FLUSH ? this.writeSeq : kind === K_READ ? 0 : this.writeSeq++;
    this.inflight++;
    this.o.medium.busy = (this.o.medium.busy ?? 0) + 1;
  }

  private pinSegments(slot: Slot, pin: boolean): void {
    const mem = this.o.mem;
    const d = slot.dma;
    for (let s = 0; s < d.segCount; s++) {
      const v = d.segView[s] as Uint8Array;
      if (pin) mem.pin?.(v, d.segOff[s], d.segLen[s]);
      else {
        mem.unpin?.(v, d.segOff[s], d.segLen[s]);
        d.segView[s] = null;
      }
    }
    if (!pin) d.reset();
  }

  /** Whether a slot's command still belongs to this controller incarnation. */
  private current(slot: Slot): boolean {
    return !this.closed && slot.gen === this.generation;
  }

  /** Starts the next medium operation of a slot on the threadpool (or queues it). */
  private issue(slot: Slot): void {
    this.enqueue(slot.run);
  }

  private runSlot(slot: Slot): void {
    // a reset or a new owner since: move nothing more (a flush still runs: it moves no data)
    if (slot.kind !== K_FLUSH && !this.current(slot)) return this.finish(slot, NVME_SC.SUCCESS, null);
    const fd = this.o.medium.fd;
    this.jobsRunning++;
    try {
      if (slot.kind === K_READ || slot.kind === K_WRITE) {
        const v = slot.dma.segView[slot.seg] as Uint8Array;
        if (slot.kind === K_READ) this.io.read(fd, v, slot.off, slot.left, slot.pos, slot.done);
        else this.io.write(fd, v, slot.off, slot.left, slot.pos, slot.done);
      } else if (slot.kind === K_DISCARD) {
        const n = slot.left < ZERO_CHUNK ? slot.left : ZERO_CHUNK;
        this.io.write(fd, this.zeroes as Uint8Array, 0, n, slot.pos, slot.done);
      } else {
        this.io.fdatasync(fd, slot.done);
      }
    } catch (e) {
      // argument validation in fs (a closed fd, a detached view): fail the command, not hv
      this.jobsRunning--;
      this.finish(slot, this.failCode(slot), e as Error);
    }
  }

  private failCode(slot: Slot): number {
    return slot.kind === K_READ ? NVME_SC.UNRECOVERED_READ : NVME_SC.WRITE_FAULT;
  }

  /** A medium operation of `slot` returned. */
  private progress(slot: Slot, err: Error | null, k: number): void {
    try {
      if (err !== null) return this.finish(slot, this.failCode(slot), err);
      if (slot.kind === K_FLUSH) return this.finish(slot, NVME_SC.SUCCESS, null);
      // a reset or a new owner since: move nothing more
      if (!this.current(slot)) return this.finish(slot, NVME_SC.SUCCESS, null);
      if (k <= 0) return this.finish(slot, this.failCode(slot), null);
      slot.off += k;
      slot.left -= k;
      slot.pos += k;
      if (slot.left > 0) return this.issue(slot);
      if (slot.kind === K_DISCARD) {
        if (!this.nextRange(slot)) return this.finish(slot, NVME_SC.SUCCESS, null);
        return this.issue(slot);
      }
      if (++slot.seg === slot.dma.segCount) return this.finish(slot, NVME_SC.SUCCESS, null);
      slot.off = slot.dma.segOff[slot.seg];
      slot.left = slot.dma.segLen[slot.seg];
      this.issue(slot);
    } catch (e) {
      this.failInternal(`completion failed: ${(e as Error).message}`);
    }
  }

  /** Ends a slot's command: completion posted if the controller that fetched it still runs. */
  private finish(slot: Slot, code: number, err: Error | null): void {
    const kind = slot.kind;
    if (kind === K_READ || kind === K_WRITE) this.pinSegments(slot, false);
    slot.kind = 0;
    this.freeSlots.push(slot);
    if (this.draining && this.freeSlots.length === MAX_INFLIGHT && !this.closed) {
      // the reset is complete: nothing of this controller touches host memory any more
      this.draining = false;
      this.regs.put(R.CSTS, 0);
    }
    if (slot === this.discarding) this.discarding = null;
    const m = this.o.medium;
    m.busy = (m.busy ?? 1) - 1;
    if (m.busy <= 0 && m.onIdle) {
      const f = m.onIdle;
      m.onIdle = null;
      f();
    }
    if (this.idle !== null && this.freeSlots.length === MAX_INFLIGHT) {
      const f = this.idle;
      this.idle = null;
      f();
    }
    if (kind === K_WRITE || kind === K_DISCARD) this.releaseFlushes();
    if (this.closed) return;
    if (slot.gen === this.generation) {
      this.inflight--;
      if (err) this.log(`nvme: medium ${kind === K_READ ? 'read' : kind === K_FLUSH ? 'fdatasync' : 'write'} failed: ${err.message}`);
      if (code === NVME_SC.SUCCESS) {
        if (kind === K_READ) {
          this.stats.reads++;
          this.stats.bytesRead += slot.len;
        } else if (kind === K_WRITE) {
          this.stats.writes++;
          this.stats.bytesWritten += slot.len;
        } else if (kind === K_FLUSH) this.stats.flushes++;
        else this.stats.discards++;
      }
      if (this.complete(slot.cid, code, 0)) this.o.raiseIrq();
    }
    // a full completion queue or a full slot pool may have held commands back
    this.kick();
  }

  /** Flushes waiting for earlier writes start their fdatasync once those have all finished. */
  private releaseFlushes(): void {
    let oldest = Infinity;
    for (const s of this.slots) if ((s.kind === K_WRITE || s.kind === K_DISCARD) && s.seq < oldest) oldest = s.seq;
    for (const s of this.slots) {
      if (s.kind === K_FLUSH && s.waiting && s.seq <= oldest) {
        s.waiting = false;
        this.issue(s);
      }
    }
  }

  /**
   * Walks PRP1/PRP2 (and PRP lists, chained by their last entry) for `len` bytes into the data
   * engine's segments, translating every page for a device read or write.
   */
  private mapPrps(d: DmaEngine, len: number, deviceWrites: boolean): number {
    const dv = this.sqeDv;
    const prp1 = dv.getUint32(SQE.PRP1, true) + dv.getUint32(SQE.PRP1 + 4, true) * TWO32;
    const prp2 = dv.getUint32(SQE.PRP2, true) + dv.getUint32(SQE.PRP2 + 4, true) * TWO32;
    if (prp1 % 4 !== 0) return NVME_SC.PRP_OFFSET_INVALID;
    d.reset();
    const first = Math.min(len, PAGE - (prp1 % PAGE));
    if (!d.translate(prp1, first, deviceWrites)) return this.dmaFailed(d);
    let left = len - first;
    if (left === 0) return NVME_SC.SUCCESS;
    if (left <= PAGE) {
      if (prp2 % PAGE !== 0) return NVME_SC.PRP_OFFSET_INVALID;
      return d.translate(prp2, left, deviceWrites) ? NVME_SC.SUCCESS : this.dmaFailed(d);
    }
    // PRP list: entries fill the rest of the list's page; the last one chains when more follow
    if (prp2 % 8 !== 0) return NVME_SC.PRP_OFFSET_INVALID;
    let list = prp2;
    for (let hops = 0; left > 0; hops++) {
      if (hops > NVME_MDTS_PAGES) return NVME_SC.INVALID_FIELD;
      const room = (PAGE - (list % PAGE)) / 8;
      const needed = Math.ceil(left / PAGE);
      const take = needed <= room ? needed : room; // when more are needed the last slot is a chain pointer
      const bytes = take * 8;
      if (!this.ctl.read(list, this.prpList, bytes)) return this.dmaFailed(this.ctl);
      const entries = needed <= room ? take : take - 1;
      for (let i = 0; i < entries; i++) {
        const e = this.prpDv.getUint32(i * 8, true) + this.prpDv.getUint32(i * 8 + 4, true) * TWO32;
        if (e % PAGE !== 0) return NVME_SC.PRP_OFFSET_INVALID;
        const n = left < PAGE ? left : PAGE;
        if (!d.translate(e, n, deviceWrites)) return this.dmaFailed(d);
        left -= n;
      }
      if (left > 0) {
        list = this.prpDv.getUint32(entries * 8, true) + this.prpDv.getUint32(entries * 8 + 4, true) * TWO32;
        if (list % 8 !== 0) return NVME_SC.PRP_OFFSET_INVALID;
      }
    }
    return NVME_SC.SUCCESS;
  }

  private dmaFailed(e: DmaEngine): number {
    this.noteFault(e);
    return NVME_SC.DATA_TRANSFER_ERROR;
  }

  private noteFault(e: DmaEngine): void {
    this.stats.dmaFaults++;
    recordFault(this.regs, e);
  }

  /** Flush: fdatasync, started once every write and discard fetched before it has finished. */
  private flush(cid: number): boolean {
    const slot = this.freeSlots.pop();
    if (slot === undefined) return this.complete(cid, NVME_SC.INTERNAL, 0);
    this.begin(slot, K_FLUSH, cid, 0);
    for (const s of this.slots) {
      if ((s.kind === K_WRITE || s.kind === K_DISCARD) && s.seq < slot.seq) {
        slot.waiting = true;
        return false;
      }
    }
    this.issue(slot);
    return false;
  }

  /** Dataset management with the deallocate attribute: the ranges read back as zeroes. */
  private discard(cid: number): boolean {
    const dv = this.sqeDv;
    const nr = (dv.getUint32(SQE.CDW10, true) & 0xff) + 1;
    if ((dv.getUint32(SQE.CDW11, true) & NVME_DSM_AD) === 0) return this.complete(cid, NVME_SC.SUCCESS, 0);
    if (this.o.medium.readonly) return this.complete(cid, NVME_SC.WRITE_FAULT, 0);
    const slot = this.freeSlots.pop();
    if (slot === undefined) return this.complete(cid, NVME_SC.INTERNAL, 0);
    const bytes = nr * NVME_DSM_RANGE_SIZE;
    // the range list is data, addressed by PRPs like any other transfer; copied out now
    const sc = this.mapPrps(slot.dma, bytes, false);
    if (sc !== NVME_SC.SUCCESS) {
      this.freeSlots.push(slot);
      return this.complete(cid, sc, sc === NVME_SC.DATA_TRANSFER_ERROR ? faultWord(slot.dma.fault) : 0);
    }
    if (slot.ranges === null) {
      slot.ranges = new Uint8Array(PAGE);
      slot.rangesDv = new DataView(slot.ranges.buffer);
    }
    slot.dma.copySegments(slot.ranges, 0, false);
    slot.dma.reset();
    const rdv = slot.rangesDv as DataView;
    for (let i = 0; i < nr; i++) {
      const nlb = rdv.getUint32(i * 16 + 4, true);
      const slba = rdv.getUint32(i * 16 + 8, true) + rdv.getUint32(i * 16 + 12, true) * TWO32;
      if (!(slba + nlb <= this.nsze)) {
        this.freeSlots.push(slot);
        return this.complete(cid, NVME_SC.LBA_OUT_OF_RANGE, 0);
      }
    }
    // Deallocate: punch holes (the ranges then read as zeroes and free their blocks), a few a
    // turn, starting next turn; a medium that cannot punch gets zeroes written instead.
    this.begin(slot, K_DISCARD, cid, 0);
    slot.nr = nr;
    slot.range = -1;
    slot.left = 0;
    this.discarding = slot;
    setImmediate(this.punchMore);
    return false;
  }

  /** Punches the next PUNCH_CALLS pieces of the deallocate in progress. */
  private punchStep(): void {
    const slot = this.discarding;
    if (slot === null || slot.kind !== K_DISCARD) return;
    try {
      if (!this.current(slot)) return this.finish(slot, NVME_SC.SUCCESS, null);
      for (let calls = 0; calls < PUNCH_CALLS; calls++) {
        if (slot.left === 0 && !this.nextRange(slot)) return this.finish(slot, NVME_SC.SUCCESS, null);
        const n = slot.left < PUNCH_CHUNK ? slot.left : PUNCH_CHUNK;
        try {
          native.punchHole(this.o.medium.fd, slot.pos, n);
        } catch {
          // no hole punching here: the rest (from this piece on) as written zeroes, off the loop
          this.zeroes ??= new Uint8Array(ZERO_CHUNK);
          return this.issue(slot);
        }
        slot.pos += n;
        slot.left -= n;
      }
      setImmediate(this.punchMore);
    } catch (e) {
      this.failInternal(`deallocate failed: ${(e as Error).message}`);
    }
  }

  /** Moves a discard to its next non-empty range; false when none is left. */
  private nextRange(slot: Slot): boolean {
    const rdv = slot.rangesDv as DataView;
    while (++slot.range < slot.nr) {
      const i = slot.range;
      const nlb = rdv.getUint32(i * 16 + 4, true);
      if (nlb === 0) continue;
      slot.pos = (rdv.getUint32(i * 16 + 8, true) + rdv.getUint32(i * 16 + 12, true) * TWO32) * 512;
      slot.left = nlb * 512;
      return true;
    }
    return false;
  }

  /** Posts a completion; false (and the controller fatal) when the post itself faulted. */
  private complete(cid: number, code: number, dw0: number): boolean {
    if (!this.enabled || this.fatal) return false;
    if (code !== NVME_SC.SUCCESS) this.stats.errors++;
    const dv = this.cqeDv;
    dv.setUint32(CQE.DW0, dw0 >>> 0, true);
    dv.setUint32(4, 0, true);
    dv.setUint32(CQE.SQHD, this.sqHead, true); // SQ id 0 in the upper half
    dv.setUint16(CQE.CID, cid, true);
    dv.setUint16(CQE.STATUS, statusField(code) | this.phase, true);
    if (!this.ctl.write(this.cqBase + this.cqTail * NVME_CQE_SIZE, this.cqe, NVME_CQE_SIZE)) {
      this.noteFault(this.ctl);
      this.die(NVME_CFS.CQ_POST_FAULT, `posting CQ entry ${this.cqTail} faulted`);
      return false;
    }
    this.cqTail++;
    if (this.cqTail === this.cqSize) {
      this.cqTail = 0;
      this.phase ^= 1;
    }
    return true;
  }

  private die(code: number, why: string): void {
    this.fatal = true;
    this.generation++;
    this.regs.put(R.CSTS, this.regs.get(R.CSTS) | NVME_CSTS_CFS);
    this.regs.put(R.CFS_REASON, code);
    this.log(`nvme: controller fatal status: ${why}`);
    this.o.raiseIrq();
  }



}
