// hw's end of a device's register transport. hv creates the register page memfd and the two
// eventfds (it hands the same ones to the owning domain), and hw maps the page, wakes the model
// when the doorbell rings and signals the interrupt: the owner and the device talk directly,
// never through hv. A new owner means a fresh set, so a previous owner keeps a dead page.
import { native, type Watcher } from '../../src/native/index.js';

export class DeviceTransport {
  readonly bar: Uint8Array;
  private readonly watcher: Watcher;
  private closed = false;

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

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.watcher.close();
    native.munmap(this.bar.buffer as ArrayBuffer);
    for (const fd of [this.barFd, this.doorbellFd, this.irqFd]) native.close(fd);
  }
}
