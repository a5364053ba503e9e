// A raw image file as a block device, like Xen's qdisk backend with format=raw. Reads and writes
// are pread/pwrite into the caller's buffer (a mapped grant, or a bounce buffer), a write
// completes when pwrite returned, flush is fdatasync.
//
// Discard punches a hole (fallocate PUNCH_HOLE | KEEP_SIZE): the range reads back as zeroes and
// its blocks are freed. On a filesystem that cannot punch holes it writes zeroes instead, which
// keeps the same contract (nothing stale survives a secure discard) at the cost of space.
import { close, fdatasync, fstat, open, read, readSync, readv, readvSync, write, writeSync, writev, writevSync, constants } from 'node:fs';
import { BlockDeviceError, type BlockDevice, type IoDone } from './device.js';
import { errnoCode, native } from '../native/index.js';

const ZERO_CHUNK = 1 << 20;

function total(bufs: Uint8Array[]): number {
  let n = 0;
  for (let i = 0; i < bufs.length; i++) n += bufs[i].length;
  return n;
}
let zeroes: Uint8Array | null = null;

export interface RawFileOptions {
  readonly?: boolean;
  /** advertised logical sector size (default 512) */
  sectorSize?: number;
  /**
   * Transfers up to this many bytes are done inline (pread/pwrite on the event loop) instead of
   * on libuv's thread pool. A page-cache hit takes microseconds, the thread-pool round trip tens
   * of them; a miss blocks the loop for a disk access. Default 64 KiB; 0 = always thread pool.
   */
  inlineMaxBytes?: number;
}

export class RawFile implements BlockDevice {
  readonly discardSupport: { granularity: number; alignment: number; secure: boolean } | null;
  readonly physicalSectorSize = 4096;
  private closed = false;

  private constructor(
    readonly name: string,
    private readonly fd: number,
    readonly size: number,
    readonly readonly: boolean,
    readonly sectorSize: number,
    private readonly inlineMax: number,
  ) {
    this.discardSupport = readonly ? null : { granularity: 4096, alignment: 0, secure: true };
  }

  static open(path: string, opts: RawFileOptions = {}): Promise<RawFile> {
    const ro = opts.readonly ?? false;
    return new Promise((resolve, reject) => {
      open(path, ro ? constants.O_RDONLY : constants.O_RDWR, (err, fd) => {
        if (err) return reject(new BlockDeviceError(err.code ?? 'EIO', `cannot open ${path}: ${err.message}`));
        fstat(fd, (e2, st) => {
          if (e2) {
            close(fd, () => undefined);
            return reject(new BlockDeviceError(e2.code ?? 'EIO', `cannot stat ${path}: ${e2.message}`));
          }
          if (!st.isFile() && !st.isBlockDevice()) {
            close(fd, () => undefined);
            return reject(new BlockDeviceError('EINVAL', `${path} is not a regular file`));
          }
          resolve(new RawFile(path, fd, st.size, ro, opts.sectorSize ?? 512, opts.inlineMaxBytes ?? 64 * 1024));
        });
      });
    });
  }

  read(buf: Uint8Array, offset: number, length: number, position: number, done: IoDone): void {
    if (!this.inRange(position, length, done)) return;
    if (length <= this.inlineMax) {
      let n: number;
      try {
        n = readSync(this.fd, buf, offset, length, position);
      } catch (e) {
        return done(e as Error);
      }
      if (n === length) return done(null);
      return this.finishRead(buf, offset + n, length - n, position + n, done);
    }
    read(this.fd, buf, offset, length, position, (err, n) => {
      if (err) return done(err);
      if (n === length) return done(null);
      this.finishRead(buf, offset + n, length - n, position + n, done);
    });
  }

  write(buf: Uint8Array, offset: number, length: number, position: number, done: IoDone): void {
    if (this.readonly) return done(new BlockDeviceError('EROFS', `${this.name} is read-only`));
    if (!this.inRange(position, length, done)) return;
    if (length <= this.inlineMax) {
      let n: number;
      try {
        n = writeSync(this.fd, buf, offset, length, position);
      } catch (e) {
        return done(e as Error);
      }
      if (n === length) return done(null);
      return this.finishWrite(buf, offset + n, length - n, position + n, done);
    }
    write(this.fd, buf, offset, length, position, (err, n) => {
      if (err) return done(err);
      if (n === length) return done(null);
      this.finishWrite(buf, offset + n, length - n, position + n, done);
    });
  }

