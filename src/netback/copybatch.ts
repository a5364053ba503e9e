// One batch of GNTTABOP_copy operations, allocated once. With a grant-copy ring attached (a real
// domain) each op is written straight into a slot of memory shared with hv and the batch is one
// kick; without one (the in-process stand-in) the ops are objects mutated in place and run as a
// few gnttab_copy calls of at most 512 ops each, issued together so their round trips overlap.
import { DOMID_SELF, GNTST } from '../abi/grant.js';
import type { GntCopyOp } from '../hypercall/protocol.js';
import type { CopyRingPort, MapService } from '../domain/services.js';

export const OPS_PER_CALL = 512;

export class CopyBatch {
  private readonly pool: GntCopyOp[] = [];
  private readonly calls: GntCopyOp[][] = [];
  readonly statuses: Int16Array;
  n = 0;
  private ring: CopyRingPort | null = null;

  constructor(readonly capacity: number) {
    this.statuses = new Int16Array(capacity);
  }

  /** The op objects the hypercall path mutates in place: built once, on its first op, never on a ring. */
  private buildPool(): void {
    for (let i = 0; i < this.capacity; i++) {
      this.pool.push({ source: { ref: 0, domid: 0, offset: 0 }, dest: { ref: 0, domid: 0, offset: 0 }, len: 0, flags: 0 });
    }
    for (let i = 0; i < Math.ceil(this.capacity / OPS_PER_CALL); i++) this.calls.push([]);
  }

  /** Moves the batch onto a grant-copy ring; only between rounds (no op added since reset). */
  attach(ring: CopyRingPort): void {
    if (ring.capacity < this.capacity) throw new RangeError(`a ${ring.capacity}-slot ring cannot carry a ${this.capacity}-op batch`);
    if (this.n !== 0) throw new Error('a copy batch moves to a ring only between rounds');
    this.ring = ring;
  }

  get onRing(): boolean {
    return this.ring !== null;
  }

  get free(): number {
    return this.capacity - this.n;
  }

  reset(): void {
    this.n = 0;
  }

  add(srcRef: number, srcDom: number, srcOff: number, dstRef: number, dstDom: number, dstOff: number, len: number, flags: number): number {
    const i = this.n++;
    if (this.ring !== null) {
      this.ring.set(i, srcRef, srcDom, srcOff, dstRef, dstDom, dstOff, len, flags);
      return i;
    }
    if (this.pool.length === 0) this.buildPool();
    const op = this.pool[i];
    op.source.ref = srcRef;
    op.source.domid = srcDom;
    op.source.offset = srcOff;
    op.dest.ref = dstRef;
    op.dest.domid = dstDom;
    op.dest.offset = dstOff;
    op.len = len;
    op.flags = flags;
    return i;
  }

  /** Runs every op; afterwards statuses[i] is op i's GNTST code. */
  async run(mapper: MapService): Promise<void> {
    const n = this.n;
    if (n === 0) return;
    const ring = this.ring;
    if (ring !== null) {
      try {
        await ring.run(n);
        for (let i = 0; i < n; i++) this.statuses[i] = ring.status(i);
      } catch {
        this.statuses.fill(GNTST.general_error, 0, n);
      }
      return;
    }
    const pending: Promise<void>[] = [];
    for (let c = 0, start = 0; start < n; c++, start += OPS_PER_CALL) {
      const arr = this.calls[c];
      arr.length = 0;
      const end = Math.min(n, start + OPS_PER_CALL);
      for (let i = start; i < end; i++) arr.push(this.pool[i]);
      pending.push(
        mapper.copy(arr).then(
          (st) => {
            for (let i = start; i < end; i++) this.statuses[i] = st[i - start] ?? GNTST.general_error;
          },
          () => {
            this.statuses.fill(GNTST.general_error, start, end);
          },
        ),
      );
    }
    await Promise.all(pending);
  }

  /** first failing status among ops [from, to), or 0 */
  firstError(from: number, to: number): number {
    for (let i = from; i < to; i++) if (this.statuses[i] !== GNTST.okay) return this.statuses[i];
    return 0;
  }
}

export { DOMID_SELF };
