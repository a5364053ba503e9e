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
  /**
   * For a device that moves data into memory on its own (DMA): `listener` hears, once, that the
   * device stopped answering while it may still be moving data for outstanding requests. Those
   * requests never complete, and the memory they name must stay mapped for good; the owner
   * should stop using the device. A late listener hears it at once.
   */
  onLost?(listener: (why: string) => void): void;
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

/**
 * Memory named by bus address, as a device reaches it through its IOMMU: `count` chunks, chunk i
 * being `len[i]` bytes at `addr[i]`, in the order the bytes sit on the medium. The caller
 * preallocates one per request and refills it, so handing memory to a device allocates nothing.
 */
export class DmaList {
  count = 0;
  readonly addr: Float64Array;
  readonly len: Float64Array;

  constructor(readonly capacity: number) {
    this.addr = new Float64Array(capacity);
    this.len = new Float64Array(capacity);
  }

  /** bytes the list covers */
  get bytes(): number {
    let n = 0;
    for (let i = 0; i < this.count; i++) n += this.len[i];
    return n;
  }

  clear(): void {
    this.count = 0;
  }

  push(addr: number, len: number): void {
    if (this.count === this.capacity) throw new RangeError(`DmaList holds at most ${this.capacity} chunks`);
    this.addr[this.count] = addr;
    this.len[this.count] = len;
    this.count++;
  }
}

/**
 * A medium that moves data straight to and from memory named by bus address (Xen blkback's
 * GNTMAP_device_map pages), with no copy by its driver. Optional: a medium without it (RawFile)
 * is driven through read/readv/write/writev only.
 */
export interface DmaBlockDevice extends BlockDevice {
  /**
   * Moves the list's bytes from `position` into the memory `list` names; done once all of it
   * arrived. False, with nothing started and `done` never called, when the device cannot address
   * `list` as it is (then use read/readv): the check and the transfer are one call, made once.
   */
  readDma(list: DmaList, position: number, done: IoDone): boolean;
  /** The list's bytes from the memory it names to `position`; done once they reached the medium. False as readDma. */
  writeDma(list: DmaList, position: number, done: IoDone): boolean;
}

export function isDmaBlockDevice(dev: BlockDevice): dev is DmaBlockDevice {
  const d = dev as Partial<DmaBlockDevice>;
  return typeof d.readDma === 'function' && typeof d.writeDma === 'function';
}
