// The emulated NIC. Transmit: on the doorbell the device walks its transmit ring from head to the
// driver's tail, reads each descriptor and its frame by DMA through the remapping unit, and puts
// the frame on its wire. Receive: a frame from the wire goes into the next posted buffer by DMA.
// Descriptors are written back (DD, ERR, length) by DMA too. A fault on a frame's buffer fails
// that descriptor (ERR, reason); a fault on the ring itself stops the NIC (STATUS.FATAL).
//
// Wires: none (link down, frames dropped), a host TAP with virtio-net headers (offload requests
// go to the host kernel with the frame: a TSO super-frame is one write), or a cable to another NIC
// model in the same hv (no offloads: the NIC offers none on it).
//
// Offloads are latched from OFFLOADS when the driver enables the NIC. A transmit descriptor's
// offload header is checked against the frame after the frame was copied in (the driver cannot
// change it under us); a bad request fails that descriptor and is counted, it never stops the NIC.
//
// An exception in the model itself (a doorbell, a frame from the wire) stops this NIC alone
// (STATUS.FATAL, reason INTERNAL), never the process hosting every other domain's devices.

import { VIRTIO_NET_HDR_SIZE } from '../abi/virtio.js';
import { native, type Watcher } from '../native/index.js';
import { newL4Info } from '../packet/headers.js';
import { decodeVnetHdr, encodeVnetHdr, newVnetFields } from '../packet/vnet.js';
import { DmaEngine, faultWord, recordFault, type DmaMemory, type PciFunctionOptions } from './dma.js';
import {
  DESC, DESC_CMD_OFFLOAD, DESC_CSUM_BLANK, DESC_DATA_VALID, DESC_DD, DESC_ERR, NIC_BAR_SIZE, NIC_CAP, NIC_CAP_ALL,
  NIC_CTRL_EN, NIC_DESC_SIZE, NIC_FATAL, NIC_GSO, NIC_MAX_FRAME, NIC_MAX_RING, NIC_MAX_TSO_FRAME, NIC_REG as R,
  NIC_STATUS_FATAL, NIC_STATUS_LINK, NIC_TX_ERR, NIC_TX_ERR_BASE, NIC_TX_HDR_SIZE,
} from '../abi/nic.js';
import { RX_DROP, checkTxOffload, newTxOffload, rxStatusFromVnet, vnetFromTxOffload, type NicTxOffload } from './nic-offload.js';
import { RegisterPage } from './register-page.js';

const TWO32 = 4294967296;
/** Frames moved per doorbell or wire wakeup before yielding to the rest of hv. */
const BUDGET = 256;
/** A frame handed to a wire sits at this offset of its buffer, so that a TAP wire writes its
 *  virtio-net header in front of it and sends both with one write, without a copy. */
export const WIRE_HEADROOM = VIRTIO_NET_HDR_SIZE;
// the driver's offload header lands in the headroom too (one DMA for header and frame)
if (NIC_TX_HDR_SIZE > WIRE_HEADROOM) throw new Error('NIC offload header larger than the wire headroom');
const TX_OFFLOADS = NIC_CAP.TX_CSUM | NIC_CAP.TSO4 | NIC_CAP.TSO6;

/** Where a NIC's frames go and come from. */
export interface NicWire {
  readonly linkUp: boolean;
  /** NIC_CAP bits the wire can carry with a frame; the NIC offers no others */
  readonly offloads: number;
  /**
   * The frame is buf[WIRE_HEADROOM, WIRE_HEADROOM+len); `tx` is a checked offload request or
   * null. False when the wire refused the frame.
   */
  send(buf: Uint8Array, len: number, tx: NicTxOffload | null): boolean;
  /** the receive offloads the driver enabled (NIC_CAP.RX_CSUM or 0) */
  setRxOffloads(caps: number): void;
  /** the model has receive buffers again (a TAP wire resumes reading) */
  rxSpace(): void;
  close(): void;
}

export interface NicModelOptions extends PciFunctionOptions {
  mac: Uint8Array;
  /** offer the offloads the wire can carry (default true); false makes a NIC without any */
  offloads?: boolean;
}

