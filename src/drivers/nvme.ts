// The driver for the emulated NVMe controller, as a BlockDevice, so blkback sits on it exactly as
// it sits on a raw file. One queue pair in the domain's own frames; each queue slot owns a bounce
// buffer and a PRP list page. Two ways in: memory named by bus address (DmaBlockDevice: blkback's
// device_map grants) goes to the controller as PRPs and the device DMAs it in place; plain
// buffers (mapped pages the device has no address for) are copied through the slot's bounce
// buffer. Requests larger than a command are split, and requests that find no free slot wait in
// order. Pooled request records and one DataView per page keep the path allocation-free in the
// steady state (one subarray per copied chunk aside).
//
// Stopping (a fatal controller status, or close) never fails a request the controller may still
// be moving data for: the driver clears CC.EN and waits for CSTS.RDY=0, the controller's word that
// it touches no host memory any more, and only then fails what is outstanding (its callers may then
// unmap that memory). A controller that never drops RDY is lost: requests it holds stay parked,
// uncompleted, and the owner hears of it through onLost so it keeps their memory mapped.
//
// A register page that reads all-ones is a device that is gone (hw replaced or lost it, the way a
// surprise-removed PCIe device reads): hw writes it only once the controller has nothing in flight,
// so it counts as stopped, and what is outstanding fails at once instead of after the timeout.
import { BlockDeviceError, type DmaBlockDevice, type DmaList, type IoDone } from '../blkdev/device.js';
import type { Domain } from '../domain/runtime.js';
import {
  CQE, NVME_CC_EN, NVME_CQE_SIZE, NVME_CSTS_CFS, NVME_CSTS_RDY, NVME_DSM_AD, NVME_OP, NVME_REG as R, NVME_REG_REMOVED,
  NVME_SQE_SIZE, SQE, statusCode, statusText,
} from '../abi/nvme.js';
import { domainMemory, PciPort, type DevicePort, type DmaPages, type DriverMemory } from './port.js';
import { PRP_LIST_ENTRIES, PrpCursor, prpBytes } from './nvme-prp.js';

const PAGE = 4096;
const TWO32 = 4294967296;
const OP_READ = 1;
const OP_WRITE = 2;
const OP_FLUSH = 3;
const OP_DISCARD = 4;
const DISCARD_CHUNK = 1 << 30;

export interface NvmeDriverOptions {
  /** commands in flight (queue entries - 1); default 32 */
  depth?: number;
  /** pages per slot's bounce buffer: the largest command; default 16 (64 KiB) */
  slotPages?: number;
  /** how long a stopping controller may take to drop CSTS.RDY before it counts as lost; default 10 s */
  stopTimeoutMs?: number;
  /** default: stderr */
  log?: (line: string) => void;
}

interface Op {
  kind: number;
  buf: Uint8Array | null;
  off: number;
  bufs: Uint8Array[] | null;
  /** memory by bus address: the device moves it, nothing is copied */
  dma: DmaList | null;
  /** where the next command of a dma op starts */
  readonly prp: PrpCursor;
  position: number;
  length: number;
  /** bytes handed to commands so far */
  issued: number;
  pending: number;
  err: Error | null;
  done: IoDone | null;
}

interface Slot {
  mem: DmaPages;
  prpIova: number;
  prpList: DataView;
  /** the list page names the bounce buffer's pages (a dma command overwrote it otherwise) */
  listIsBounce: boolean;
  op: Op | null;
  /** byte offset of this command's data within its op */
  at: number;
  len: number;
}

