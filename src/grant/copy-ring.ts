// A domain's end of a grant-copy ring (src/abi/gntcopy-ring.ts): netback writes each op's numbers
// straight into a slot, so a batch costs one eventfd write each way and no serialiser, no
// message and no objects. hv is a peer here like any other: a done signal with no batch
// outstanding is ignored, and statuses are read back only after hv said done.
import { GNTCOPY_RING_BYTES, GNTCOPY_RING_SLOTS, RING_COUNT, SLOT, slotOffset } from '../abi/gntcopy-ring.js';
import { GNTST } from '../abi/grant.js';
import { safeClose } from '../hypercall/channel.js';
import type { HypercallClient } from '../hypercall/client.js';
import { native, type Watcher } from '../native/index.js';

export class CopyRing {
  readonly capacity = GNTCOPY_RING_SLOTS;
  private readonly dv: DataView;
  private readonly watcher: Watcher;
  private waiting: (() => void) | null = null;
  private closed = false;

  private constructor(
    private readonly buf: ArrayBuffer,
    private readonly kick: number,
    private readonly done: number,
  ) {
    this.dv = new DataView(buf);
    this.watcher = new native.Watcher(done, 'eventfd', () => {
      const w = this.waiting;
      this.waiting = null;
      w?.();
    });
  }

  static async open(hc: HypercallClient): Promise<CopyRing> {
    const { fds } = await hc.call('gnttab_copy_ring', {});
    if (fds.length !== 3) {
      for (const f of fds) safeClose(f);
      throw new Error(`gnttab_copy_ring: hv sent ${fds.length} descriptors, expected the memory and two eventfds`);
    }
    const [memfd, kick, done] = fds;
    try {
      return new CopyRing(native.mmap(memfd, GNTCOPY_RING_BYTES, true), kick, done);
    } finally {
      safeClose(memfd);
    }
  }

  /** Fills slot i. */
  set(i: number, srcRef: number, srcDom: number, srcOff: number, dstRef: number, dstDom: number, dstOff: number, len: number, flags: number): void {
    const o = slotOffset(i);
    const dv = this.dv;
    dv.setUint32(o + SLOT.SRC_REF, srcRef, true);
    dv.setUint16(o + SLOT.SRC_DOM, srcDom, true);
    dv.setUint16(o + SLOT.SRC_OFF, srcOff, true);
    dv.setUint32(o + SLOT.DST_REF, dstRef, true);
    dv.setUint16(o + SLOT.DST_DOM, dstDom, true);
    dv.setUint16(o + SLOT.DST_OFF, dstOff, true);
    dv.setUint16(o + SLOT.LEN, len, true);
    dv.setUint16(o + SLOT.FLAGS, flags, true);
    dv.setInt16(o + SLOT.STATUS, GNTST.general_error, true);
  }

  /** Slot i's GNTST status after run(). */
  status(i: number): number {
    return this.dv.getInt16(slotOffset(i) + SLOT.STATUS, true);
  }

  /** Has hv run slots [0, n); resolves when it signals done. One batch at a time. */
  run(n: number): Promise<void> {
    if (this.closed) return Promise.reject(new Error('grant-copy ring is closed'));
    if (this.waiting !== null) return Promise.reject(new Error('grant-copy ring: a batch is already in flight'));
    if (n > this.capacity) return Promise.reject(new RangeError(`grant-copy ring: ${n} ops, the ring holds ${this.capacity}`));
    this.dv.setUint32(RING_COUNT, n, true);
    return new Promise((resolve) => {
      this.waiting = resolve;
      native.eventfdSignal(this.kick);
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.watcher.close();
    native.munmap(this.buf);
    safeClose(this.kick);
    safeClose(this.done);
    this.waiting?.();
    this.waiting = null;
  }
}