export class NicModel {
  readonly stats = { rxFrames: 0, txFrames: 0, rxDrops: 0, txDrops: 0, dmaFaults: 0, txErrors: 0, txGso: 0, txCsum: 0, rxCsum: 0 };
  wire: NicWire = NO_WIRE;
  private readonly regs: RegisterPage;
  private readonly ctl: DmaEngine;
  private readonly data: DmaEngine;
  private readonly desc = new Uint8Array(NIC_DESC_SIZE);
  private readonly descDv = new DataView(this.desc.buffer);
  /** a transmitted frame at WIRE_HEADROOM; an offload header, when there is one, just before it */
  private readonly frame = new Uint8Array(WIRE_HEADROOM + NIC_MAX_TSO_FRAME);
  private readonly txo = newTxOffload();
  private readonly l4 = newL4Info();
  private readonly log: (msg: string) => void;
  private enabled = false;
  /** NIC_CAP bits in force since the driver enabled the NIC */
  private offloads = 0;
  private fatal = false;
  private txBase = 0;
  private txSize = 0;
  private txHead = 0;
  private rxBase = 0;
  private rxSize = 0;
  private rxHead = 0;
  private rxTail = 0;
  private kicking = false;
  private closed = false;
  private readonly rekick = () => this.kick();

  constructor(private readonly o: NicModelOptions) {
    if (o.bar.byteLength < NIC_BAR_SIZE) throw new RangeError('NIC register page must be 4 KiB');
    this.regs = new RegisterPage(o.bar, NIC_BAR_SIZE);
    this.ctl = new DmaEngine(o.unit, o.mem, o.sid, 4);
    this.data = new DmaEngine(o.unit, o.mem, o.sid, Math.ceil((NIC_TX_HDR_SIZE + NIC_MAX_TSO_FRAME) / 4096) + 1);
    this.log = o.log ?? (() => {});
    this.reset();
  }

  reset(): void {
    this.enabled = false;
    this.fatal = false;
    this.offloads = 0;
    this.txHead = this.rxHead = this.rxTail = 0;
    this.regs.clear();
    const m = this.o.mac;
    this.regs.put(R.MAC_LO, m[0] | (m[1] << 8) | (m[2] << 16) | (m[3] << 24));
    this.regs.put(R.MAC_HI, m[4] | (m[5] << 8));
    this.publishStatus();
  }

  attachWire(w: NicWire): void {
    this.wire = w;
    this.offloads &= this.caps;
    w.setRxOffloads(this.offloads & NIC_CAP.RX_CSUM);
    this.publishStatus();
  }

  /** What this NIC can do on its current wire. */
  get caps(): number {
    return this.o.offloads === false ? 0 : this.wire.offloads & NIC_CAP_ALL;
  }

  /** The driver takes checksum status on receive: the wire may hand over checksum-partial frames. */
  get rxCsum(): boolean {
    return (this.offloads & NIC_CAP.RX_CSUM) !== 0;
  }

  get canReceive(): boolean {
    return !this.closed && this.enabled && !this.fatal && this.rxHead !== this.rxTail && this.o.busMaster();
  }

  /** The model is being replaced (reset, new owner): it touches nothing from now on. */
  close(): void {
    this.closed = true;
    this.enabled = false;
    this.offloads = 0;
    this.wire = NO_WIRE;
  }

  /** The model itself failed (not the driver's doing): this NIC stops, nothing else does. */
  failInternal(why: string): void {
    if (this.closed) return this.log(`nic: internal error after the NIC was replaced: ${why}`);
    if (this.fatal) return this.log(`nic: internal error on a stopped NIC: ${why}`);
    this.die(NIC_FATAL.INTERNAL, `internal error: ${why}`);
  }

  /** Doorbell: CTRL, TX_TAIL or RX_TAIL changed. */
  kick(): void {
    try {
      this.serveDoorbell();
    } catch (e) {
      this.failInternal((e as Error).message);
    }
  }

