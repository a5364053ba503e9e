// How a device model's registers reach the owning domain without a hypercall per access (the
// ioeventfd/irqfd idea): the register page is a memfd both map, a doorbell eventfd the driver
// signals after writing a register wakes the model, and an interrupt eventfd the model signals
// wakes the driver. A new owner gets a fresh page and fresh eventfds, so whoever had the device
// before keeps a page nobody reads and a doorbell nobody hears.
import { native, type Watcher } from '../../src/native/index.js';

export class RegisterTransport {
  readonly barFd: number;
  readonly bar: Uint8Array;
  readonly doorbellFd: number;
  readonly irqFd: number;
  private readonly watcher: Watcher;
  private closed = false;

  constructor(name: string, size: number, onDoorbell: () => void) {
    this.barFd = native.memfdCreate(`${name}-bar`, size);
    this.bar = new Uint8Array(native.mmap(this.barFd, size, true));
    this.doorbellFd = native.eventfd();
    this.irqFd = native.eventfd();
    this.watcher = new native.Watcher(this.doorbellFd, 'eventfd', () => onDoorbell());
    // hv lives for its domains, not for its device models' doorbells
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