export class NvmeDriver implements DmaBlockDevice {
  readonly sectorSize = 512;
  readonly physicalSectorSize = 4096;
  readonly discardSupport: { granularity: number; alignment: number; secure: boolean } | null;
  /** dmaBytes moved by the device in place; bounceBytes copied through the slots' buffers */
  readonly stats = { commands: 0, errors: 0, dmaBytes: 0, bounceBytes: 0 };
  private readonly regs: Int32Array;
  private readonly sq: DmaPages;
  private readonly cq: DmaPages;
  private readonly sqDv: DataView;
  private readonly cqDv: DataView;
  private readonly slots: Slot[] = [];
  /** every page taken from the domain, given back at close once the controller has stopped */
  private readonly owned: DmaPages[] = [];
  private readonly freeSlots: number[] = [];
  private readonly waiting: Op[] = [];
  private readonly pool: Op[] = [];
  private readonly entries: number;
  private readonly slotBytes: number;
  private readonly slotPages: number;
  /** most pages one dma command spans (the controller's MDTS, read at start) */
  private dmaPages = 1;
  /** most bytes one bounced command moves: the slot's buffer, or less when MDTS says so */
  private bounceBytes: number;
  private sqTail = 0;
  private cqHead = 0;
  private phase = 1;
  private ringPending = false;
  private dead: Error | null = null;
  private closed = false;
  /** clearing CC.EN and waiting for RDY=0, then failing what is outstanding */
  private stopping: Promise<void> | null = null;
  private closing: Promise<void> | null = null;
  /** why the controller counts as lost (it never confirmed it stopped), or null */
  private lostWhy: string | null = null;
  private readonly lostListeners: ((why: string) => void)[] = [];
  private readonly stopTimeoutMs: number;
  private readonly log: (line: string) => void;
  private readonly ringNow = () => {
    this.ringPending = false;
    Atomics.store(this.regs, R.CQ0HDBL >> 2, this.cqHead);
    Atomics.store(this.regs, R.SQ0TDBL >> 2, this.sqTail);
    this.port.ring();
  };

  constructor(
    readonly name: string,
    private readonly port: DevicePort,
    private readonly mem: DriverMemory,
    readonly size: number,
    readonly readonly: boolean,
    opts: NvmeDriverOptions = {},
  ) {
    const depth = opts.depth ?? 32;
    const slotPages = opts.slotPages ?? 16;
    if (!(depth >= 1 && depth <= 63)) throw new RangeError('NVMe depth must be 1..63 (one page of submission entries)');
    if (!(slotPages >= 1 && slotPages <= 64)) throw new RangeError('slotPages must be 1..64');
    this.entries = depth + 1;
    this.slotPages = slotPages;
    this.slotBytes = slotPages * PAGE;
    this.bounceBytes = this.slotBytes;
    this.stopTimeoutMs = opts.stopTimeoutMs ?? 10_000;
    this.log = opts.log ?? ((l) => process.stderr.write(`${l}\n`));
    this.discardSupport = readonly ? null : { granularity: 4096, alignment: 0, secure: true };
    this.regs = new Int32Array(port.bar.buffer, port.bar.byteOffset, port.bar.byteLength >> 2);
    const take = (pages: number): DmaPages => {
      const p = mem.alloc(pages);
      this.owned.push(p);
      return p;
    };
    try {
      this.sq = take(1);
      this.cq = take(1);
      for (let i = 0; i < depth; i++) {
        const m = take(slotPages);
        const list = take(1);
        const slot: Slot = {
          mem: m, prpIova: list.iova, prpList: new DataView(list.bytes.buffer, list.bytes.byteOffset, PAGE), listIsBounce: false, op: null, at: 0, len: 0,
        };
        this.bounceList(slot);
        this.slots.push(slot);
        this.freeSlots.push(i);
      }
    } catch (e) {
      // the controller has not been given any of it yet
      this.giveBack();
      throw e;
    }
    this.sqDv = new DataView(this.sq.bytes.buffer, this.sq.bytes.byteOffset, PAGE);
    this.cqDv = new DataView(this.cq.bytes.buffer, this.cq.bytes.byteOffset, PAGE);
    port.onIrq(() => this.reap());
  }

