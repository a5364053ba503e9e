// The medium under blkback. Today a raw image file; the IOMMU work puts an emulated controller
// here. Callback-shaped on purpose: blkback binds one callback per preallocated request, so an I/O
// costs no closure or promise of ours.

export type IoDone = (err: Error | null) => void;

export interface BlockDeviceInfo {
  /** bytes */
  readonly size: number;
  /** logical sector size in bytes */
  readonly sectorSize: number;
  readonly physicalSectorSize: number;
  readonly readonly: boolean;
  /** discard support, in bytes; null when the device cannot discard */
  readonly discardSupport: { granularity: number; alignment: number; secure: boolean } | null;
}

export interface BlockDevice extends BlockDeviceInfo {
  readonly name: string;
  /** `length` bytes at `position` into buf[offset..]; completes only when all of it arrived */
  read(buf: Uint8Array, offset: number, length: number, position: number, done: IoDone): void;
  /** completes only when all `length` bytes reached the medium (a pwrite returned) */
  write(buf: Uint8Array, offset: number, length: number, position: number, done: IoDone): void;
  /** scatter: fills `bufs` in order from `position` (one preadv) */
  readv(bufs: Uint8Array[], position: number, done: IoDone): void;
  /** gather: writes `bufs` in order at `position` (one pwritev) */
  writev(bufs: Uint8Array[], position: number, done: IoDone): void;
  /** everything written before is durable (fdatasync) */
  flush(done: IoDone): void;
  /** the range reads back as zeroes afterwards */
  discard(position: number, length: number, done: IoDone): void;
  close(): Promise<void>;
}

export class BlockDeviceError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'BlockDeviceError';
  }
}
