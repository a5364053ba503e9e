// A BlockDevice seen through the guest-side block API, without any ring in between: the NBD
// server's unit tests and the benchmark's "no blkif" baseline use it.
import { DiskError, type VirtualDisk, type VirtualDiskFeatures, type WriteOptions } from '../blkif/disk.js';
import type { BlockDevice } from './device.js';

export class DeviceDisk implements VirtualDisk {
  readonly sectors: number;
  readonly readonly: boolean;
  readonly features: VirtualDiskFeatures;

  constructor(private readonly dev: BlockDevice) {
    this.sectors = Math.floor(dev.size / 512);
    this.readonly = dev.readonly;
    this.features = { flush: true, fua: true, discard: dev.discardSupport !== null, secureDiscard: dev.discardSupport?.secure ?? false };
  }

  read(sector: number, buf: Uint8Array): Promise<void> {
    return this.io((done) => this.dev.read(buf, 0, buf.length, sector * 512, done));
  }

  async write(sector: number, buf: Uint8Array, opts?: WriteOptions): Promise<void> {
    if (this.readonly) throw new DiskError('EPERM', `${this.dev.name} is read-only`);
    await this.io((done) => this.dev.write(buf, 0, buf.length, sector * 512, done));
    if (opts?.fua) await this.flush();
  }

  flush(): Promise<void> {
    return this.io((done) => this.dev.flush(done));
  }

  discard(sector: number, count: number): Promise<void> {
    if (!this.features.discard) return Promise.reject(new DiskError('EOPNOTSUPP', 'no discard'));
    return this.io((done) => this.dev.discard(sector * 512, count * 512, done));
  }

  private io(start: (done: (err: Error | null) => void) => void): Promise<void> {
    return new Promise((resolve, reject) =>
      start((err) => (err ? reject(new DiskError('EIO', err.message)) : resolve())),
    );
  }
}
