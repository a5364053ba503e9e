// What a driver needs from its device and its domain, kept abstract so the same driver runs over a
// device hosted in hv (openPciPort: a shared register page and two eventfds, no hypercall per
// I/O) and over an in-process model in unit tests.
import { CMD_BUS_MASTER, CMD_MEMORY, CFG } from '../abi/pci.js';
import { safeClose } from '../hypercall/channel.js';
import type { PciOpenResult } from '../hypercall/pci.js';
import type { Domain } from '../domain/runtime.js';
import { native, PAGE_SIZE, type Watcher } from '../native/index.js';
import { parseBdf, formatBdf } from '../config/bdf.js';

export interface DevicePort {
  /** the device's register page */
  readonly bar: Uint8Array;
  /** tell the device a register changed (the doorbell) */
  ring(): void;
  /** `cb` runs when the device raised its interrupt */
  onIrq(cb: () => void): void;
  close(): void;
}

/** Memory the driver hands the device: contiguous pages and the bus address the device uses. */
export interface DmaPages {
  readonly iova: number;
  readonly bytes: Uint8Array;
}

export interface DriverMemory {
  alloc(pages: number): DmaPages;
  /** Gives pages back; only once the device can no longer reach them (it stopped, or is gone). */
  free(pages: DmaPages): void;
}

/**
 * A domain's own I/O frames: the IOMMU maps frame gfn at iova gfn << 12 in its domain once a device
 * is assigned (hv does this in pci_assign), so contiguous frames are contiguous for the device too.
 */
export function domainMemory(dom: Domain): DriverMemory {
  return {
    alloc(pages: number): DmaPages {
      const gfn = pages === 1 ? dom.frames.alloc() : dom.frames.allocContiguous(pages);
      const bytes = dom.frames.view(gfn, pages);
      bytes.fill(0);
      return { iova: gfn * PAGE_SIZE, bytes };
    },
    free(p: DmaPages): void {
      const first = p.iova / PAGE_SIZE;
      for (let g = first; g < first + p.bytes.length / PAGE_SIZE; g++) dom.frames.release(g);
    },
  };
}

export class PciPort implements DevicePort {
  private watcher: Watcher | null = null;
  private closed = false;

  private constructor(
    readonly info: PciOpenResult,
    readonly bar: Uint8Array,
    private readonly doorbellFd: number,
    private readonly irqFd: number,
  ) {}

  /** Opens an assigned device: pci_device_open, bus mastering on, register page mapped. */
  static async open(dom: Domain, bdfText: string): Promise<PciPort> {
    const b = parseBdf(bdfText);
    if (typeof b === 'string') throw new Error(b);
    const bdf = formatBdf(b);
    const { result, fds } = await dom.hc.call('pci_device_open', { bdf });
    if (fds.length !== 3) {
      for (const f of fds) safeClose(f);
      throw new Error(`pci_device_open ${bdf}: expected 3 descriptors, got ${fds.length}`);
    }
    let bar: Uint8Array;
    try {
      bar = new Uint8Array(native.mmap(fds[0], result.barSize, true));
    } finally {
      safeClose(fds[0]);
    }
    // a device masters the bus only when its driver says so, as on real PCI
    const { result: cmd } = await dom.hc.call('pci_config_read', { bdf, offset: CFG.COMMAND, size: 2 });
    await dom.hc.call('pci_config_write', { bdf, offset: CFG.COMMAND, size: 2, value: (cmd.value | CMD_BUS_MASTER | CMD_MEMORY) & 0xffff });
    return new PciPort(result, bar, fds[1], fds[2]);
  }

  ring(): void {
    if (!this.closed) native.eventfdSignal(this.doorbellFd);
  }

  onIrq(cb: () => void): void {
    this.watcher?.close();
    this.watcher = new native.Watcher(this.irqFd, 'eventfd', () => cb());
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.watcher?.close();
    native.munmap(this.bar.buffer as ArrayBuffer);
    safeClose(this.doorbellFd);
    safeClose(this.irqFd);
  }
}
