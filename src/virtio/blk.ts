// virtio-blk on a BlockDevice (virtio 1.x, "Block Device"): the same media code blkback uses,
// reached through a virtqueue instead of a blkif ring. Data moves straight between the medium and
// the guest's own pages (the views GuestMemory hands out), and a request's status and used entry
// are written only after the medium has answered, so an acknowledged write is on the medium and
// a completed FLUSH is durable (fdatasync).
import {
  VIRTIO_BLK_CFG_BLK_SIZE,
  VIRTIO_BLK_CFG_CAPACITY,
  VIRTIO_BLK_CFG_DISCARD_SECTOR_ALIGNMENT,
  VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS,
  VIRTIO_BLK_CFG_MAX_DISCARD_SEG,
  VIRTIO_BLK_CFG_MAX_WRITE_ZEROES_SECTORS,
  VIRTIO_BLK_CFG_MAX_WRITE_ZEROES_SEG,
  VIRTIO_BLK_CFG_NUM_QUEUES,
  VIRTIO_BLK_CFG_OPT_IO_SIZE,
  VIRTIO_BLK_CFG_MIN_IO_SIZE,
  VIRTIO_BLK_CFG_PHYS_BLOCK_EXP,
  VIRTIO_BLK_CFG_SEG_MAX,
  VIRTIO_BLK_CFG_SIZE_MAX,
  VIRTIO_BLK_CFG_WRITE_ZEROES_MAY_UNMAP,
  VIRTIO_BLK_CONFIG_SIZE,
  VIRTIO_BLK_DWZ_FLAGS,
  VIRTIO_BLK_DWZ_NUM_SECTORS,
  VIRTIO_BLK_DWZ_SECTOR,
  VIRTIO_BLK_DWZ_SIZE,
  VIRTIO_BLK_F_BLK_SIZE,
  VIRTIO_BLK_F_DISCARD,
  VIRTIO_BLK_F_FLUSH,
  VIRTIO_BLK_F_MQ,
  VIRTIO_BLK_F_RO,
  VIRTIO_BLK_F_SEG_MAX,
  VIRTIO_BLK_F_SIZE_MAX,
  VIRTIO_BLK_F_TOPOLOGY,
  VIRTIO_BLK_F_WRITE_ZEROES,
  VIRTIO_BLK_ID_BYTES,
  VIRTIO_BLK_OUTHDR_SECTOR,
  VIRTIO_BLK_OUTHDR_SIZE,
  VIRTIO_BLK_OUTHDR_TYPE,
  VIRTIO_BLK_S_IOERR,
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_S_UNSUPP,
  VIRTIO_BLK_SECTOR_SIZE,
  VIRTIO_BLK_T_DISCARD,
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_GET_ID,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
  VIRTIO_BLK_T_WRITE_ZEROES,
  VIRTIO_F_VERSION_1,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC,
  bit,
} from '../abi/virtio.js';
import type { BlockDevice } from '../blkdev/device.js';
import type { GuestMemory } from './guest-memory.js';
import { DescChain, type SplitQueue, VirtqueueError } from './virtqueue.js';
import type { VirtioDevice, VirtioQueueHost } from './device.js';

/** largest single buffer we tell the driver to build (SIZE_MAX) */
const SIZE_MAX = 1 << 20;
/** discard/write-zeroes: one range per request, up to 1 GiB */
const MAX_DISCARD_SECTORS = (1 << 30) / VIRTIO_BLK_SECTOR_SIZE;

export interface VirtioBlkOptions {
  name: string;
  device: BlockDevice;
  readonly: boolean;
  queues: number;
  /** serial the guest reads with GET_ID (/sys/block/vda/serial); at most 20 bytes */
  serial: string;
}

export class VirtioBlk implements VirtioDevice {
  readonly name: string;
  readonly numQueues: number;
  readonly features: bigint;
  readonly servesConfig = true;
  private readonly serial: Uint8Array;
  private readonly queues: (BlkQueue | null)[];
  /** requests answered on each queue since the device was made (across reconnects) */
  readonly answered: Float64Array;

