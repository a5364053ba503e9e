// hv's end of one grant-copy ring (src/abi/gntcopy-ring.ts): on each kick it runs the batch the
// domain wrote, through the same checks as the gnttab_copy hypercall, and signals done. The
// memory is the domain's to scribble on at any time, so each field is read once into a local and
// only those locals are used; a count beyond the ring is a broken domain, cut off with a reason.
import { GNTCOPY_RING_BYTES, GNTCOPY_RING_SLOTS, RING_COUNT, SLOT, slotOffset } from '../../src/abi/gntcopy-ring.js';
import { native, type Watcher } from '../../src/native/index.js';
import type { DomainRecord } from './domain.js';
import type { GrantService } from './grant.js';

export class HvCopyRing {
  /** what the domain receives: the memory, its kick and its done eventfds */
  readonly domainFds: [number, number, number];
  private readonly dv: DataView;
  private readonly buf: ArrayBuffer;
  private readonly kick: number;
  private readonly done: number;
  private readonly watcher: Watcher;
  private closed = false;

  constructor(
    private readonly dom: DomainRecord,
    private readonly grants: GrantService,
    private readonly cutOff: (dom: DomainRecord, reason: string) => void,
  ) {
    const memfd = native.memfdCreate(`${dom.name}-gntcopy`, GNTCOPY_RING_BYTES);
    this.buf = native.mmap(memfd, GNTCOPY_RING_BYTES, true);
    this.dv = new DataView(this.buf);
    this.kick = native.eventfd();
    this.done = native.eventfd();
    this.domainFds = [memfd, this.kick, this.done];
    this.watcher = new native.Watcher(this.kick, 'eventfd', () => this.run());
  }

  private run(): void {
    if (this.closed || this.dom.state === 'dead') return;
    const dv = this.dv;
    const count = dv.getUint32(RING_COUNT, true);
    if (count > GNTCOPY_RING_SLOTS) {
      this.cutOff(this.dom, `grant-copy ring: batch of ${count} ops, the ring holds ${GNTCOPY_RING_SLOTS}`);
      return;
    }
    for (let i = 0; i < count; i++) {
      const o = slotOffset(i);
      const st = this.grants.copyOne(
        this.dom,
        dv.getUint32(o + SLOT.SRC_REF, true),
        dv.getUint16(o + SLOT.SRC_DOM, true),
        dv.getUint16(o + SLOT.SRC_OFF, true),
        dv.getUint32(o + SLOT.DST_REF, true),
        dv.getUint16(o + SLOT.DST_DOM, true),
        dv.getUint16(o + SLOT.DST_OFF, true),
        dv.getUint16(o + SLOT.LEN, true),
        dv.getUint16(o + SLOT.FLAGS, true),
      );
      dv.setInt16(o + SLOT.STATUS, st, true);
    }
    this.dom.copyBatches++;
    this.dom.copyOps += count;
    native.eventfdSignal(this.done);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.watcher.close();
    native.munmap(this.buf);
    native.close(this.kick);
    native.close(this.done);
  }
}
