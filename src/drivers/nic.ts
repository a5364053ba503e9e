// The driver for the emulated NIC, as the switch's Uplink. Rings and packet buffers (2 KiB, two
// per frame) live in the domain's own frames; received frames are copied out of their buffer into
// netback's staging memory and the buffer is posted again at once. No TSO: frames longer than a
// buffer are refused by transmit() and counted.
import type { Domain } from '../domain/runtime.js';
import { newPacketMeta } from '../netif/meta.js';
import type { SwitchFrame } from '../netswitch/frame.js';
import type { Uplink, UplinkSink } from '../netswitch/uplink.js';
import { DESC, DESC_DD, DESC_ERR, NIC_CTRL_EN, NIC_DESC_SIZE, NIC_REG as R, NIC_STATUS_FATAL } from '../../iommu/devices/nic-abi.js';
import { domainMemory, PciPort, type DevicePort, type DmaPages, type DriverMemory } from './port.js';

const BUF = 2048;
const TWO32 = 4294967296;

export interface NicDriverOptions {
  /** descriptors per ring (a multiple of 2); default 128 */
  ringSize?: number;
}

export class NicDriver implements Uplink {
  readonly drops = { rx: 0, tx: 0, txTooLong: 0 };
  /** plain 2 KiB descriptors: the switch segments GSO frames and fills in checksums for us */
  readonly noOffloads = true;
  readonly maxFrame = 1514;
  private readonly regs: Int32Array;
  private readonly txRing: DmaPages;
  private readonly rxRing: DmaPages;
  private readonly txDv: DataView;
  private readonly rxDv: DataView;
  private readonly txBufs: DmaPages;
  private readonly rxBufs: DmaPages;
  private readonly size: number;
  private readonly meta = newPacketMeta();
  private txTail = 0;
  /** oldest transmit descriptor not yet seen done */
  private txClean = 0;
  private rxNext = 0;
  private rxTail = 0;
  private readable: (() => void) | null = null;
  private closed = false;

  constructor(
    readonly name: string,
    private readonly port: DevicePort,
    mem: DriverMemory,
    opts: NicDriverOptions = {},
  ) {
    const n = opts.ringSize ?? 128;
    if (!(n >= 2 && n <= 256 && n % 2 === 0)) throw new RangeError('NIC ring size must be an even number in 2..256');
    this.size = n;
    this.regs = new Int32Array(port.bar.buffer, port.bar.byteOffset, port.bar.byteLength >> 2);
    this.txRing = mem.alloc(1);
    this.rxRing = mem.alloc(1);
    this.txDv = new DataView(this.txRing.bytes.buffer, this.txRing.bytes.byteOffset, 4096);
    this.rxDv = new DataView(this.rxRing.bytes.buffer, this.rxRing.bytes.byteOffset, 4096);
    this.txBufs = mem.alloc((n * BUF) / 4096);
    this.rxBufs = mem.alloc((n * BUF) / 4096);
    port.onIrq(() => {
      this.reclaim();
      this.readable?.();
    });
  }

  start(): void {
    const put = (off: number, v: number) => Atomics.store(this.regs, off >> 2, v | 0);
    put(R.CTRL, 0);
    this.port.ring();
    put(R.TX_BASE, this.txRing.iova >>> 0);
    put(R.TX_BASE + 4, Math.floor(this.txRing.iova / TWO32));
    put(R.RX_BASE, this.rxRing.iova >>> 0);
    put(R.RX_BASE + 4, Math.floor(this.rxRing.iova / TWO32));
    put(R.TX_SIZE, this.size);
    put(R.RX_SIZE, this.size);
    put(R.TX_TAIL, 0);
    for (let i = 0; i < this.size; i++) this.post(i);
    // one slot stays empty so that head == tail means "nothing posted"
    this.rxTail = this.size - 1;
    put(R.RX_TAIL, this.rxTail);
    put(R.CTRL, NIC_CTRL_EN);
    this.port.ring();
  }

  get mac(): Uint8Array {
    const lo = Atomics.load(this.regs, R.MAC_LO >> 2);
    const hi = Atomics.load(this.regs, R.MAC_HI >> 2);
    return Uint8Array.of(lo & 0xff, (lo >> 8) & 0xff, (lo >> 16) & 0xff, (lo >>> 24) & 0xff, hi & 0xff, (hi >> 8) & 0xff);
  }

