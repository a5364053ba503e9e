// A caller's operation is cut into parts, one ring request each. A part lives until the backend
// answered it; if the backend goes away first it is kept and issued again after reconnect.
import { DiskError } from '../blkif/disk.js';

export const enum PartKind {
  Read = 0,
  Write = 1,
  Flush = 2,
  Discard = 3,
}

export class UserOp {
  remaining = 0;
  error: DiskError | null = null;
  constructor(
    readonly resolve: () => void,
    readonly reject: (e: DiskError) => void,
  ) {}

  partDone(err: DiskError | null): void {
    if (err && !this.error) this.error = err;
    if (--this.remaining === 0) {
      if (this.error) this.reject(this.error);
      else this.resolve();
    }
  }
}

export class Part {
  /** issue order, so replays keep it */
  seq = 0;
  constructor(
    readonly kind: PartKind,
    public sector: number,
    /** sectors (read/write/discard) */
    public count: number,
    readonly buf: Uint8Array | null,
    public bufOff: number,
    readonly secure: boolean,
    readonly op: UserOp,
  ) {}
}
