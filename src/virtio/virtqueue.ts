// The device side of a virtio split virtqueue (virtio 1.x, "Split Virtqueues"): take the heads
// the driver made available, walk each descriptor chain (NEXT and one level of INDIRECT), and
// return heads on the used ring with EVENT_IDX suppression of interrupts and kicks.
//
// The driver is untrusted. A chain that loops, runs longer than the queue, nests indirect tables,
// points outside guest memory, puts a readable buffer after a writable one, or an avail index that
// runs more than the queue size ahead, is a VirtqueueError: the caller stops the queue. The walk
// fills a caller-owned DescChain, so taking a request allocates nothing.
import {
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  VIRTQ_AVAIL_IDX,
  VIRTQ_AVAIL_RING,
  VIRTQ_DESC_ADDR,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VIRTQ_DESC_FLAGS,
  VIRTQ_DESC_LEN,
  VIRTQ_DESC_NEXT,
  VIRTQ_DESC_SIZE,
  VIRTQ_MAX_SIZE,
  VIRTQ_USED_ELEM_SIZE,
  VIRTQ_USED_IDX,
  VIRTQ_USED_RING,
  availSize,
  availUsedEvent,
  usedAvailEvent,
  usedSize,
  vringNeedEvent,
} from '../abi/virtio.js';
import type { DirtyPages } from './device.js';
import type { GuestMemory } from './guest-memory.js';

export class VirtqueueError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'VirtqueueError';
  }
}

/** One request's buffers in chain order: readable ones first, then writable ones. */
export class DescChain {
  head = 0;
  count = 0;
  /** how many of the first `count` buffers are device-readable */
  readable = 0;
  readonly addr: Float64Array;
  readonly len: Float64Array;

  constructor(readonly capacity: number) {
    this.addr = new Float64Array(capacity);
    this.len = new Float64Array(capacity);
  }

  get readableBytes(): number {
    let n = 0;
    for (let i = 0; i < this.readable; i++) n += this.len[i];
    return n;
  }

  get writableBytes(): number {
    let n = 0;
    for (let i = this.readable; i < this.count; i++) n += this.len[i];
    return n;
  }
}

export interface VringAddresses {
  /** the frontend's virtual addresses of the three areas (vhost-user passes user addresses) */
  desc: number;
  avail: number;
  used: number;
}

export interface SplitQueueOptions {
  eventIdx: boolean;
  indirect: boolean;
}

export class SplitQueue {
  private readonly desc: DataView;
  private readonly avail: DataView;
  private readonly availIdx: Uint16Array;
  private readonly used: DataView;
  private readonly usedIdxWord: Uint16Array;
  private readonly availEvent: Uint16Array;
  private readonly mask: number;
  /** the next avail slot we will take (free-running u16) */
  lastAvail: number;
  /** the used index we have published (free-running u16) */
  usedIdx: number;
  /** used index at the last interrupt we sent (EVENT_IDX) */
  private signalledUsed: number;
  private signalledValid = false;
  /** while a migration runs: where our writes to guest memory are logged */
  private dirty: DirtyPages | null = null;
  /** the used ring's guest-physical address, when its writes are logged too (VHOST_VRING_F_LOG) */
  private usedGpa = -1;

  constructor(
    private readonly mem: GuestMemory,
    readonly size: number,
    addrs: VringAddresses,
    private readonly opts: SplitQueueOptions,
    base: number,
  ) {
    if (size === 0 || size > VIRTQ_MAX_SIZE || (size & (size - 1)) !== 0) throw new VirtqueueError(`queue size ${size} is not a power of two in 1..${VIRTQ_MAX_SIZE}`);
    if (addrs.desc % 16 || addrs.avail % 2 || addrs.used % 4) throw new VirtqueueError('vring areas are misaligned (descriptors 16, avail 2, used 4 bytes)');
    const d = mem.userView(addrs.desc, size * VIRTQ_DESC_SIZE);
    const a = mem.userView(addrs.avail, availSize(size));
    const u = mem.userView(addrs.used, usedSize(size));
    if (!d || !a || !u) throw new VirtqueueError(`vring areas (desc 0x${addrs.desc.toString(16)}, avail 0x${addrs.avail.toString(16)}, used 0x${addrs.used.toString(16)}, ${size} entries) are not inside guest memory`);
    this.desc = new DataView(d.buffer, d.byteOffset, d.byteLength);
    this.avail = new DataView(a.buffer, a.byteOffset, a.byteLength);
    this.availIdx = new Uint16Array(a.buffer, a.byteOffset + VIRTQ_AVAIL_IDX, 1);
    this.used = new DataView(u.buffer, u.byteOffset, u.byteLength);
    this.usedIdxWord = new Uint16Array(u.buffer, u.byteOffset + VIRTQ_USED_IDX, 1);
    this.availEvent = new Uint16Array(u.buffer, u.byteOffset + usedAvailEvent(size), 1);
    this.mask = size - 1;
    this.lastAvail = base & 0xffff;
    this.usedIdx = Atomics.load(this.usedIdxWord, 0);
    this.signalledUsed = this.usedIdx;
  }