  private serveDoorbell(): void {
    if (this.kicking || this.closed) return;
    this.kicking = true;
    try {
      this.checkEnable();
      if (!this.enabled || this.fatal || !this.o.busMaster()) return;
      const rxt = this.regs.get(R.RX_TAIL) >>> 0;
      if (rxt >= this.rxSize) return this.die(NIC_FATAL.BAD_RX_TAIL, `RX tail ${rxt} outside a ${this.rxSize}-entry ring`);
      const hadSpace = this.rxHead !== this.rxTail;
      this.rxTail = rxt;
      const txt = this.regs.get(R.TX_TAIL) >>> 0;
      if (txt >= this.txSize) return this.die(NIC_FATAL.BAD_TX_TAIL, `TX tail ${txt} outside a ${this.txSize}-entry ring`);
      let done = 0;
      while (this.txHead !== txt && done < BUDGET && !this.fatal) {
        this.transmitOne();
        done++;
      }
      this.regs.put(R.TX_HEAD, this.txHead);
      if (done > 0) this.o.raiseIrq();
      if (this.txHead !== txt && !this.fatal) setImmediate(this.rekick); // over budget: come back
      if (!hadSpace && this.rxHead !== this.rxTail) this.wire.rxSpace();
    } finally {
      this.kicking = false;
    }
  }

  /** The wire had a frame it could not deliver as described (a bad header): counted as a drop. */
  wireDrop(): void {
    if (!this.closed) this.drop(R.RX_DROPS);
  }

  /**
   * A frame from the wire, frame[off, off+len): into the next posted buffer, with the checksum
   * status bits the wire vouched for (honoured only when the driver enabled RX_CSUM). False when
   * it was dropped (no buffer, too long, fault); the caller need not care, the counters and the
   * driver do.
   */
  receive(frame: Uint8Array, off: number, len: number, csumStatus: number): boolean {
    try {
      return this.receiveOne(frame, off, len, csumStatus);
    } catch (e) {
      // the sender (a TAP, or the NIC at the other end of a cable) is not to blame
      this.failInternal(`receiving a frame: ${(e as Error).message}`);
      return false;
    }
  }

  private receiveOne(frame: Uint8Array, off: number, len: number, csumStatus: number): boolean {
    // a replaced model's page may be gone: a wire still holding it counts nothing there
    if (this.closed) return false;
    if (!this.canReceive) {
      this.drop(R.RX_DROPS);
      return false;
    }
    const at = this.rxBase + this.rxHead * NIC_DESC_SIZE;
    if (!this.ctl.read(at, this.desc, NIC_DESC_SIZE)) return this.ringFault(this.ctl, 'reading an RX descriptor');
    const dv = this.descDv;
    const addr = dv.getUint32(DESC.ADDR, true) + dv.getUint32(DESC.ADDR + 4, true) * TWO32;
    const room = dv.getUint16(DESC.LEN, true);
    let status = DESC_DD;
    let reason = 0;
    let outLen = len;
    if (len > room || len > NIC_MAX_FRAME) {
      this.drop(R.RX_DROPS);
      status |= DESC_ERR;
      outLen = 0;
    } else {
      this.data.reset();
      if (this.data.translate(addr, len, true)) {
        this.data.copySegments(frame, off, true);
        if (this.rxCsum) status |= csumStatus & (DESC_DATA_VALID | DESC_CSUM_BLANK);
      } else {
        this.noteFault(this.data);
        status |= DESC_ERR;
        reason = faultWord(this.data.fault);
        outLen = 0;
      }
    }
    dv.setUint16(DESC.LEN, outLen, true);
    dv.setUint16(DESC.STATUS, status, true);
    dv.setUint16(DESC.ERR_REASON, reason, true);
    if (!this.ctl.write(at, this.desc, NIC_DESC_SIZE)) return this.ringFault(this.ctl, 'writing back an RX descriptor');
    this.rxHead = (this.rxHead + 1) % this.rxSize;
    this.regs.put(R.RX_HEAD, this.rxHead);
    if ((status & DESC_ERR) === 0) {
      this.stats.rxFrames++;
      this.regs.put(R.RX_FRAMES, this.regs.get(R.RX_FRAMES) + 1);
      if ((status & (DESC_DATA_VALID | DESC_CSUM_BLANK)) !== 0) this.bump(R.RX_CSUM_FRAMES, 'rxCsum');
    }
    return (status & DESC_ERR) === 0;
  }

  /** The wire delivered a batch: one interrupt for all of it. */
  rxBatchDone(): void {
    if (!this.closed) this.o.raiseIrq();
  }

