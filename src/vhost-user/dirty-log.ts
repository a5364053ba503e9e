// The dirty log of a migration (vhost-user.rst, "Migration"): a bitmap the frontend shares as a
// memfd, one bit per 4 KiB page of guest-physical space from address 0. While QEMU pre-copies
// guest memory it collects and clears these bits each round, so every page the backend writes
// (data buffers and used-ring entries) must be marked after the write lands, or the page is left
// behind with its old contents. QEMU clears words with an atomic exchange, so each mark is an
// atomic OR: a plain read-modify-write could undo a clear that raced it and lose a bit.
import { VHOST_LOG_PAGE } from '../abi/vhost-user.js';
import { native } from '../native/index.js';
import type { DirtyPages } from '../virtio/device.js';
import { VhostUserError } from './wire.js';

/** 256 MiB of bitmap covers 8 TiB of guest memory: a larger log is not a real one */
export const MAX_LOG_BYTES = 256 << 20;

export class DirtyLog implements DirtyPages {
  private readonly bits: Uint8Array;
  /** marks past the end of the bitmap (a frontend that sized its log too small) */
  outside = 0;

  private constructor(
    private readonly map: ArrayBuffer,
    offset: number,
    readonly size: number,
  ) {
    this.bits = new Uint8Array(map, offset, size);
  }

  /** SET_LOG_BASE: maps [offset, +size) of the frontend's log fd (the fd stays the caller's). */
  static adopt(fd: number, size: number, offset: number): DirtyLog {
    if (size === 0 || size > MAX_LOG_BYTES) throw new VhostUserError(`dirty log of ${size} bytes; 1..${MAX_LOG_BYTES} are allowed`);
    if (offset > MAX_LOG_BYTES) throw new VhostUserError(`dirty log offset ${offset} is past any real log`);
    let have: number;
    try {
      have = native.fdSize(fd);
    } catch (e) {
      throw new VhostUserError(`dirty log fd: ${(e as Error).message}`);
    }
    if (offset + size > have) throw new VhostUserError(`dirty log [${offset}, +${size}) runs past its fd (${have} bytes)`);
    let map: ArrayBuffer;
    try {
      map = native.mmap(fd, offset + size, true, 0);
    } catch (e) {
      throw new VhostUserError(`cannot map the dirty log: ${(e as Error).message}`);
    }
    return new DirtyLog(map, offset, size);
  }

  /** The guest-physical bytes the log covers. */
  get covers(): number {
    return this.size * 8 * VHOST_LOG_PAGE;
  }

  mark(gpa: number, len: number): void {
    if (len <= 0) return;
    const first = Math.floor(gpa / VHOST_LOG_PAGE);
    const last = Math.floor((gpa + len - 1) / VHOST_LOG_PAGE);
    for (let p = first; p <= last; p++) {
      if (p >= this.size * 8) {
        this.outside++;
        return;
      }
      Atomics.or(this.bits, p >>> 3, 1 << (p & 7));
    }
  }

  close(): void {
    native.munmap(this.map);
  }
}
