// The driver for the emulated NIC, as the switch's Uplink. Rings and packet buffers live in the
// domain's own frames; received frames (2 KiB buffers) are copied out into netback's staging
// memory and the buffer is posted again at once. Frames to send are copied into a transmit arena,
// one contiguous buffer per descriptor, freed in the order the device finishes them.
//
// When the NIC offers checksum and TCP segmentation offload for both IP versions, the driver
// enables them and takes GSO frames and blank checksums from the switch as they are: each goes
// out behind an offload header, a 64 KiB super-frame in one descriptor. Otherwise (a cable, a NIC
// without offloads, or `offloads: false`) it is a plain NIC and the switch segments in software.
//
// A register page that reads all-ones is a NIC that is gone (hw replaced or lost it, the way a
// surprise-removed PCIe device reads); hw writes it only once the NIC moves no data, so the
// frames still waiting to be sent are dropped at once and nothing more goes to it.
import type { Domain } from '../domain/runtime.js';
import { IPPROTO_TCP, newL4Info, parseL4 } from '../packet/headers.js';
import { newPacketMeta, type PacketMeta } from '../packet/meta.js';
import { seedPseudoChecksum } from '../packet/vnet.js';
import type { SwitchFrame } from '../netswitch/frame.js';
import type { Uplink, UplinkSink } from '../netswitch/uplink.js';
import { XEN_NETIF_GSO_TYPE_NONE, XEN_NETIF_GSO_TYPE_TCPV4 } from '../abi/netif.js';
import {
  DESC, DESC_CMD_OFFLOAD, DESC_CSUM_BLANK, DESC_DATA_VALID, DESC_DD, DESC_ERR, NIC_CAP, NIC_CTRL_EN, NIC_DESC_SIZE, NIC_GSO,
  NIC_MAX_FRAME, NIC_MAX_TSO_FRAME, NIC_REG as R, NIC_REG_REMOVED, NIC_STATUS_FATAL, NIC_TX_HDR_SIZE, TX_HDR, TX_HDR_F_CSUM,
} from '../abi/nic.js';
import { domainMemory, PciPort, type DevicePort, type DmaPages, type DriverMemory } from './port.js';

const BUF = 2048;
const TWO32 = 4294967296;
const TX_ALIGN = 64;
const TX_ALL = NIC_CAP.TX_CSUM | NIC_CAP.TSO4 | NIC_CAP.TSO6;
/** transmit arena with TSO: room for several 64 KiB super-frames in flight */
const TSO_ARENA_PAGES = 128;

export interface NicDriverOptions {
  /** descriptors per ring (a multiple of 2); default 128 */
  ringSize?: number;
  /** use the offloads the NIC offers (default true); false drives it as a plain NIC */
  offloads?: boolean;
}

/** The NIC's own counters, read from its registers. */
export interface NicCounters {
  txFrames: number;
  rxFrames: number;
  txDrops: number;
  rxDrops: number;
  txErrors: number;
  lastTxError: number;
  txGso: number;
  txCsum: number;
  rxCsum: number;
}

const CAP_NAMES: [number, string][] = [[NIC_CAP.TX_CSUM, 'tx-csum'], [NIC_CAP.TSO4, 'tso4'], [NIC_CAP.TSO6, 'tso6'], [NIC_CAP.RX_CSUM, 'rx-csum']];

export function offloadNames(bits: number): string {
  const on = CAP_NAMES.filter(([b]) => (bits & b) !== 0).map(([, n]) => n);
  return on.length > 0 ? on.join(' ') : 'none';
}

type TxMode = 'plain' | 'csum' | 'tso';