  /** Heads the driver has made available and we have not taken. */
  pending(): number {
    const n = (Atomics.load(this.availIdx, 0) - this.lastAvail) & 0xffff;
    if (n > this.size) throw new VirtqueueError(`avail index ${Atomics.load(this.availIdx, 0)} is ${n} ahead of ours (${this.lastAvail}): more than the ${this.size} the queue holds`);
    return n;
  }

  /** The driver's current avail index (what a reconnecting backend compares against). */
  get availIndex(): number {
    return Atomics.load(this.availIdx, 0);
  }

  /** Takes the next available head into `chain`; false when none is pending. */
  pop(chain: DescChain): boolean {
    if (this.pending() === 0) return false;
    const head = this.avail.getUint16(VIRTQ_AVAIL_RING + 2 * (this.lastAvail & this.mask), true);
    this.walk(head, chain);
    this.lastAvail = (this.lastAvail + 1) & 0xffff;
    return true;
  }

  /** Walks the chain starting at descriptor `head` into `chain` (also used to resubmit inflight heads). */
  walk(head: number, chain: DescChain): void {
    if (head >= this.size) throw new VirtqueueError(`head ${head} is outside the ${this.size}-entry descriptor table`);
    chain.head = head;
    chain.count = 0;
    chain.readable = 0;
    let table = this.desc;
    /** where the current table starts in `table` (an indirect one sits inside a region's view) */
    let base = 0;
    let tableSize = this.size;
    let i = head;
    let indirect = false;
    // Each table is walked at most its own size of steps: a loop is caught by the count, not by marks.
    for (let steps = 0; ; steps++) {
      if (steps >= tableSize) throw new VirtqueueError(`descriptor chain from head ${head} is longer than its ${tableSize}-entry table (a loop?)`);
      const o = base + i * VIRTQ_DESC_SIZE;
      const addr = readU64(table, o + VIRTQ_DESC_ADDR);
      const len = table.getUint32(o + VIRTQ_DESC_LEN, true);
      const flags = table.getUint16(o + VIRTQ_DESC_FLAGS, true);
      if (flags & VIRTQ_DESC_F_INDIRECT) {
        if (!this.opts.indirect) throw new VirtqueueError(`descriptor ${i} is INDIRECT but INDIRECT_DESC was not negotiated`);
        if (indirect) throw new VirtqueueError(`descriptor ${i} of an indirect table is itself INDIRECT`);
        if (flags & VIRTQ_DESC_F_NEXT) throw new VirtqueueError(`indirect descriptor ${i} also has NEXT`);
        if (len === 0 || len % VIRTQ_DESC_SIZE !== 0) throw new VirtqueueError(`indirect table of ${len} bytes is not a whole number of descriptors`);
        const n = len / VIRTQ_DESC_SIZE;
        if (n > chain.capacity) throw new VirtqueueError(`indirect table of ${n} descriptors exceeds the ${chain.capacity} a request may have`);
        const at = addr === null ? -1 : this.mem.locate(addr, len);
        if (at < 0) throw new VirtqueueError(`indirect table at guest 0x${(addr ?? -1).toString(16)} (${len} bytes) is not inside guest memory`);
        table = this.mem.found;
        base = at;
        tableSize = n;
        indirect = true;
        i = 0;
        steps = -1;
        continue;
      }
      if (addr === null || (len > 0 && !this.mem.contains(addr, len)))
        throw new VirtqueueError(`descriptor ${i} of head ${head}: buffer at guest 0x${(addr ?? -1).toString(16)} (${len} bytes) is not inside guest memory`);
      const writable = (flags & VIRTQ_DESC_F_WRITE) !== 0;
      if (!writable && chain.count > chain.readable) throw new VirtqueueError(`descriptor ${i} of head ${head} is readable after a writable one`);
      if (chain.count === chain.capacity) throw new VirtqueueError(`chain from head ${head} has more than ${chain.capacity} buffers`);
      chain.addr[chain.count] = addr;
      chain.len[chain.count] = len;
      chain.count++;
      if (!writable) chain.readable++;
      if (!(flags & VIRTQ_DESC_F_NEXT)) return;
      i = table.getUint16(o + VIRTQ_DESC_NEXT, true);
      if (i >= tableSize) throw new VirtqueueError(`descriptor chain from head ${head}: next ${i} is outside its ${tableSize}-entry table`);
    }
  }

