// A DMA block device whose driver has a bug (or an attacker in the driver domain): it has the
// device write the pages of a WRITE request instead of reading them. Tests use it to show that the
// IOMMU refuses such a write into a read-only device_map grant.
import type { DmaBlockDevice, DmaList, IoDone } from '../../blkdev/device.js';

export class DirectionSwapped implements DmaBlockDevice {
  readonly name: string;
  readonly size: number;
  readonly sectorSize: number;
  readonly physicalSectorSize: number;
  readonly readonly: boolean;
  readonly discardSupport: DmaBlockDevice['discardSupport'];

  constructor(private readonly d: DmaBlockDevice) {
    this.name = d.name;
    this.size = d.size;
    this.sectorSize = d.sectorSize;
    this.physicalSectorSize = d.physicalSectorSize;
    this.readonly = d.readonly;
    this.discardSupport = d.discardSupport;
  }

  readDma(l: DmaList, pos: number, done: IoDone): boolean {
    return this.d.readDma(l, pos, done);
  }
  /** the bug */
  writeDma(l: DmaList, pos: number, done: IoDone): boolean {
    return this.d.readDma(l, pos, done);
  }
  onLost(listener: (why: string) => void): void {
    this.d.onLost?.(listener);
  }
  read(b: Uint8Array, o: number, n: number, pos: number, done: IoDone): void {
    this.d.read(b, o, n, pos, done);
  }
  write(b: Uint8Array, o: number, n: number, pos: number, done: IoDone): void {
    this.d.write(b, o, n, pos, done);
  }
  readv(b: Uint8Array[], pos: number, done: IoDone): void {
    this.d.readv(b, pos, done);
  }
  writev(b: Uint8Array[], pos: number, done: IoDone): void {
    this.d.writev(b, pos, done);
  }
  flush(done: IoDone): void {
    this.d.flush(done);
  }
  discard(pos: number, n: number, done: IoDone): void {
    this.d.discard(pos, n, done);
  }
  close(): Promise<void> {
    return this.d.close();
  }
}
