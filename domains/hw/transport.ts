// hw's end of a device's register transport. hv creates the register page memfd and the two
// eventfds (it hands the same ones to the owning domain), and hw maps the page, wakes the model
// when the doorbell rings and signals the interrupt: the owner and the device talk directly,
// never through hv. A new owner means a fresh set. The previous owner's page is not left frozen
// as it was (a driver polling it would wait for a state change that never comes): once the old
// model has nothing in flight, every register on it reads all-ones, as a removed PCIe device's do,
// and the old owner's interrupt fires so its driver looks.
import { native, type Watcher } from '../../src/native/index.js';

export class DeviceTransport {
  readonly bar: Uint8Array;
  private readonly watcher: Watcher;
  private closed = false;
  private silenced = false;

  /** Takes ownership of the three descriptors, whatever happens. */
  constructor(
    private readonly barFd: number,
    private readonly doorbellFd: number,
    private readonly irqFd: number,
    size: number,
    onDoorbell: () => void,
  ) {
    try {
      if (native.fdSize(barFd) !== size) throw new RangeError(`register page is ${native.fdSize(barFd)} bytes, the device has ${size}`);
      this.bar = new Uint8Array(native.mmap(barFd, size, true));
    } catch (e) {
      for (const fd of [barFd, doorbellFd, irqFd]) native.close(fd);
      throw e;
    }
    try {
      this.watcher = new native.Watcher(doorbellFd, 'eventfd', () => onDoorbell());
    } catch (e) {
      native.munmap(this.bar.buffer as ArrayBuffer);
      for (const fd of [barFd, doorbellFd, irqFd]) native.close(fd);
      throw e;
    }
    // hw lives for hv's requests, not for its doorbells
    this.watcher.unref();
  }

  raiseIrq(): void {
    if (!this.closed) native.eventfdSignal(this.irqFd);
  }

  /** The owner loses the device: its doorbells go unheard from now on; the page stays mapped. */
  silence(): void {
    if (this.closed || this.silenced) return;
    this.silenced = true;
    this.watcher.close();
  }

  /**
   * Surprise removal as the old owner sees it: every register reads all-ones, its interrupt fires,
   * then the page and descriptors go. Only once the model on it moves no data any more.
   */
  remove(): void {
    if (this.closed) return;
    new Int32Array(this.bar.buffer, this.bar.byteOffset, this.bar.byteLength >> 2).fill(-1);
    try {
      native.eventfdSignal(this.irqFd);
    } catch {
      // an interrupt counter that cannot take more: the driver finds the page on its next look
    }
    this.close();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (!this.silenced) this.watcher.close();
    native.munmap(this.bar.buffer as ArrayBuffer);
    for (const fd of [this.barFd, this.doorbellFd, this.irqFd]) native.close(fd);
  }
}