  constructor(private readonly o: VirtioBlkOptions) {
    this.name = o.name;
    this.numQueues = o.queues;
    this.queues = new Array<BlkQueue | null>(o.queues).fill(null);
    this.answered = new Float64Array(o.queues);
    this.serial = new TextEncoder().encode(o.serial).subarray(0, VIRTIO_BLK_ID_BYTES);
    let f = bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_RING_F_EVENT_IDX) | bit(VIRTIO_RING_F_INDIRECT_DESC);
    f |= bit(VIRTIO_BLK_F_SIZE_MAX) | bit(VIRTIO_BLK_F_SEG_MAX) | bit(VIRTIO_BLK_F_BLK_SIZE) | bit(VIRTIO_BLK_F_TOPOLOGY) | bit(VIRTIO_BLK_F_FLUSH);
    if (o.queues > 1) f |= bit(VIRTIO_BLK_F_MQ);
    if (o.readonly) f |= bit(VIRTIO_BLK_F_RO);
    else if (o.device.discardSupport) f |= bit(VIRTIO_BLK_F_DISCARD) | bit(VIRTIO_BLK_F_WRITE_ZEROES);
    this.features = f;
  }

  /** struct virtio_blk_config for a queue of `queueSize` entries (seg_max leaves room for header and status) */
  config(queueSize: number): Uint8Array {
    const b = new Uint8Array(VIRTIO_BLK_CONFIG_SIZE);
    const v = new DataView(b.buffer);
    const dev = this.o.device;
    v.setBigUint64(VIRTIO_BLK_CFG_CAPACITY, BigInt(Math.floor(dev.size / VIRTIO_BLK_SECTOR_SIZE)), true);
    v.setUint32(VIRTIO_BLK_CFG_SIZE_MAX, SIZE_MAX, true);
    v.setUint32(VIRTIO_BLK_CFG_SEG_MAX, Math.max(1, queueSize - 2), true);
    v.setUint32(VIRTIO_BLK_CFG_BLK_SIZE, dev.sectorSize, true);
    v.setUint8(VIRTIO_BLK_CFG_PHYS_BLOCK_EXP, Math.max(0, Math.log2(dev.physicalSectorSize / dev.sectorSize)));
    v.setUint16(VIRTIO_BLK_CFG_MIN_IO_SIZE, 1, true);
    v.setUint32(VIRTIO_BLK_CFG_OPT_IO_SIZE, 0, true);
    v.setUint16(VIRTIO_BLK_CFG_NUM_QUEUES, this.numQueues, true);
    if (dev.discardSupport && !this.o.readonly) {
      v.setUint32(VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS, MAX_DISCARD_SECTORS, true);
      v.setUint32(VIRTIO_BLK_CFG_MAX_DISCARD_SEG, 1, true);
      v.setUint32(VIRTIO_BLK_CFG_DISCARD_SECTOR_ALIGNMENT, Math.max(1, dev.discardSupport.granularity / VIRTIO_BLK_SECTOR_SIZE), true);
      v.setUint32(VIRTIO_BLK_CFG_MAX_WRITE_ZEROES_SECTORS, MAX_DISCARD_SECTORS, true);
      v.setUint32(VIRTIO_BLK_CFG_MAX_WRITE_ZEROES_SEG, 1, true);
      v.setUint8(VIRTIO_BLK_CFG_WRITE_ZEROES_MAY_UNMAP, 1);
    }
    return b;
  }

  startQueue(index: number, queue: SplitQueue, mem: GuestMemory, host: VirtioQueueHost): void {
    if (this.queues[index]) throw new Error(`${this.name}: queue ${index} is already running`);
    const q = new BlkQueue(this.o, this.serial, index, queue, mem, host, this.answered);
    this.queues[index] = q;
    q.run();
  }

  async stopQueue(index: number): Promise<number> {
    const q = this.queues[index];
    if (!q) return -1;
    this.queues[index] = null;
    return q.stop();
  }

  kick(index: number): void {
    this.queues[index]?.run();
  }

  get inFlight(): number {
    let n = 0;
    for (const q of this.queues) n += q?.inFlight ?? 0;
    return n;
  }
}

class BlkRequest {
  readonly chain: DescChain;
  readonly bufs: Uint8Array[] = [];
  readonly header = new Uint8Array(VIRTIO_BLK_OUTHDR_SIZE);
  readonly headerView = new DataView(this.header.buffer);
  /** where the status byte sits: its region's bytes and the offset in them */
  statusBytes: Uint8Array | null = null;
  statusAt = 0;
  /** bytes written into the guest's buffers, status byte included */
  written = 0;
  /** discard/write-zeroes range, in bytes */
  position = 0;
  length = 0;
  readonly done: (err: Error | null) => void;

  constructor(capacity: number, finish: (r: BlkRequest, err: Error | null) => void) {
    this.chain = new DescChain(capacity);
    this.done = (err) => finish(this, err);
  }
}

class BlkQueue {
  private readonly free: BlkRequest[] = [];
  /** the one discard/write-zeroes segment a request carries, read into one buffer per queue */
  private readonly dwz = new Uint8Array(VIRTIO_BLK_DWZ_SIZE);
  private readonly dwzView = new DataView(this.dwz.buffer);
  inFlight = 0;
  private stopped = false;
  private failed = false;
  private idle: (() => void) | null = null;

