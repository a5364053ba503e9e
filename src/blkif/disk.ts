// The block API a guest's software sees: what blkfront offers and what the NBD export serves.
// Any object with this shape can sit under the NBD server (blkfront, a raw file in tests).

export interface VirtualDiskFeatures {
  flush: boolean;
  /** a write can be made durable before it completes */
  fua: boolean;
  discard: boolean;
  secureDiscard: boolean;
}

export interface WriteOptions {
  /** durable on the medium before the promise resolves */
  fua?: boolean;
}

export interface VirtualDisk {
  /** capacity in 512-byte sectors */
  readonly sectors: number;
  readonly readonly: boolean;
  readonly features: VirtualDiskFeatures;
  /** Fills `buf` (a multiple of 512 bytes) from `sector`. `buf` must stay untouched until it settles. */
  read(sector: number, buf: Uint8Array): Promise<void>;
  /** Writes `buf` (a multiple of 512 bytes) at `sector`. `buf` must stay untouched until it settles. */
  write(sector: number, buf: Uint8Array, opts?: WriteOptions): Promise<void>;
  /** Everything completed before this call is on the medium when it resolves. */
  flush(): Promise<void>;
  discard(sector: number, count: number, opts?: { secure?: boolean }): Promise<void>;
}

/** An error a VirtualDisk reports, with the errno-like code the NBD layer maps to the wire. */
export class DiskError extends Error {
  constructor(
    readonly code: 'EIO' | 'EINVAL' | 'EPERM' | 'ENOSPC' | 'EOPNOTSUPP' | 'ESHUTDOWN',
    message: string,
  ) {
    super(message);
    this.name = 'DiskError';
  }
}

export const SECTOR = 512;
