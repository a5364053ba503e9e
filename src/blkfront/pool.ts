// A fixed pool of frames granted to the backend once and reused for every request: what
// feature-persistent lets the backend map once. Granted writable even when only reads use them
// (a page serves reads and writes over its life). Data is copied between the caller's buffers
// and these pages, so the caller's memory is never exposed to the backend.
import type { FrontendServices } from '../domain/services.js';

export class GrantPool {
  readonly gfns: Int32Array;
  readonly refs: Uint32Array;
  readonly pages: Uint8Array[];
  private readonly freeList: Int32Array;
  private nfree: number;

  constructor(
    private readonly env: FrontendServices,
    backendDomid: number,
    readonly size: number,
  ) {
    this.gfns = new Int32Array(size);
    this.refs = new Uint32Array(size);
    this.pages = [];
    this.freeList = new Int32Array(size);
    for (let i = 0; i < size; i++) {
      const gfn = env.frames.alloc();
      this.gfns[i] = gfn;
      this.refs[i] = env.grants.grantAccess(backendDomid, gfn, false);
      this.pages.push(env.frames.view(gfn));
      this.freeList[i] = size - 1 - i;
    }
    this.nfree = size;
  }

  get free(): number {
    return this.nfree;
  }

  /** a page index; the caller checked `free` */
  take(): number {
    return this.freeList[--this.nfree];
  }

  give(i: number): void {
    this.freeList[this.nfree++] = i;
  }

  /**
   * Revokes every grant and returns the frames. A grant the backend still maps cannot be revoked;
   * its frame is left granted (leaked) rather than reused while someone else can write it.
   */
  release(): number {
    let leaked = 0;
    for (let i = 0; i < this.size; i++) {
      if (this.env.grants.endAccess(this.refs[i])) this.env.frames.release(this.gfns[i]);
      else leaked++;
    }
    return leaked;
  }
}