  private transmitOne(): void {
    const at = this.txBase + this.txHead * NIC_DESC_SIZE;
    if (!this.ctl.read(at, this.desc, NIC_DESC_SIZE)) {
      this.ringFault(this.ctl, 'reading a TX descriptor');
      return;
    }
    const dv = this.descDv;
    const addr = dv.getUint32(DESC.ADDR, true) + dv.getUint32(DESC.ADDR + 4, true) * TWO32;
    const len = dv.getUint16(DESC.LEN, true);
    const cmd = this.desc[DESC.CMD];
    let status = DESC_DD;
    let reason = 0;
    if (cmd !== 0) {
      reason = this.transmitOffloaded(addr, len, cmd);
      if (reason !== 0) status |= DESC_ERR;
    } else if (len < 14 || len > NIC_MAX_FRAME) {
      status |= DESC_ERR;
      this.drop(R.TX_DROPS);
    } else if (!this.dmaIn(addr, len, WIRE_HEADROOM)) {
      status |= DESC_ERR;
      reason = faultWord(this.data.fault);
    } else if (this.wire.send(this.frame, len, null)) {
      this.stats.txFrames++;
      this.regs.put(R.TX_FRAMES, this.regs.get(R.TX_FRAMES) + 1);
    } else this.drop(R.TX_DROPS);
    dv.setUint16(DESC.STATUS, status, true);
    dv.setUint16(DESC.ERR_REASON, reason, true);
    if (!this.ctl.write(at, this.desc, NIC_DESC_SIZE)) {
      this.ringFault(this.ctl, 'writing back a TX descriptor');
      return;
    }
    this.txHead = (this.txHead + 1) % this.txSize;
  }

  /**
   * A descriptor with CMD bits: header and frame come in by one DMA, then the header is checked
   * against the copy. Returns the descriptor's ERR_REASON, 0 when it went out (or the wire
   * refused it, which is a drop as for any frame).
   */
  private transmitOffloaded(addr: number, len: number, cmd: number): number {
    let err = 0;
    if ((cmd & ~DESC_CMD_OFFLOAD) !== 0) err = NIC_TX_ERR.BAD_CMD;
    else if ((this.offloads & TX_OFFLOADS) === 0) err = NIC_TX_ERR.NOT_ENABLED;
    else if (len < NIC_TX_HDR_SIZE + 14) err = NIC_TX_ERR.SHORT;
    if (err !== 0) return this.txError(err);
    if (!this.dmaIn(addr, len, WIRE_HEADROOM - NIC_TX_HDR_SIZE)) return faultWord(this.data.fault);
    const fLen = len - NIC_TX_HDR_SIZE;
    const txo = this.txo;
    err = checkTxOffload(this.frame, WIRE_HEADROOM - NIC_TX_HDR_SIZE, fLen, this.offloads, this.l4, txo);
    if (err !== 0) return this.txError(err);
    if (!this.wire.send(this.frame, fLen, txo)) {
      this.drop(R.TX_DROPS);
      return 0;
    }
    this.stats.txFrames++;
    this.regs.put(R.TX_FRAMES, this.regs.get(R.TX_FRAMES) + 1);
    if (txo.csum) this.bump(R.TX_CSUM_FRAMES, 'txCsum');
    if (txo.gso !== NIC_GSO.NONE) this.bump(R.TX_GSO_FRAMES, 'txGso');
    return 0;
  }

  /** Device read of the buffer [addr, addr+len) into this.frame at `at`; false after a fault. */
  private dmaIn(addr: number, len: number, at: number): boolean {
    this.data.reset();
    if (!this.data.translate(addr, len, false)) {
      this.noteFault(this.data);
      return false;
    }
    this.data.copySegments(this.frame, at, false);
    return true;
  }

  private txError(code: number): number {
    this.bump(R.TX_ERRORS, 'txErrors');
    this.regs.put(R.LAST_TX_ERROR, code);
    return NIC_TX_ERR_BASE | code;
  }

  private bump(reg: number, stat: 'txErrors' | 'txGso' | 'txCsum' | 'rxCsum'): void {
    this.stats[stat]++;
    this.regs.put(reg, this.regs.get(reg) + 1);
  }