  readv(bufs: Uint8Array[], position: number, done: IoDone): void {
    const length = total(bufs);
    if (!this.inRange(position, length, done)) return;
    if (length <= this.inlineMax) {
      let n: number;
      try {
        n = readvSync(this.fd, bufs, position);
      } catch (e) {
        return done(e as Error);
      }
      return n === length ? done(null) : this.finishVector(false, bufs, n, position, done);
    }
    readv(this.fd, bufs, position, (err, n) => {
      if (err) return done(err);
      if (n === length) return done(null);
      this.finishVector(false, bufs, n, position, done);
    });
  }

  writev(bufs: Uint8Array[], position: number, done: IoDone): void {
    if (this.readonly) return done(new BlockDeviceError('EROFS', `${this.name} is read-only`));
    const length = total(bufs);
    if (!this.inRange(position, length, done)) return;
    if (length <= this.inlineMax) {
      let n: number;
      try {
        n = writevSync(this.fd, bufs, position);
      } catch (e) {
        return done(e as Error);
      }
      return n === length ? done(null) : this.finishVector(true, bufs, n, position, done);
    }
    writev(this.fd, bufs, position, (err, n) => {
      if (err) return done(err);
      if (n === length) return done(null);
      this.finishVector(true, bufs, n, position, done);
    });
  }

  /** after a short vectored transfer: the rest buffer by buffer (rare; may allocate) */
  private finishVector(isWrite: boolean, bufs: Uint8Array[], done0: number, position: number, done: IoDone): void {
    const rest: [Uint8Array, number][] = [];
    let skip = done0;
    let pos = position + done0;
    for (const b of bufs) {
      if (skip >= b.length) {
        skip -= b.length;
        continue;
      }
      rest.push([b.subarray(skip), pos]);
      pos += b.length - skip;
      skip = 0;
    }
    const step = (i: number): void => {
      if (i === rest.length) return done(null);
      const [b, p] = rest[i];
      const next = (err: Error | null) => (err ? done(err) : step(i + 1));
      if (isWrite) this.finishWrite(b, 0, b.length, p, next);
      else this.finishRead(b, 0, b.length, p, next);
    };
    step(0);
  }

  flush(done: IoDone): void {
    if (this.closed) return done(new BlockDeviceError('EBADF', `${this.name} is closed`));
    fdatasync(this.fd, done);
  }

  discard(position: number, length: number, done: IoDone): void {
    if (this.readonly) return done(new BlockDeviceError('EROFS', `${this.name} is read-only`));
    if (!this.inRange(position, length, done)) return;
    try {
      native.punchHole(this.fd, position, length);
      return done(null);
    } catch (e) {
      if (errnoCode(e) !== 'EOPNOTSUPP') return done(new BlockDeviceError('EIO', `${this.name}: discard: ${(e as Error).message}`));
    }
    zeroes ??= new Uint8Array(ZERO_CHUNK);
    const z = zeroes;
    const step = (pos: number, left: number): void => {
      if (left === 0) return done(null);
      const n = left < ZERO_CHUNK ? left : ZERO_CHUNK;
      this.write(z, 0, n, pos, (err) => (err ? done(err) : step(pos + n, left - n)));
    };
    step(position, length);
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    return new Promise((resolve) => close(this.fd, () => resolve()));
  }

  private inRange(position: number, length: number, done: IoDone): boolean {
    if (this.closed) {
      done(new BlockDeviceError('EBADF', `${this.name} is closed`));
      return false;
    }
    if (!(position >= 0 && length >= 0 && position + length <= this.size)) {
      done(new BlockDeviceError('EINVAL', `${this.name}: [${position}, +${length}) outside ${this.size} bytes`));
      return false;
    }
    return true;
  }

  // Short transfers are rare on regular files (signals, a file truncated under us); the slow
  // path may allocate.
  private finishRead(buf: Uint8Array, offset: number, length: number, position: number, done: IoDone): void {
    read(this.fd, buf, offset, length, position, (err, n) => {
      if (err) return done(err);
      if (n === 0) return done(new BlockDeviceError('EIO', `${this.name}: end of file at ${position} (image shrank?)`));
      if (n === length) return done(null);
      this.finishRead(buf, offset + n, length - n, position + n, done);
    });
  }

  private finishWrite(buf: Uint8Array, offset: number, length: number, position: number, done: IoDone): void {
    write(this.fd, buf, offset, length, position, (err, n) => {
      if (err) return done(err);
      if (n === 0) return done(new BlockDeviceError('EIO', `${this.name}: pwrite wrote nothing at ${position}`));
      if (n === length) return done(null);
      this.finishWrite(buf, offset + n, length - n, position + n, done);
    });
  }
}