  /**
   * Starts (or stops, with null) logging our writes: the buffers of every chain we answer, and
   * the used ring's entries when `usedGpa` (its guest-physical address) is given.
   */
  logTo(dirty: DirtyPages | null, usedGpa: number): void {
    this.dirty = dirty;
    this.usedGpa = dirty ? usedGpa : -1;
  }

  /** Returns `chain` to the driver, `written` bytes having been written into its buffers. */
  push(chain: DescChain, written: number): void {
    const slot = this.usedIdx & this.mask;
    const o = VIRTQ_USED_RING + VIRTQ_USED_ELEM_SIZE * slot;
    this.used.setUint32(o, chain.head, true);
    this.used.setUint32(o + 4, written, true);
    this.usedIdx = (this.usedIdx + 1) & 0xffff;
    // Whatever the device wrote is logged before the driver (and QEMU's next log sweep after
    // this round) can see the head as done. Every writable buffer counts, not just `written`
    // bytes of them: a page marked needlessly costs one copy, one missed loses data.
    const d = this.dirty;
    if (d) {
      for (let i = chain.readable; i < chain.count; i++) d.mark(chain.addr[i], chain.len[i]);
      if (this.usedGpa >= 0) {
        d.mark(this.usedGpa + o, VIRTQ_USED_ELEM_SIZE);
        d.mark(this.usedGpa + VIRTQ_USED_IDX, 2);
      }
    }
    // The element is visible before the index that publishes it (a seq-cst store orders them).
    Atomics.store(this.usedIdxWord, 0, this.usedIdx);
  }

  /** Whether the driver wants an interrupt for what was pushed since the last one. */
  needsInterrupt(): boolean {
    const old = this.signalledUsed;
    const valid = this.signalledValid;
    this.signalledUsed = this.usedIdx;
    this.signalledValid = true;
    if (!this.opts.eventIdx) return (this.avail.getUint16(0, true) & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0;
    // After a (re)start we do not know what was last signalled: interrupt rather than miss one.
    if (!valid) return true;
    Atomics.load(this.usedIdxWord, 0); // orders our used-index store before reading used_event
    return vringNeedEvent(this.avail.getUint16(availUsedEvent(this.size), true), this.usedIdx, old);
  }

  /**
   * EVENT_IDX: ask for a kick once the driver makes anything past what we have taken available.
   * Returns true if more arrived meanwhile, so the caller drains again instead of sleeping.
   */
  armKick(): boolean {
    if (!this.opts.eventIdx) return this.pending() > 0;
    // seq-cst: the store is visible before we look at the avail index again, or a kick is lost
    Atomics.store(this.availEvent, 0, this.lastAvail);
    if (this.usedGpa >= 0) this.dirty?.mark(this.usedGpa + usedAvailEvent(this.size), 2);
    return this.pending() > 0;
  }
}

const TWO32 = 2 ** 32;

/** a little-endian u64 as a number, or null above 2^53 (no guest memory lives there) */
function readU64(v: DataView, o: number): number | null {
  const lo = v.getUint32(o, true);
  const hi = v.getUint32(o + 4, true);
  if (hi > 0x1fffff) return null;
  return hi * TWO32 + lo;
}
