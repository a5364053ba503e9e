// A domain's grantable I/O frames, mapped once at boot into one contiguous view (frame gfn at
// byte gfn * 4096). Drivers allocate frames for rings and data pages from here and grant them.
import { native, PAGE_SIZE } from '../native/index.js';

export class FramePool {
  readonly memory: Uint8Array;
  private readonly free: number[] = [];
  private readonly inUse: Uint8Array;

  constructor(fds: number[]) {
    this.memory = fds.length > 0 ? new Uint8Array(native.mmapFrames(fds, true)) : new Uint8Array(0);
    this.inUse = new Uint8Array(fds.length);
    for (let i = fds.length - 1; i >= 0; i--) this.free.push(i);
  }

  get total(): number {
    return this.inUse.length;
  }

  get available(): number {
    return this.free.length;
  }

  alloc(): number {
    const gfn = this.free.pop();
    if (gfn === undefined) throw new Error(`out of I/O frames (all ${this.total} in use): raise the domain's frames`);
    this.inUse[gfn] = 1;
    return gfn;
  }

  /** `n` frames at consecutive gfns (multi-page rings want them adjacent in our view). */
  allocContiguous(n: number): number {
    const sorted = [...this.free].sort((a, b) => a - b);
    for (let i = 0; i + n <= sorted.length; i++) {
      if (sorted[i + n - 1] - sorted[i] === n - 1) {
        const first = sorted[i];
        for (let g = first; g < first + n; g++) {
          this.free.splice(this.free.indexOf(g), 1);
          this.inUse[g] = 1;
        }
        return first;
      }
    }
    throw new Error(`no ${n} contiguous free I/O frames (${this.free.length} free)`);
  }

  release(gfn: number): void {
    if (gfn < 0 || gfn >= this.inUse.length || !this.inUse[gfn]) throw new Error(`frame ${gfn} is not allocated`);
    this.inUse[gfn] = 0;
    this.free.push(gfn);
  }

  view(gfn: number, pages = 1): Uint8Array {
    if (gfn < 0 || gfn + pages > this.inUse.length) throw new RangeError(`frames ${gfn}..${gfn + pages - 1} outside 0..${this.inUse.length - 1}`);
    return this.memory.subarray(gfn * PAGE_SIZE, (gfn + pages) * PAGE_SIZE);
  }
}