  private checkEnable(): void {
    const want = (this.regs.get(R.CTRL) & NIC_CTRL_EN) !== 0;
    if (want === this.enabled) return;
    if (!want) {
      this.enabled = false;
      this.fatal = false;
      this.offloads = 0;
      this.wire.setRxOffloads(0);
      this.publishStatus();
      return;
    }
    this.enabled = true;
    this.fatal = false;
    this.txHead = this.rxHead = this.rxTail = 0;
    this.regs.put(R.TX_HEAD, 0);
    this.regs.put(R.RX_HEAD, 0);
    const tb = this.regs.get64(R.TX_BASE);
    const rb = this.regs.get64(R.RX_BASE);
    const ts = this.regs.get(R.TX_SIZE) >>> 0;
    const rs = this.regs.get(R.RX_SIZE) >>> 0;
    if (ts < 2 || rs < 2 || ts > NIC_MAX_RING || rs > NIC_MAX_RING) return this.die(NIC_FATAL.BAD_RING_CONFIG, `ring sizes TX ${ts} / RX ${rs} outside 2..${NIC_MAX_RING}`);
    if (tb % NIC_DESC_SIZE !== 0 || rb % NIC_DESC_SIZE !== 0) return this.die(NIC_FATAL.BAD_RING_CONFIG, 'ring bases must be 16-byte aligned');
    const asked = this.regs.get(R.OFFLOADS) >>> 0;
    const caps = this.caps;
    if ((asked & ~caps) !== 0) return this.die(NIC_FATAL.BAD_OFFLOADS, `OFFLOADS 0x${asked.toString(16)} asks for more than CAPS 0x${caps.toString(16)}`);
    if ((asked & (NIC_CAP.TSO4 | NIC_CAP.TSO6)) !== 0 && (asked & NIC_CAP.TX_CSUM) === 0) return this.die(NIC_FATAL.BAD_OFFLOADS, 'TSO needs TX_CSUM in OFFLOADS');
    this.offloads = asked;
    this.wire.setRxOffloads(asked & NIC_CAP.RX_CSUM);
    this.txBase = tb;
    this.rxBase = rb;
    this.txSize = ts;
    this.rxSize = rs;
    this.publishStatus();
  }

  private ringFault(e: DmaEngine, what: string): false {
    this.noteFault(e);
    this.die(NIC_FATAL.RING_FAULT, `${what} faulted at 0x${e.fault.iova.toString(16)}`);
    return false;
  }

  private noteFault(e: DmaEngine): void {
    this.stats.dmaFaults++;
    recordFault(this.regs, e);
  }

  private drop(reg: number): void {
    if (reg === R.RX_DROPS) this.stats.rxDrops++;
    else this.stats.txDrops++;
    this.regs.put(reg, this.regs.get(reg) + 1);
  }

  private die(code: number, why: string): void {
    this.fatal = true;
    this.regs.put(R.FATAL_REASON, code);
    this.publishStatus();
    this.log(`nic: fatal: ${why}`);
    this.o.raiseIrq();
  }

  private publishStatus(): void {
    this.regs.put(R.STATUS, (this.wire.linkUp ? NIC_STATUS_LINK : 0) | (this.fatal ? NIC_STATUS_FATAL : 0));
    this.regs.put(R.CAPS, this.caps);
  }
}

const NO_WIRE: NicWire = { linkUp: false, offloads: 0, send: () => false, setRxOffloads: () => {}, rxSpace: () => {}, close: () => {} };

/** Two NIC models joined back to back: what one sends the other receives. */
export function cable(a: NicModel, b: NicModel): void {
  const end = (peer: NicModel): NicWire => ({
    linkUp: true,
    // nothing on a cable would finish a checksum or cut a super-frame: the drivers do it
    offloads: 0,
    send: (f, len) => {
      const ok = peer.receive(f, WIRE_HEADROOM, len, 0);
      if (ok) peer.rxBatchDone();
      return ok;
    },
    setRxOffloads: () => {},
    rxSpace: () => {},
    close: () => {},
  });
  a.attachWire(end(b));
  b.attachWire(end(a));
}