  /**
   * Programs the queues and enables the controller; resolves once it reports ready. A controller
   * that was someone else's may hold RDY at 0 for as long as the previous owner's writes to the
   * medium are still in flight (hw will not let them land over ours): that wait is logged after
   * `timeoutMs` and goes on, since failing would only leave the device to whoever retries.
   */
  async start(timeoutMs = 5000): Promise<void> {
    const put = (off: number, v: number) => Atomics.store(this.regs, off >> 2, v | 0);
    // a controller left enabled (or still draining an earlier reset) is stopped first
    if (!(await this.disable(timeoutMs))) throw new BlockDeviceError('ETIMEDOUT', `${this.name}: controller still busy ${timeoutMs} ms after it was disabled`);
    put(R.AQA, (this.entries - 1) | ((this.entries - 1) << 16));
    put(R.ASQ, this.sq.iova >>> 0);
    put(R.ASQ + 4, Math.floor(this.sq.iova / TWO32));
    put(R.ACQ, this.cq.iova >>> 0);
    put(R.ACQ + 4, Math.floor(this.cq.iova / TWO32));
    put(R.SQ0TDBL, 0);
    put(R.CQ0HDBL, 0);
    put(R.CC, NVME_CC_EN);
    this.port.ring();
    const end = Date.now() + timeoutMs;
    let told = false;
    for (;;) {
      if (this.closed) throw new BlockDeviceError('EBADF', `${this.name} was closed while waiting for the controller to become ready`);
      const csts = Atomics.load(this.regs, R.CSTS >> 2);
      if (csts === NVME_REG_REMOVED) throw new BlockDeviceError('ENODEV', `${this.name}: the controller is gone (its registers read all-ones)`);
      if ((csts & NVME_CSTS_CFS) !== 0) throw new BlockDeviceError('EIO', `${this.name}: controller failed to start (fatal status, reason ${Atomics.load(this.regs, R.CFS_REASON >> 2)})`);
      if ((csts & NVME_CSTS_RDY) !== 0) {
        // MDTS bounds every command; one list page (no chaining) bounds a dma command too
        const mdts = Atomics.load(this.regs, R.MDTS >> 2);
        if (!(mdts >= 1)) throw new BlockDeviceError('EIO', `${this.name}: controller reports MDTS ${mdts}: it cannot transfer a page`);
        this.dmaPages = Math.min(mdts, PRP_LIST_ENTRIES + 1);
        this.bounceBytes = Math.min(this.slotBytes, mdts * PAGE);
        return;
      }
      if (!told && Date.now() > end) {
        told = true;
        this.log(
          `${this.name}: controller not ready ${timeoutMs} ms after it was enabled; still waiting ` +
            "(it holds RDY at 0 while a previous owner's writes to the medium are in flight)",
        );
      }
      await new Promise((r) => setTimeout(r, told ? 50 : 2));
    }
  }

  read(buf: Uint8Array, offset: number, length: number, position: number, done: IoDone): void {
    this.submit(OP_READ, buf, offset, null, length, position, done);
  }

  write(buf: Uint8Array, offset: number, length: number, position: number, done: IoDone): void {
    if (this.readonly) return done(new BlockDeviceError('EROFS', `${this.name} is read-only`));
    this.submit(OP_WRITE, buf, offset, null, length, position, done);
  }

  readv(bufs: Uint8Array[], position: number, done: IoDone): void {
    this.submit(OP_READ, null, 0, bufs, total(bufs), position, done);
  }

  writev(bufs: Uint8Array[], position: number, done: IoDone): void {
    if (this.readonly) return done(new BlockDeviceError('EROFS', `${this.name} is read-only`));
    this.submit(OP_WRITE, null, 0, bufs, total(bufs), position, done);
  }

  readDma(list: DmaList, position: number, done: IoDone): boolean {
    const bytes = prpBytes(list);
    if (bytes < 0) return false;
    this.submit(OP_READ, null, 0, null, bytes, position, done, list);
    return true;
  }

  writeDma(list: DmaList, position: number, done: IoDone): boolean {
    const bytes = prpBytes(list);
    if (bytes < 0) return false;
    if (this.readonly) done(new BlockDeviceError('EROFS', `${this.name} is read-only`));
    else this.submit(OP_WRITE, null, 0, null, bytes, position, done, list);
    return true;
  }

  onLost(listener: (why: string) => void): void {
    this.lostListeners.push(listener);
    if (this.lostWhy !== null) listener(this.lostWhy);
  }

  /** Why the controller counts as lost, or null. */
  get lost(): string | null {
    return this.lostWhy;
  }

  /** The register page reads all-ones: the device is gone, and stopped. */
  get removed(): boolean {
    return Atomics.load(this.regs, R.CSTS >> 2) === NVME_REG_REMOVED;
  }

  flush(done: IoDone): void {
    this.submit(OP_FLUSH, null, 0, null, 0, 0, done);
  }

  discard(position: number, length: number, done: IoDone): void {
    if (this.readonly) return done(new BlockDeviceError('EROFS', `${this.name} is read-only`));
    this.submit(OP_DISCARD, null, 0, null, length, position, done);
  }

  /** Stops the controller, then fails what is outstanding (see stop); resolves either way. */
  close(): Promise<void> {
    this.closed = true;
    this.closing ??= this.stop(new BlockDeviceError('EBADF', `${this.name} is closed`)).then(() => {
      this.port.close();
      // Each open of the medium (a VM back after a migration, a guest restarted) takes its pages
      // anew, so a close must give them back. A lost controller may still write into its queues
      // and buffers: those pages stay out of use for good (its lost message says so).
      if (this.lostWhy === null) this.giveBack();
    });
    return this.closing;
  }