  constructor(
    private readonly o: VirtioBlkOptions,
    private readonly serial: Uint8Array,
    private readonly index: number,
    private readonly q: SplitQueue,
    private readonly mem: GuestMemory,
    private readonly host: VirtioQueueHost,
    private readonly answered: Float64Array,
  ) {
    const finish = (r: BlkRequest, err: Error | null) => this.complete(r, err);
    for (let i = 0; i < q.size; i++) this.free.push(new BlkRequest(q.size, finish));
    for (const head of host.resubmit) this.resubmit(head);
  }

  /** Takes and starts everything available, then asks for a kick (EVENT_IDX) and looks once more. */
  run(): void {
    if (this.stopped) return;
    try {
      for (;;) {
        while (this.free.length > 0) {
          const r = this.free[this.free.length - 1];
          if (!this.q.pop(r.chain)) break;
          this.free.pop();
          this.start(r);
        }
        // Out of request slots: completions call run() again.
        if (this.free.length === 0 || !this.q.armKick()) return;
      }
    } catch (e) {
      this.fail(e as Error);
    }
  }

  private resubmit(head: number): void {
    const r = this.free.pop();
    if (!r) return;
    try {
      this.q.walk(head, r.chain);
    } catch (e) {
      this.free.push(r);
      this.fail(e as Error);
      return;
    }
    try {
      this.start(r);
    } catch (e) {
      this.fail(e as Error);
    }
  }

  private start(r: BlkRequest): void {
    const c = r.chain;
    if (c.readableBytes < VIRTIO_BLK_OUTHDR_SIZE || c.writableBytes < 1 || c.len[c.count - 1] < 1) {
      this.free.push(r);
      throw new VirtqueueError(`request at head ${c.head} has ${c.readableBytes} readable bytes and ${c.writableBytes} writable: it needs a 16-byte header and a status byte`);
    }
    this.inFlight++;
    this.host.began(c.head);
    r.written = 0;
    r.bufs.length = 0;
    this.gather(c, 0, VIRTIO_BLK_OUTHDR_SIZE, r.header);
    r.statusAt = this.mem.locate(c.addr[c.count - 1] + c.len[c.count - 1] - 1, 1);
    if (r.statusAt < 0) throw new VirtqueueError(`the status byte of head ${c.head} left guest memory`);
    r.statusBytes = this.mem.foundBytes;
    const type = r.headerView.getUint32(VIRTIO_BLK_OUTHDR_TYPE, true);
    const sector = r.headerView.getBigUint64(VIRTIO_BLK_OUTHDR_SECTOR, true);
    const dev = this.o.device;
    switch (type) {
      case VIRTIO_BLK_T_IN:
      case VIRTIO_BLK_T_OUT: {
        const out = type === VIRTIO_BLK_T_OUT;
        const bytes = out ? this.views(c, 0, VIRTIO_BLK_OUTHDR_SIZE, c.readable, r.bufs) : this.views(c, c.readable, 0, c.count, r.bufs, 1);
        const pos = Number(sector) * VIRTIO_BLK_SECTOR_SIZE;
        if (bytes % VIRTIO_BLK_SECTOR_SIZE !== 0 || sector > BigInt(dev.size) || pos + bytes > dev.size) return this.finish(r, VIRTIO_BLK_S_IOERR);
        if (out && this.o.readonly) return this.finish(r, VIRTIO_BLK_S_IOERR);
        if (bytes === 0) return this.finish(r, VIRTIO_BLK_S_OK);
        if (!out) r.written = bytes;
        if (out) dev.writev(r.bufs, pos, r.done);
        else dev.readv(r.bufs, pos, r.done);
        return;
      }
      case VIRTIO_BLK_T_FLUSH:
        dev.flush(r.done);
        return;
      case VIRTIO_BLK_T_GET_ID: {
        this.views(c, c.readable, 0, c.count, r.bufs, 1);
        let left = Math.min(this.serial.length, VIRTIO_BLK_ID_BYTES);
        let from = 0;
        for (const b of r.bufs) {
          const n = Math.min(left, b.length);
          b.set(this.serial.subarray(from, from + n));
          // the id is NUL-padded when shorter than its 20 bytes
          b.fill(0, n, Math.min(b.length, VIRTIO_BLK_ID_BYTES - from));
          from += n;
          left -= n;
        }
        r.written = Math.min(VIRTIO_BLK_ID_BYTES, c.writableBytes - 1);
        return this.finish(r, VIRTIO_BLK_S_OK);
      }
      case VIRTIO_BLK_T_DISCARD:
      case VIRTIO_BLK_T_WRITE_ZEROES: {
        if (!dev.discardSupport || this.o.readonly) return this.finish(r, VIRTIO_BLK_S_UNSUPP);
        if (c.readableBytes - VIRTIO_BLK_OUTHDR_SIZE !== VIRTIO_BLK_DWZ_SIZE) return this.finish(r, VIRTIO_BLK_S_UNSUPP);
        this.gather(c, VIRTIO_BLK_OUTHDR_SIZE, VIRTIO_BLK_DWZ_SIZE, this.dwz);
        const sv = this.dwzView;
        const start = sv.getBigUint64(VIRTIO_BLK_DWZ_SECTOR, true);
        const count = sv.getUint32(VIRTIO_BLK_DWZ_NUM_SECTORS, true);
        const flags = sv.getUint32(VIRTIO_BLK_DWZ_FLAGS, true);
        // flags: only WRITE_ZEROES's UNMAP is defined; anything else the spec says to reject
        if ((type === VIRTIO_BLK_T_DISCARD && flags !== 0) || (flags & ~1) !== 0 || count > MAX_DISCARD_SECTORS) return this.finish(r, VIRTIO_BLK_S_UNSUPP);
        const pos = Number(start) * VIRTIO_BLK_SECTOR_SIZE;
        const len = count * VIRTIO_BLK_SECTOR_SIZE;
        if (start > BigInt(dev.size) || pos + len > dev.size) return this.finish(r, VIRTIO_BLK_S_IOERR);
        // the medium's discard reads back as zeroes (BlockDevice's contract), so it zeroes too
        dev.discard(pos, len, r.done);
        return;
      }
      default:
        return this.finish(r, VIRTIO_BLK_S_UNSUPP);
    }
  }

