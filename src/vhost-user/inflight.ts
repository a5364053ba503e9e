// The inflight region (vhost-user.rst, "Inflight I/O tracking"): shared memory the backend
// allocates and QEMU keeps, in which the backend marks each head it takes and clears it once the
// head is on the used ring. When the backend dies, QEMU hands the same region to its successor,
// which resubmits what was marked, oldest first, so no request the guest made is lost or done
// out of order. A crash between writing the used ring and clearing the mark is caught by the
// region's own copy of the used index.
import {
  INFLIGHT_DESC_COUNTER,
  INFLIGHT_DESC_INFLIGHT,
  INFLIGHT_DESC_SIZE,
  INFLIGHT_Q_DESC,
  INFLIGHT_Q_DESC_NUM,
  INFLIGHT_Q_LAST_BATCH_HEAD,
  INFLIGHT_Q_USED_IDX,
  INFLIGHT_Q_VERSION,
  INFLIGHT_VERSION,
  inflightQueueBytes,
} from '../abi/vhost-user.js';
import { native } from '../native/index.js';
import { VhostUserError } from './wire.js';

export class InflightRegion {
  private constructor(
    readonly fd: number,
    private readonly map: ArrayBuffer,
    private readonly offset: number,
    readonly size: number,
    readonly numQueues: number,
    readonly queueSize: number,
  ) {}

  /** GET_INFLIGHT_FD: a fresh, zeroed region for `numQueues` queues of `queueSize`. */
  static create(numQueues: number, queueSize: number): InflightRegion {
    const size = numQueues * inflightQueueBytes(queueSize);
    const fd = native.memfdCreate('vhost-user-inflight', size);
    return new InflightRegion(fd, native.mmap(fd, size, true, 0), 0, size, numQueues, queueSize);
  }

  /** SET_INFLIGHT_FD: the region a previous backend (or we) filled, checked against its fd. */
  static adopt(fd: number, size: number, offset: number, numQueues: number, queueSize: number): InflightRegion {
    if (numQueues < 1 || queueSize < 1 || queueSize > 32768) throw new VhostUserError(`inflight region for ${numQueues} queues of ${queueSize}: out of range`);
    const need = numQueues * inflightQueueBytes(queueSize);
    if (size < need) throw new VhostUserError(`inflight region of ${size} bytes is smaller than ${numQueues} queues of ${queueSize} need (${need})`);
    if (offset % 4096 !== 0) throw new VhostUserError(`inflight region offset ${offset} is not page aligned`);
    const have = native.fdSize(fd);
    if (offset + size > have) throw new VhostUserError(`inflight region [${offset}, +${size}) runs past its fd (${have} bytes)`);
    const map = native.mmap(fd, offset + size, true, 0);
    return new InflightRegion(fd, map, offset, size, numQueues, queueSize);
  }

  queue(index: number, size: number): InflightQueue {
    if (index >= this.numQueues) throw new VhostUserError(`queue ${index} has no inflight record (the region covers ${this.numQueues})`);
    if (size > this.queueSize) throw new VhostUserError(`queue ${index} has ${size} entries; the inflight region was made for ${this.queueSize}`);
    const base = this.offset + index * inflightQueueBytes(this.queueSize);
    return new InflightQueue(new DataView(this.map, base, inflightQueueBytes(this.queueSize)), size);
  }

  close(): void {
    native.munmap(this.map);
    native.close(this.fd);
  }
}

export class InflightQueue {
  private counter = 0;

  constructor(
    private readonly v: DataView,
    private readonly size: number,
  ) {}

  /**
   * Readies the record for a queue starting with the guest's used index `usedIdx`; returns the
   * heads to resubmit, oldest first. A fresh record (version 0) is initialised instead.
   */
  recover(usedIdx: number): number[] {
    const v = this.v;
    if (v.getUint16(INFLIGHT_Q_VERSION, true) === 0) {
      v.setUint16(INFLIGHT_Q_VERSION, INFLIGHT_VERSION, true);
      v.setUint16(INFLIGHT_Q_DESC_NUM, this.size, true);
      v.setUint16(INFLIGHT_Q_USED_IDX, usedIdx, true);
      return [];
    }
    if (v.getUint16(INFLIGHT_Q_VERSION, true) !== INFLIGHT_VERSION) throw new VhostUserError(`inflight record has version ${v.getUint16(INFLIGHT_Q_VERSION, true)}; we know ${INFLIGHT_VERSION}`);
    if (v.getUint16(INFLIGHT_Q_USED_IDX, true) !== usedIdx) {
      // The last head went on the used ring but its mark was never cleared.
      const last = v.getUint16(INFLIGHT_Q_LAST_BATCH_HEAD, true);
      if (last < this.size) v.setUint8(this.at(last) + INFLIGHT_DESC_INFLIGHT, 0);
      v.setUint16(INFLIGHT_Q_USED_IDX, usedIdx, true);
    }
    const heads: { head: number; counter: number }[] = [];
    for (let h = 0; h < this.size; h++) {
      const c = v.getUint32(this.at(h) + INFLIGHT_DESC_COUNTER, true) + v.getUint32(this.at(h) + INFLIGHT_DESC_COUNTER + 4, true) * 2 ** 32;
      if (c > this.counter) this.counter = c;
      if (v.getUint8(this.at(h) + INFLIGHT_DESC_INFLIGHT) === 1) heads.push({ head: h, counter: c });
    }
    heads.sort((a, b) => a.counter - b.counter);
    return heads.map((x) => x.head);
  }

  began(head: number): void {
    const o = this.at(head);
    this.counter++;
    // two u32 halves: a BigInt per request would allocate
    this.v.setUint32(o + INFLIGHT_DESC_COUNTER, this.counter >>> 0, true);
    this.v.setUint32(o + INFLIGHT_DESC_COUNTER + 4, Math.floor(this.counter / 2 ** 32), true);
    this.v.setUint8(o + INFLIGHT_DESC_INFLIGHT, 1);
  }

  completing(head: number): void {
    this.v.setUint16(INFLIGHT_Q_LAST_BATCH_HEAD, head, true);
  }

  completed(head: number, usedIdx: number): void {
    this.v.setUint8(this.at(head) + INFLIGHT_DESC_INFLIGHT, 0);
    this.v.setUint16(INFLIGHT_Q_USED_IDX, usedIdx, true);
  }

  private at(head: number): number {
    return INFLIGHT_Q_DESC + head * INFLIGHT_DESC_SIZE;
  }
}