  /** Returns every page taken from the domain's memory. */
  private giveBack(): void {
    for (const p of this.owned.splice(0)) this.mem.free(p);
  }

  /**
   * Fails every outstanding request with `err`, but only once the controller said it stopped
   * (RDY=0): until then it may still move data into or out of their memory. When it never says
   * so it is lost: requests it holds stay outstanding for good, and the onLost listeners are told.
   */
  private stop(err: Error): Promise<void> {
    this.stopping ??= this.disable(this.stopTimeoutMs).then((stopped) => {
      if (stopped) this.failAll(err);
      else this.declareLost();
    });
    return this.stopping;
  }

  /** Clears CC.EN; true once the controller drops RDY within `timeoutMs`, or is gone. */
  private async disable(timeoutMs: number): Promise<boolean> {
    Atomics.store(this.regs, R.CC >> 2, 0);
    this.port.ring();
    const end = Date.now() + timeoutMs;
    for (;;) {
      const csts = Atomics.load(this.regs, R.CSTS >> 2);
      // all-ones has RDY set too, but hw writes it only once nothing is in flight
      if (csts === NVME_REG_REMOVED || (csts & NVME_CSTS_RDY) === 0) return true;
      if (Date.now() > end) return false;
      await new Promise((r) => setTimeout(r, 2));
    }
  }

  private declareLost(): void {
    // requests not yet handed to the controller hold no memory of its: those can still fail
    const held: Op[] = [];
    for (const s of this.slots) if (s.op !== null && !held.includes(s.op)) held.push(s.op);
    const never = this.waiting.filter((op) => !held.includes(op));
    const parked = this.waiting.filter((op) => held.includes(op));
    this.waiting.length = 0;
    this.waiting.push(...parked);
    this.lostWhy =
      `${this.name}: controller still busy ${this.stopTimeoutMs} ms after it was disabled: device lost; ` +
      `${held.length} request(s) stay outstanding and their memory must not be reused`;
    this.log(this.lostWhy);
    const err = new BlockDeviceError('EIO', this.lostWhy);
    for (const op of never) {
      op.err = err;
      this.finish(op);
    }
    for (const l of this.lostListeners) l(this.lostWhy);
  }

  private submit(kind: number, buf: Uint8Array | null, off: number, bufs: Uint8Array[] | null, length: number, position: number, done: IoDone, dma: DmaList | null = null): void {
    if (this.closed) return done(new BlockDeviceError('EBADF', `${this.name} is closed`));
    if (this.dead) return done(this.dead);
    if (kind !== OP_FLUSH && !(position >= 0 && length >= 0 && position + length <= this.size && position % 512 === 0 && length % 512 === 0)) {
      return done(new BlockDeviceError('EINVAL', `${this.name}: [${position}, +${length}) is not whole sectors inside ${this.size} bytes`));
    }
    if (length === 0 && kind !== OP_FLUSH) return done(null);
    const op = this.pool.pop() ?? newOp();
    op.kind = kind;
    op.buf = buf;
    op.off = off;
    op.bufs = bufs;
    op.dma = dma;
    op.prp.reset();
    if (kind === OP_READ || kind === OP_WRITE) {
      if (dma !== null) this.stats.dmaBytes += length;
      else this.stats.bounceBytes += length;
    }
    op.position = position;
    op.length = length;
    op.issued = 0;
    op.pending = 0;
    op.err = null;
    op.done = done;
    this.waiting.push(op);
    this.pump();
  }

  /** Hands waiting requests to free slots, in order. */
  private pump(): void {
    if (this.dead !== null || this.closed) return;
    let submitted = false;
    while (this.waiting.length > 0 && this.freeSlots.length > 0) {
      const op = this.waiting[0];
      const cid = this.freeSlots.pop() as number;
      const slot = this.slots[cid];
      let chunk: number;
      if (op.dma !== null) {
        op.prp.next(op.dma, this.dmaPages, slot.prpList, slot.prpIova);
        slot.listIsBounce = false;
        chunk = op.prp.bytes;
      } else chunk = op.kind === OP_FLUSH ? 0 : Math.min(op.length - op.issued, op.kind === OP_DISCARD ? DISCARD_CHUNK : this.bounceBytes);
      slot.op = op;
      slot.at = op.issued;
      slot.len = chunk;
      op.issued += chunk;
      op.pending++;
      this.encode(cid, slot, op);
      submitted = true;
      if (op.issued >= op.length) this.waiting.shift();
    }
    if (submitted && !this.ringPending) {
      this.ringPending = true;
      queueMicrotask(this.ringNow);
    }
  }