/**
 * A host TAP as the wire, opened with virtio-net headers: frames read from it are received,
 * frames sent are written to it, each behind the header that carries its offload request. The
 * kernel is asked (TUNSETOFFLOAD) for checksum-partial frames only while the driver takes them,
 * and never for TSO frames: with no LRO on this NIC the host stack segments before the TAP, in C.
 */
export class TapWire implements NicWire {
  readonly linkUp = true;
  readonly offloads = NIC_CAP_ALL;
  private readonly buf = new Uint8Array(VIRTIO_NET_HDR_SIZE + 65536);
  private readonly vnet = newVnetFields();
  private readonly rxVnet = newVnetFields();
  private readonly l4 = newL4Info();
  private readonly watcher: Watcher;
  private rxOffloads = -1;
  private paused = false;
  private closed = false;
  private nic: NicModel | null = null;

  /** The TAP outlives the NIC models plugged into it (a reset makes a new model), so it is opened once. */
  constructor(private readonly fd: number) {
    native.setNonblock(fd, true);
    this.setRxOffloads(0);
    this.watcher = new native.Watcher(fd, 'readable', () => this.pump());
    this.watcher.unref();
  }

  /** `fd` must be a TAP opened with IFF_VNET_HDR and a 12-byte header (tapOpen's vnetHdr). */
  static open(name: string): TapWire {
    const t = native.tapOpen(name, { vnetHdr: true });
    try {
      return new TapWire(t.fd);
    } catch (e) {
      native.close(t.fd);
      throw e;
    }
  }

  plug(nic: NicModel): void {
    this.nic = nic;
    nic.attachWire(this);
    this.rxSpace();
  }

  setRxOffloads(caps: number): void {
    const want = caps & NIC_CAP.RX_CSUM;
    if (want === this.rxOffloads || this.closed) return;
    try {
      native.tapSetOffload(this.fd, { csum: want !== 0 });
      this.rxOffloads = want;
    } catch {
      // the kernel keeps completing checksums itself: receive stays correct, only slower
    }
  }

  send(frame: Uint8Array, len: number, tx: NicTxOffload | null): boolean {
    if (this.closed) return false;
    const v = this.vnet;
    if (tx) vnetFromTxOffload(tx, v);
    else {
      v.flags = v.gsoType = v.hdrLen = v.gsoSize = v.csumStart = v.csumOffset = 0;
    }
    encodeVnetHdr(frame, 0, v);
    try {
      return native.writeFd(this.fd, frame, VIRTIO_NET_HDR_SIZE + len) !== null;
    } catch {
      // EIO while the host side of the TAP is down (a cable with nobody at the other end):
      // the frame is lost on the wire, as on real hardware. Never an hv crash.
      return false;
    }
  }

  rxSpace(): void {
    if (this.paused && !this.closed) {
      this.paused = false;
      this.watcher.resume();
      this.pump();
    }
  }

  private pump(): void {
    try {
      this.pumpFrames();
    } catch (e) {
      // a TAP read or header that breaks the wire's own code stops the NIC plugged in, not hw
      this.nic?.failInternal(`TAP wire: ${(e as Error).message}`);
      this.paused = true;
      this.watcher.pause();
    }
  }

  private pumpFrames(): void {
    const nic = this.nic;
    let n = 0;
    while (n < BUDGET && !this.closed) {
      if (nic === null || !nic.canReceive) {
        // hold frames in the TAP's queue until the driver posts buffers
        this.paused = true;
        this.watcher.pause();
        break;
      }
      let r: number | null;
      try {
        r = native.readFd(this.fd, this.buf);
      } catch {
        break; // the host took the TAP down: nothing to receive
      }
      if (r === null || r === 0) break;
      n++;
      const st = r < VIRTIO_NET_HDR_SIZE + 14 ? RX_DROP : rxStatusFromVnet(decodeVnetHdr(this.buf, 0, this.rxVnet), this.buf, VIRTIO_NET_HDR_SIZE, r - VIRTIO_NET_HDR_SIZE, nic.rxCsum, this.l4);
      if (st === RX_DROP) nic.wireDrop();
      else nic.receive(this.buf, VIRTIO_NET_HDR_SIZE, r - VIRTIO_NET_HDR_SIZE, st);
    }
    if (n > 0) nic?.rxBatchDone();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.watcher.close();
    native.close(this.fd);
  }
}