  get fatal(): boolean {
    return (Atomics.load(this.regs, R.STATUS >> 2) & NIC_STATUS_FATAL) !== 0;
  }

  onReadable(cb: () => void): void {
    this.readable = cb;
  }

  receive(sink: UplinkSink, max: number): number {
    let n = 0;
    const dv = this.rxDv;
    let posted = false;
    while (n < max && !this.closed) {
      const d = this.rxNext * NIC_DESC_SIZE;
      const status = dv.getUint16(d + DESC.STATUS, true);
      if ((status & DESC_DD) === 0) break;
      const len = dv.getUint16(d + DESC.LEN, true);
      if ((status & DESC_ERR) !== 0 || len < 14 || len > BUF) this.drops.rx++;
      else {
        const at = sink.reserve(len);
        if (at < 0) break; // netback has no room this round: the frame stays for the next
        const src = this.rxNext * BUF;
        sink.mem.set(this.rxBufs.bytes.subarray(src, src + len), at);
        sink.commit(at, len, this.meta);
        n++;
      }
      this.post(this.rxNext);
      this.rxNext = (this.rxNext + 1) % this.size;
      this.rxTail = (this.rxTail + 1) % this.size;
      posted = true;
    }
    if (posted) {
      Atomics.store(this.regs, R.RX_TAIL >> 2, this.rxTail);
      this.port.ring();
    }
    return n;
  }

  transmit(f: SwitchFrame): boolean {
    if (this.closed) return false;
    if (f.len > BUF || f.len < 14) {
      this.drops.txTooLong++;
      return false;
    }
    const next = (this.txTail + 1) % this.size;
    if (next === this.txClean) {
      this.reclaim();
      if (next === this.txClean) {
        this.drops.tx++;
        return false;
      }
    }
    const d = this.txTail * NIC_DESC_SIZE;
    const dv = this.txDv;
    this.txBufs.bytes.set(f.mem.subarray(f.off, f.off + f.len), this.txTail * BUF);
    const a = this.txBufs.iova + this.txTail * BUF;
    dv.setUint32(d + DESC.ADDR, a >>> 0, true);
    dv.setUint32(d + DESC.ADDR + 4, Math.floor(a / TWO32), true);
    dv.setUint16(d + DESC.LEN, f.len, true);
    dv.setUint16(d + DESC.STATUS, 0, true);
    this.txTail = next;
    Atomics.store(this.regs, R.TX_TAIL >> 2, this.txTail);
    this.port.ring();
    return true;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    Atomics.store(this.regs, R.CTRL >> 2, 0);
    this.port.ring();
    this.port.close();
  }

  /** Transmit descriptors the device finished are free again. */
  private reclaim(): void {
    const dv = this.txDv;
    while (this.txClean !== this.txTail) {
      const d = this.txClean * NIC_DESC_SIZE;
      const st = dv.getUint16(d + DESC.STATUS, true);
      if ((st & DESC_DD) === 0) break;
      if ((st & DESC_ERR) !== 0) this.drops.tx++;
      this.txClean = (this.txClean + 1) % this.size;
    }
  }

  private post(i: number): void {
    const d = i * NIC_DESC_SIZE;
    const dv = this.rxDv;
    const a = this.rxBufs.iova + i * BUF;
    dv.setUint32(d + DESC.ADDR, a >>> 0, true);
    dv.setUint32(d + DESC.ADDR + 4, Math.floor(a / TWO32), true);
    dv.setUint16(d + DESC.LEN, BUF, true);
    dv.setUint16(d + DESC.STATUS, 0, true);
  }
}

/**
 * Opens the NIC at `bdf` (assigned to this domain by dom0's pci_assign) as the switch's uplink.
 * Needs 2 + ringSize / 2 * 2 free I/O frames: 130 with the defaults.
 */
export async function openNic(dom: Domain, bdf: string, opts: NicDriverOptions = {}): Promise<NicDriver> {
  const port = await PciPort.open(dom, bdf);
  if (port.info.kind !== 'nic') {
    port.close();
    throw new Error(`${bdf} is a ${port.info.kind}, not a NIC`);
  }
  try {
    const d = new NicDriver(`nic@${bdf}`, port, domainMemory(dom), opts);
    d.start();
    return d;
  } catch (e) {
    port.close();
    throw e;
  }
}