  private encode(cid: number, slot: Slot, op: Op): void {
    const dv = this.sqDv;
    const e = this.sqTail * NVME_SQE_SIZE;
    for (let i = 0; i < NVME_SQE_SIZE; i += 4) dv.setUint32(e + i, 0, true);
    const pos = op.position + slot.at;
    const base = slot.mem.iova;
    let opcode: number = NVME_OP.FLUSH;
    if (op.kind === OP_READ || op.kind === OP_WRITE) {
      opcode = op.kind === OP_READ ? NVME_OP.READ : NVME_OP.WRITE;
      if (op.dma !== null) {
        setU64(dv, e + SQE.PRP1, op.prp.prp1);
        setU64(dv, e + SQE.PRP2, op.prp.prp2);
      } else {
        if (op.kind === OP_WRITE) this.copy(op, slot.at, slot.mem.bytes, slot.len, true);
        if (slot.len > 2 * PAGE && !slot.listIsBounce) this.bounceList(slot);
        const prp2 = slot.len <= PAGE ? 0 : slot.len <= 2 * PAGE ? base + PAGE : slot.prpIova;
        setU64(dv, e + SQE.PRP1, base);
        setU64(dv, e + SQE.PRP2, prp2);
      }
      setU64(dv, e + SQE.CDW10, pos / 512);
      dv.setUint32(e + SQE.CDW12, slot.len / 512 - 1, true);
    } else if (op.kind === OP_DISCARD) {
      opcode = NVME_OP.DSM;
      const r = new DataView(slot.mem.bytes.buffer, slot.mem.bytes.byteOffset, 16);
      r.setUint32(0, 0, true);
      r.setUint32(4, slot.len / 512, true);
      setU64(r, 8, pos / 512);
      setU64(dv, e + SQE.PRP1, base);
      dv.setUint32(e + SQE.CDW10, 0, true);
      dv.setUint32(e + SQE.CDW11, NVME_DSM_AD, true);
    }
    dv.setUint32(e + SQE.CDW0, opcode | (cid << 16), true);
    dv.setUint32(e + SQE.NSID, 1, true);
    this.sqTail = (this.sqTail + 1) % this.entries;
    this.stats.commands++;
  }

  /** The interrupt: consume completions whose phase bit says they are new. */
  private reap(): void {
    if (this.closed) return;
    const dv = this.cqDv;
    let any = false;
    for (;;) {
      const e = this.cqHead * NVME_CQE_SIZE;
      const status = dv.getUint16(e + CQE.STATUS, true);
      if ((status & 1) !== this.phase) break;
      const cid = dv.getUint16(e + CQE.CID, true);
      const dw0 = dv.getUint32(e + CQE.DW0, true);
      this.cqHead++;
      if (this.cqHead === this.entries) {
        this.cqHead = 0;
        this.phase ^= 1;
      }
      any = true;
      const slot = cid < this.slots.length ? this.slots[cid] : undefined;
      const op = slot?.op;
      if (slot === undefined || op === null || op === undefined) continue; // a completion we did not ask for
      slot.op = null;
      this.freeSlots.push(cid);
      const code = statusCode(status);
      if (code !== 0) {
        this.stats.errors++;
        op.err ??= new BlockDeviceError('EIO', `${this.name}: ${statusText(code)}${dw0 !== 0 ? ` (DMA fault reason 0x${dw0.toString(16)})` : ''}`);
      } else if (op.kind === OP_READ && op.dma === null) this.copy(op, slot.at, slot.mem.bytes, slot.len, false);
      op.pending--;
      if (op.pending === 0 && op.issued >= op.length) this.finish(op);
    }
    const csts = Atomics.load(this.regs, R.CSTS >> 2);
    if (csts === NVME_REG_REMOVED && this.dead === null) {
      this.dead = new BlockDeviceError('ENODEV', `${this.name}: the controller is gone (its registers read all-ones: reassigned, reset, or hw stopped)`);
      this.log(this.dead.message);
      void this.stop(this.dead);
      return;
    }
    if (csts === NVME_REG_REMOVED && this.lostWhy !== null && (this.slots.some((sl) => sl.op !== null) || this.waiting.length > 0)) {
      // it did stop after all, later than we waited: what it held is safe to fail now
      this.log(`${this.name}: the lost controller is gone now (registers read all-ones): failing the requests it held`);
      this.failAll(this.dead ?? new BlockDeviceError('ENODEV', `${this.name}: the controller is gone`));
      return;
    }
    if ((csts & NVME_CSTS_CFS) !== 0 && this.dead === null) {
      this.dead = new BlockDeviceError('EIO', `${this.name}: controller fatal status (reason ${Atomics.load(this.regs, R.CFS_REASON >> 2)})`);
      void this.stop(this.dead);
      return;
    }
    if (any) {
      Atomics.store(this.regs, R.CQ0HDBL >> 2, this.cqHead);
      this.pump();
    }
  }

