// An in-process platform for device-model tests: page memory, a VT-d unit with its tables, an
// IOMMU domain for the device's owner, and driver memory that the owner's domain maps 1:1 into
// IOVA space the way hv maps a domain's frames. Tests and the bench use it; hv does not.
import { BumpFrames } from '../memory/physmem.js';
import { VtdUnit } from './vtd/unit.js';
import { IommuDomains } from '../../iommu/platform/iommu-domains.js';
import type { FaultInfo } from './vtd/faults.js';
import { readv, writev, read, write, fdatasync } from 'node:fs';
import { PageMemory } from './dma.js';
import type { MediumIo } from './nvme.js';
import type { DevicePort, DmaPages, DriverMemory } from '../drivers/port.js';
import { parseBdf, type Bdf } from '../config/bdf.js';

/** Owner memory sits at pa OWNER_PA + iova; tables at TABLES_PA. */
export const OWNER_PA = 0x10000000;
export const TABLES_PA = 0x40000000;

export interface Rig {
  mem: PageMemory;
  unit: VtdUnit;
  iommu: IommuDomains;
  faults: FaultInfo[];
  bdf: Bdf;
  sid: number;
  /** driver memory: next iova handed out, mapped in the owner's domain */
  driverMem: DriverMemory;
  /** pages of driverMem allocated and not yet freed */
  driverPagesHeld(): number;
  /** a port whose doorbell kicks `kick` and whose interrupt is delivered on the next turn */
  port(bar: Uint8Array, kick: () => void): DevicePort & { raise(): void };
}

export function makeRig(opts: { owner?: number; bdf?: string } = {}): Rig {
  const mem = new PageMemory(2 ** 39);
  const faults: FaultInfo[] = [];
  const unit = new VtdUnit(mem, { onFault: (f) => faults.push(f) });
  const iommu = new IommuDomains(unit, mem, new BumpFrames(mem, TABLES_PA), { queued: true });
  const bdf = parseBdf(opts.bdf ?? '01:00.0') as Bdf;
  const owner = opts.owner ?? 1;
  iommu.attach(bdf, owner);
  let next = 0x1000;
  /** iova -> pages of what is allocated (iovas are never reused, so a stale DMA faults) */
  const held = new Map<number, number>();
  const driverMem: DriverMemory = {
    alloc(pages: number): DmaPages {
      const iova = next;
      next += pages * 4096;
      for (let i = 0; i < pages; i++) iommu.map(owner, iova + i * 4096, OWNER_PA + iova + i * 4096, { read: true, write: true });
      held.set(iova, pages);
      // the driver's view: one contiguous buffer mirrored into the page memory on demand
      return { iova, bytes: new MirrorBytes(mem, OWNER_PA + iova, pages * 4096).view };
    },
    free(p: DmaPages): void {
      const pages = held.get(p.iova);
      if (pages === undefined || pages * 4096 !== p.bytes.length) throw new Error(`free of iova 0x${p.iova.toString(16)} that is not allocated as ${p.bytes.length} bytes`);
      held.delete(p.iova);
      for (let i = 0; i < pages; i++) iommu.unmap(owner, p.iova + i * 4096);
    },
  };
  const driverPagesHeld = () => [...held.values()].reduce((a, b) => a + b, 0);
  return {
    mem, unit, iommu, faults, bdf, sid: (bdf.bus << 8) | (bdf.dev << 3) | bdf.fn, driverMem, driverPagesHeld,
    port(bar, kick) {
      let cb: (() => void) | null = null;
      let scheduled = false;
      return {
        bar,
        ring: () => kick(),
        onIrq: (f) => {
          cb = f;
        },
        close: () => {
          cb = null;
        },
        raise: () => {
          if (scheduled) return;
          scheduled = true;
          setImmediate(() => {
            scheduled = false;
            cb?.();
          });
        },
      };
    },
  };
}

/**
 * Driver memory must be one contiguous buffer while the device sees 4 KiB pages: build the
 * driver's view over the very page buffers of the page memory by backing both with one
 * ArrayBuffer per allocation.
 */
class MirrorBytes {
  readonly view: Uint8Array;
  constructor(mem: PageMemory, pa: number, len: number) {
    const ab = new ArrayBuffer(len);
    this.view = new Uint8Array(ab);
    for (let i = 0; i < len; i += 4096) mem.adopt((pa + i) / 4096, new Uint8Array(ab, i, 4096));
  }
}

/** One vectored medium transfer a HeldMedium is holding back. */
export interface HeldTransfer {
  kind: 'readv' | 'writev';
  pos: number;
  bytes: number;
  /** the real preadv/pwritev returned (its bytes are in memory or on the file) */
  landed: boolean;
  released: boolean;
}

/**
 * The medium's system calls, with the vectored transfers (every read and write the model batches)
 * held back while `holding`, until the test releases them: a medium as slow as the test wants.
 * Held or not, a transfer runs node:fs's call, so its bytes really land.
 */
export class HeldMedium implements MediumIo {
  holding = true;
  readonly held: HeldTransfer[] = [];
  private readonly go: (() => void)[] = [];

  readv(fd: number, iov: Uint8Array[], pos: number, done: (err: Error | null, n: number) => void): void {
    this.hold('readv', iov, pos, (t) => readv(fd, iov, pos, (err, n) => this.landed(t, done, err, n)));
  }

  writev(fd: number, iov: Uint8Array[], pos: number, done: (err: Error | null, n: number) => void): void {
    this.hold('writev', iov, pos, (t) => writev(fd, iov, pos, (err, n) => this.landed(t, done, err, n)));
  }

  read(fd: number, buf: Uint8Array, off: number, len: number, pos: number, done: (err: Error | null, n: number) => void): void {
    read(fd, buf, off, len, pos, done);
  }

  write(fd: number, buf: Uint8Array, off: number, len: number, pos: number, done: (err: Error | null, n: number) => void): void {
    write(fd, buf, off, len, pos, done);
  }

  fdatasync(fd: number, done: (err: Error | null) => void): void {
    fdatasync(fd, done);
  }

  /** Lets held transfer `i` run. */
  release(i: number): void {
    const t = this.held[i];
    if (t.released) return;
    t.released = true;
    this.go[i]();
  }

  /** Stops holding and lets every held transfer run. */
  releaseAll(): void {
    this.holding = false;
    for (let i = 0; i < this.held.length; i++) this.release(i);
  }

  /** Resolves once `n` transfers were held in all. */
  async heldCount(n: number): Promise<void> {
    for (let i = 0; this.held.length < n; i++) {
      if (i > 2000) throw new Error(`only ${this.held.length} of ${n} transfers reached the medium`);
      await new Promise((r) => setTimeout(r, 1));
    }
  }

  private hold(kind: HeldTransfer['kind'], iov: Uint8Array[], pos: number, run: (t: HeldTransfer) => void): void {
    let bytes = 0;
    for (const v of iov) bytes += v.length;
    const t: HeldTransfer = { kind, pos, bytes, landed: false, released: !this.holding };
    if (!this.holding) return run(t);
    this.held.push(t);
    this.go.push(() => run(t));
  }

  private landed(t: HeldTransfer, done: (err: Error | null, n: number) => void, err: Error | null, n: number): void {
    t.landed = true;
    done(err, n);
  }
}
