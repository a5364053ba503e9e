// Frames waiting for a guest to post rx buffers, copied into the vif's own memory so the sender's
// staging can be reused. Bounded in frames and bytes: when it is full, new frames are dropped
// and counted (XSA-392: a guest that never posts buffers must not make netdom buffer without
// bound).
import { copyMeta, newPacketMeta } from '../packet/meta.js';
import type { SwitchFrame } from '../netswitch/frame.js';

export class Backlog {
  private readonly offs: Int32Array;
  private readonly lens: Int32Array;
  private readonly times: Float64Array;
  private readonly metas;
  private head = 0;
  count = 0;
  bytes = 0;
  private h = 0;
  private t = 0;
  /** the frame at the head, as peek() returns it */
  private readonly front: SwitchFrame;

  constructor(
    readonly mem: Uint8Array,
    private readonly base: number,
    readonly capacity: number,
    readonly maxFrames: number,
  ) {
    this.offs = new Int32Array(maxFrames);
    this.lens = new Int32Array(maxFrames);
    this.times = new Float64Array(maxFrames);
    this.metas = Array.from({ length: maxFrames }, () => newPacketMeta());
    this.front = { mem, off: 0, len: 0, meta: newPacketMeta() };
  }

  /** copies the frame in; false when there is no room (the caller drops it) */
  push(f: SwitchFrame, now: number): boolean {
    if (this.count >= this.maxFrames) return false;
    const len = f.len;
    if (this.count === 0) this.h = this.t = 0;
    let at: number;
    if (this.t >= this.h) {
      if (this.t + len <= this.capacity) at = this.t;
      else if (len < this.h) at = 0;
      else return false;
    } else if (this.t + len < this.h) at = this.t;
    else return false;
    // netback's frames sit in the same memory as its backlog; a VM port's may come from elsewhere
    // (a software-GSO segment), and only this slow path pays for the view
    if (f.mem === this.mem) this.mem.copyWithin(this.base + at, f.off, f.off + len);
    else this.mem.set(f.mem.subarray(f.off, f.off + len), this.base + at);
    this.t = at + len;
    const i = (this.head + this.count) % this.maxFrames;
    this.offs[i] = at;
    this.lens[i] = len;
    this.times[i] = now;
    copyMeta(this.metas[i], f.meta);
    this.count++;
    this.bytes += len;
    return true;
  }

  /** the oldest frame (valid until the next pop or push), or null */
  peek(k = 0): SwitchFrame | null {
    if (k >= this.count) return null;
    const i = (this.head + k) % this.maxFrames;
    const f = this.front;
    f.off = this.base + this.offs[i];
    f.len = this.lens[i];
    f.meta = this.metas[i];
    return f;
  }

  ageOfHead(now: number): number {
    return this.count === 0 ? 0 : now - this.times[this.head];
  }

  pop(): void {
    if (this.count === 0) return;
    this.bytes -= this.lens[this.head];
    this.head = (this.head + 1) % this.maxFrames;
    this.count--;
    if (this.count === 0) this.h = this.t = 0;
    else this.h = this.offs[this.head];
  }

  clear(): number {
    const n = this.count;
    this.count = 0;
    this.bytes = 0;
    this.head = 0;
    this.h = this.t = 0;
    return n;
  }
}