export class NicDriver implements Uplink {
  readonly drops = { rx: 0, tx: 0, txTooLong: 0, txUnsupported: 0 };
  /** NIC_CAP bits enabled on the NIC */
  readonly offloads: number;
  /** without the full set of transmit offloads the switch segments GSO frames and fills in checksums for us */
  readonly noOffloads: boolean;
  readonly maxFrame = 1514;
  private readonly regs: Int32Array;
  private readonly txRing: DmaPages;
  private readonly rxRing: DmaPages;
  private readonly txDv: DataView;
  private readonly rxDv: DataView;
  private readonly txArena: DmaPages;
  private readonly arenaDv: DataView;
  private readonly rxBufs: DmaPages;
  private readonly size: number;
  /** arena offset of each transmit descriptor's buffer */
  private readonly txAt: Int32Array;
  private readonly meta = newPacketMeta();
  private readonly l4 = newL4Info();
  private txTail = 0;
  /** oldest transmit descriptor not yet seen done */
  private txClean = 0;
  /** next free arena byte, and the first byte a descriptor in flight still uses */
  private aHead = 0;
  private aTail = 0;
  private rxNext = 0;
  private rxTail = 0;
  private readable: (() => void) | null = null;
  private closed = false;
  private gone = false;

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
    const caps = Atomics.load(this.regs, R.CAPS >> 2);
    // all of transmit or none: a partial set would need the software path for some frames too
    let tx = opts.offloads !== false && (caps & TX_ALL) === TX_ALL ? TX_ALL : 0;
    this.txRing = mem.alloc(1);
    this.rxRing = mem.alloc(1);
    this.txDv = new DataView(this.txRing.bytes.buffer, this.txRing.bytes.byteOffset, 4096);
    this.rxDv = new DataView(this.rxRing.bytes.buffer, this.rxRing.bytes.byteOffset, 4096);
    const plainPages = (n * BUF) / 4096;
    let arena: DmaPages | null = null;
    if (tx !== 0) {
      try {
        arena = mem.alloc(Math.max(TSO_ARENA_PAGES, plainPages));
      } catch {
        tx = 0; // a domain too small for super-frames in flight still gets a working plain NIC
      }
    }
    this.txArena = arena ?? mem.alloc(plainPages);
    this.offloads = opts.offloads === false ? 0 : tx | (caps & NIC_CAP.RX_CSUM);
    this.noOffloads = tx === 0;
    this.arenaDv = new DataView(this.txArena.bytes.buffer, this.txArena.bytes.byteOffset, this.txArena.bytes.byteLength);
    this.txAt = new Int32Array(n);
    this.rxBufs = mem.alloc((n * BUF) / 4096);
    port.onIrq(() => {
      if (this.removed) return this.goneNow();
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
    put(R.OFFLOADS, this.offloads);
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

  /** The register page reads all-ones: the NIC is gone, and stopped. */
  get removed(): boolean {
    return this.gone || Atomics.load(this.regs, R.STATUS >> 2) === NIC_REG_REMOVED;
  }

  counters(): NicCounters {
    const r = (off: number) => Atomics.load(this.regs, off >> 2) >>> 0;
    return {
      txFrames: r(R.TX_FRAMES), rxFrames: r(R.RX_FRAMES), txDrops: r(R.TX_DROPS), rxDrops: r(R.RX_DROPS), txErrors: r(R.TX_ERRORS),
      lastTxError: r(R.LAST_TX_ERROR), txGso: r(R.TX_GSO_FRAMES), txCsum: r(R.TX_CSUM_FRAMES), rxCsum: r(R.RX_CSUM_FRAMES),
    };
  }

  onReadable(cb: () => void): void {
    this.readable = cb;
  }

  receive(sink: UplinkSink, max: number): number {
    let n = 0;
    const dv = this.rxDv;
    let posted = false;
    while (n < max && !this.closed && !this.gone) {
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
        const m = this.meta;
        m.csumBlank = (this.offloads & NIC_CAP.RX_CSUM) !== 0 && (status & DESC_CSUM_BLANK) !== 0;
        m.dataValidated = m.csumBlank || ((this.offloads & NIC_CAP.RX_CSUM) !== 0 && (status & DESC_DATA_VALID) !== 0);
        sink.commit(at, len, m);
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
    if (this.gone || this.removed) {
      this.goneNow();
      this.drops.tx++;
      return false;
    }
    const mode = this.txMode(f);
    if (mode === null) {
      this.drops.txUnsupported++;
      return false;
    }
    if (f.len < 14 || f.len > (this.noOffloads ? BUF : mode === 'tso' ? NIC_MAX_TSO_FRAME : NIC_MAX_FRAME)) {
      this.drops.txTooLong++;
      return false;
    }
    const next = (this.txTail + 1) % this.size;
    const hdr = mode === 'plain' ? 0 : NIC_TX_HDR_SIZE;
    const need = hdr + f.len;
    const size = (need + TX_ALIGN - 1) & ~(TX_ALIGN - 1);
    let at = next === this.txClean ? -1 : this.arenaAlloc(size);
    if (at < 0) {
      this.reclaim();
      at = next === this.txClean ? -1 : this.arenaAlloc(size);
      if (at < 0) {
        this.drops.tx++;
        return false;
      }
    }
    const buf = this.txArena.bytes;
    buf.set(f.mem.subarray(f.off, f.off + f.len), at + hdr);
    if (mode !== 'plain') this.writeOffloadHeader(at, f.len, f.meta, mode === 'tso');
    const d = this.txTail * NIC_DESC_SIZE;
    const dv = this.txDv;
    const a = this.txArena.iova + at;
    dv.setUint32(d + DESC.ADDR, a >>> 0, true);
    dv.setUint32(d + DESC.ADDR + 4, Math.floor(a / TWO32), true);
    dv.setUint16(d + DESC.LEN, need, true);
    dv.setUint16(d + DESC.STATUS, 0, true);
    dv.setUint8(d + DESC.CMD, hdr === 0 ? 0 : DESC_CMD_OFFLOAD);
    this.txAt[this.txTail] = at;
    this.aHead = at + size;
    this.txTail = next;
    Atomics.store(this.regs, R.TX_TAIL >> 2, this.txTail);
    this.port.ring();
    return true;
  }

  /**
   * How the frame goes out: as it is, behind a checksum request, or as a TSO super-frame; null
   * when its metadata asks for something the frame's headers do not allow (it is dropped, as a
   * TAP uplink drops a frame it cannot describe to the kernel).
   */
  private txMode(f: SwitchFrame): TxMode | null {
    const m = f.meta;
    const gso = m.gsoType !== XEN_NETIF_GSO_TYPE_NONE && m.gsoSize > 0;
    if (this.noOffloads || (!gso && !m.csumBlank)) return 'plain';
    const l4 = this.l4;
    if (!parseL4(f.mem, f.off, f.len, l4)) return null;
    if (!gso) return 'csum';
    if (l4.proto !== IPPROTO_TCP || l4.ipVersion !== (m.gsoType === XEN_NETIF_GSO_TYPE_TCPV4 ? 4 : 6)) return null;
    // one segment's worth is no super-frame: only its checksum may still need finishing
    if (f.len - l4.hdrLen <= m.gsoSize) return m.csumBlank ? 'csum' : 'plain';
    return 'tso';
  }

  /** The offload header at arena[at, at+12) for the frame after it (this.l4 describes that frame). */
  private writeOffloadHeader(at: number, len: number, m: PacketMeta, tso: boolean): void {
    const l4 = this.l4;
    const dv = this.arenaDv;
    dv.setUint8(at + TX_HDR.FLAGS, TX_HDR_F_CSUM);
    dv.setUint8(at + TX_HDR.GSO, tso ? (m.gsoType === XEN_NETIF_GSO_TYPE_TCPV4 ? NIC_GSO.TCPV4 : NIC_GSO.TCPV6) : NIC_GSO.NONE);
    dv.setUint16(at + TX_HDR.HDR_LEN, tso ? l4.hdrLen : 0, true);
    dv.setUint16(at + TX_HDR.MSS, tso ? m.gsoSize : 0, true);
    dv.setUint16(at + TX_HDR.CSUM_START, l4.csumStart, true);
    dv.setUint16(at + TX_HDR.CSUM_OFFSET, l4.csumOffset, true);
    dv.setUint16(at + TX_HDR.RESERVED, 0, true);
    // a TSO frame whose sender completed its checksum: the segmenter wants the partial one
    if (tso && !m.csumBlank) seedPseudoChecksum(this.txArena.bytes, at + NIC_TX_HDR_SIZE, len, l4);
  }

  /** Arena offset for `size` (aligned) bytes, or -1 when the frames in flight leave no such room. */
  private arenaAlloc(size: number): number {
    const cap = this.txArena.bytes.length;
    if (this.txClean === this.txTail) this.aHead = this.aTail = 0;
    if (this.aHead >= this.aTail) {
      if (this.aHead + size <= cap) return this.aHead;
      // wrap, strictly below the tail: head == tail must keep meaning "nothing in flight"
      return size < this.aTail ? 0 : -1;
    }
    return this.aHead + size < this.aTail ? this.aHead : -1;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    Atomics.store(this.regs, R.CTRL >> 2, 0);
    this.port.ring();
    this.port.close();
  }

  /**
   * The NIC is gone: the descriptors it never finished are dropped (counted), their arena space
   * free; it moves no data any more, so nothing of theirs is in use.
   */
  private goneNow(): void {
    if (this.gone) return;
    this.gone = true;
    while (this.txClean !== this.txTail) {
      this.drops.tx++;
      this.txClean = (this.txClean + 1) % this.size;
    }
    this.aHead = this.aTail = 0;
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
    this.aTail = this.txClean === this.txTail ? this.aHead : this.txAt[this.txClean];
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
 * Needs 2 + ringSize / 2 * 2 free I/O frames: 130 with the defaults, 194 with TSO.
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