  private complete(r: BlkRequest, err: Error | null): void {
    if (err) this.host.log(`${this.o.name}: queue ${this.index}: head ${r.chain.head}: ${err.message}`);
    this.finish(r, err ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK);
  }

  private finish(r: BlkRequest, status: number): void {
    if (status !== VIRTIO_BLK_S_OK) r.written = 0;
    r.statusBytes![r.statusAt] = status;
    r.written += 1;
    // A stopped queue still answers what it took: the driver's buffers stay its own.
    if (!this.failed) {
      this.host.completing(r.chain.head);
      this.q.push(r.chain, r.written);
      this.host.completed(r.chain.head, this.q.usedIdx);
      if (this.q.needsInterrupt()) this.host.interrupt();
      this.answered[this.index]! += 1;
    }
    this.inFlight--;
    this.free.push(r);
    if (this.stopped) {
      if (this.inFlight === 0) this.idle?.();
    } else this.run();
  }

  private fail(e: Error): void {
    if (this.failed) return;
    this.failed = true;
    this.stopped = true;
    this.host.fault(e instanceof VirtqueueError ? e.message : `internal error: ${e.message}`);
    if (this.inFlight === 0) this.idle?.();
  }

  /** Stops taking requests; resolves with the next avail index once what was taken has completed. */
  stop(): Promise<number> {
    this.stopped = true;
    if (this.inFlight === 0) return Promise.resolve(this.q.lastAvail);
    return new Promise((resolve) => (this.idle = () => resolve(this.q.lastAvail)));
  }

  // ---- chain helpers: byte ranges of the chain's buffers as guest-memory views ----

  /** Copies `len` bytes starting `skip` bytes into the chain's readable buffers into `out`. */
  private gather(c: DescChain, skip: number, len: number, out: Uint8Array): void {
    let got = 0;
    for (let i = 0; i < c.readable && got < len; i++) {
      const l = c.len[i];
      if (skip >= l) {
        skip -= l;
        continue;
      }
      const n = Math.min(l - skip, len - got);
      const at = this.mem.locate(c.addr[i] + skip, n);
      if (at < 0) throw new VirtqueueError(`buffer ${i} of head ${c.head} left guest memory`);
      // headers and discard segments: a few bytes, copied without making a view
      const src = this.mem.foundBytes;
      for (let k = 0; k < n; k++) out[got + k] = src[at + k];
      got += n;
      skip = 0;
    }
  }

  private slice(c: DescChain, i: number, off: number, len: number): Uint8Array {
    const v = this.mem.view(c.addr[i] + off, len);
    if (!v) throw new VirtqueueError(`buffer ${i} of head ${c.head} left guest memory`);
    return v;
  }

  /**
   * Views of buffers [from, to) with `skip` bytes dropped from the front and `trim` from the
   * back, pushed into `out`; returns their total length.
   */
  private views(c: DescChain, from: number, skip: number, to: number, out: Uint8Array[], trim = 0): number {
    let end = 0;
    for (let i = from; i < to; i++) end += c.len[i];
    end -= trim;
    let pos = 0;
    let total = 0;
    for (let i = from; i < to; i++) {
      const l = c.len[i];
      const a = Math.max(skip, pos);
      const b = Math.min(end, pos + l);
      if (b > a) {
        out.push(this.slice(c, i, a - pos, b - a));
        total += b - a;
      }
      pos += l;
    }
    return total;
  }
}