  private finish(op: Op): void {
    const done = op.done as IoDone;
    const err = op.err;
    op.done = null;
    op.buf = null;
    op.bufs = null;
    op.dma = null;
    this.pool.push(op);
    done(err);
  }

  /**
   * Ends every outstanding request with `err`, each exactly once: a request cut into several
   * commands sits in several slots, and also in `waiting` while part of it is unissued.
   */
  private failAll(err: Error): void {
    const ops: Op[] = [];
    for (const s of this.slots) {
      const op = s.op;
      if (op === null) continue;
      s.op = null;
      if (!ops.includes(op)) ops.push(op);
    }
    for (const op of this.waiting.splice(0)) if (!ops.includes(op)) ops.push(op);
    for (const op of ops) {
      op.err ??= err;
      op.pending = 0;
      op.issued = op.length;
      this.finish(op);
    }
  }

  /** Points the slot's PRP list page at its bounce buffer's pages 1.. again. */
  private bounceList(slot: Slot): void {
    const dv = slot.prpList;
    for (let p = 1; p < this.slotPages; p++) {
      const a = slot.mem.iova + p * PAGE;
      dv.setUint32((p - 1) * 8, a >>> 0, true);
      dv.setUint32((p - 1) * 8 + 4, Math.floor(a / TWO32), true);
    }
    slot.listIsBounce = true;
  }

  /** Moves `len` bytes between the op's buffer(s) at byte `at` and `bounce`. */
  private copy(op: Op, at: number, bounce: Uint8Array, len: number, toBounce: boolean): void {
    if (op.buf !== null) {
      const s = op.off + at;
      if (toBounce) bounce.set(op.buf.subarray(s, s + len), 0);
      else op.buf.set(bounce.subarray(0, len), s);
      return;
    }
    const bufs = op.bufs as Uint8Array[];
    let skip = at;
    let done = 0;
    for (let i = 0; i < bufs.length && done < len; i++) {
      const b = bufs[i];
      if (skip >= b.length) {
        skip -= b.length;
        continue;
      }
      const n = Math.min(b.length - skip, len - done);
      if (toBounce) bounce.set(b.subarray(skip, skip + n), done);
      else b.set(bounce.subarray(done, done + n), skip);
      done += n;
      skip = 0;
    }
  }
}

function newOp(): Op {
  return {
    kind: 0, buf: null, off: 0, bufs: null, dma: null, prp: new PrpCursor(), position: 0, length: 0, issued: 0, pending: 0, err: null, done: null,
  };
}

function setU64(dv: DataView, off: number, v: number): void {
  dv.setUint32(off, v >>> 0, true);
  dv.setUint32(off + 4, Math.floor(v / TWO32) >>> 0, true);
}

function total(bufs: Uint8Array[]): number {
  let n = 0;
  for (let i = 0; i < bufs.length; i++) n += bufs[i].length;
  return n;
}

/**
 * Opens the NVMe controller at `bdf` (assigned to this domain by dom0's pci_assign) as a block
 * device. Needs 2 + depth * (slotPages + 1) free I/O frames (slot buffers and PRP list pages):
 * 546 with the defaults.
 */
export async function openNvme(dom: Domain, bdf: string, opts: NvmeDriverOptions = {}): Promise<NvmeDriver> {
  const port = await PciPort.open(dom, bdf);
  if (port.info.kind !== 'nvme' || port.info.blocks === undefined) {
    port.close();
    throw new BlockDeviceError('ENODEV', `${bdf} is a ${port.info.kind}, not an NVMe controller`);
  }
  let d: NvmeDriver;
  try {
    d = new NvmeDriver(`nvme@${bdf}`, port, domainMemory(dom), port.info.blocks * 512, port.info.readonly ?? false, opts);
  } catch (e) {
    port.close();
    throw e;
  }
  try {
    await d.start();
    return d;
  } catch (e) {
    // stops the controller, closes the port and gives the driver's pages back
    await d.close();
    throw e;
  }
}
