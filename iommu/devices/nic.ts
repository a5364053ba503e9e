// The emulated NIC. Transmit: on the doorbell the device walks its transmit ring from head to the
// driver's tail, reads each descriptor and its frame by DMA through the remapping unit, and puts
// the frame on its wire. Receive: a frame from the wire goes into the next posted buffer by DMA.
// Descriptors are written back (DD, ERR, length) by DMA too. A fault on a frame's buffer fails
// that descriptor (ERR, reason); a fault on the ring itself stops the NIC (STATUS.FATAL).
//
// Wires: none (link down, frames dropped), a host TAP (frames read and written as they are, no
// offloads), or a cable to another NIC model in the same hv.

import { native, type Watcher } from '../../src/native/index.js';
import { DmaEngine, type DmaMemory, type PciFunctionOptions } from './dma.js';
import {
  DESC, DESC_DD, DESC_ERR, NIC_BAR_SIZE, NIC_CTRL_EN, NIC_DESC_SIZE, NIC_FATAL, NIC_MAX_FRAME, NIC_MAX_RING,
  NIC_REG as R, NIC_STATUS_FATAL, NIC_STATUS_LINK,
} from './nic-abi.js';
import { RegisterPage } from './registers.js';

const TWO32 = 4294967296;
/** Frames moved per doorbell or wire wakeup before yielding to the rest of hv. */
const BUDGET = 256;

/** Where a NIC's frames go and come from. */
export interface NicWire {
  readonly linkUp: boolean;
  /** false when the wire refused the frame */
  send(frame: Uint8Array, len: number): boolean;
  /** the model has receive buffers again (a TAP wire resumes reading) */
  rxSpace(): void;
  close(): void;
}

export interface NicModelOptions extends PciFunctionOptions {
  mac: Uint8Array;
}

export class NicModel {
  readonly stats = { rxFrames: 0, txFrames: 0, rxDrops: 0, txDrops: 0, dmaFaults: 0 };
  wire: NicWire = NO_WIRE;
  private readonly regs: RegisterPage;
  private readonly ctl: DmaEngine;
  private readonly data: DmaEngine;
  private readonly desc = new Uint8Array(NIC_DESC_SIZE);
  private readonly descDv = new DataView(this.desc.buffer);
  private readonly frame = new Uint8Array(NIC_MAX_FRAME);
  private readonly log: (msg: string) => void;
  private enabled = false;
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
    this.data = new DmaEngine(o.unit, o.mem, o.sid, Math.ceil(NIC_MAX_FRAME / 4096) + 1);
    this.log = o.log ?? (() => {});
    this.reset();
  }

  reset(): void {
    this.enabled = false;
    this.fatal = false;
    this.txHead = this.rxHead = this.rxTail = 0;
    this.regs.clear();
    const m = this.o.mac;
    this.regs.put(R.MAC_LO, m[0] | (m[1] << 8) | (m[2] << 16) | (m[3] << 24));
    this.regs.put(R.MAC_HI, m[4] | (m[5] << 8));
    this.publishStatus();
  }

  attachWire(w: NicWire): void {
    this.wire = w;
    this.publishStatus();
  }

  get canReceive(): boolean {
    return !this.closed && this.enabled && !this.fatal && this.rxHead !== this.rxTail && this.o.busMaster();
  }

  /** The model is being replaced (reset, new owner): it touches nothing from now on. */
  close(): void {
    this.closed = true;
    this.enabled = false;
    this.wire = NO_WIRE;
  }

  /** Doorbell: CTRL, TX_TAIL or RX_TAIL changed. */
  kick(): void {
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

  /**
   * A frame from the wire: into the next posted buffer. False when it was dropped (no buffer,
   * too long, fault); the caller need not care, the counters and the driver do.
   */
  receive(frame: Uint8Array, len: number): boolean {
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
      if (this.data.translate(addr, len, true)) this.data.copySegments(frame, 0, true);
      else {
        this.noteFault(this.data);
        status |= DESC_ERR;
        reason = this.faultWord(this.data);
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
    let status = DESC_DD;
    let reason = 0;
    if (len < 14 || len > NIC_MAX_FRAME) {
      status |= DESC_ERR;
      this.drop(R.TX_DROPS);
    } else if (!this.data.read(addr, this.frame, len)) {
      this.noteFault(this.data);
      status |= DESC_ERR;
      reason = this.faultWord(this.data);
    } else if (this.wire.send(this.frame, len)) {
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

  private checkEnable(): void {
    const want = (this.regs.get(R.CTRL) & NIC_CTRL_EN) !== 0;
    if (want === this.enabled) return;
    if (!want) {
      this.enabled = false;
      this.fatal = false;
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
    this.regs.put(R.FAULTS, this.regs.get(R.FAULTS) + 1);
    this.regs.put(R.LAST_FAULT, this.faultWord(e));
    this.regs.put(R.LAST_FAULT_IOVA, e.fault.iova >>> 0);
    this.regs.put(R.LAST_FAULT_IOVA + 4, Math.floor(e.fault.iova / TWO32) >>> 0);
  }

  private faultWord(e: DmaEngine): number {
    const f = e.fault;
    return f.kind === 'fault' ? f.reason : f.kind === 'none' ? 0 : 0x100;
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
  }



}

const NO_WIRE: NicWire = { linkUp: false, send: () => false, rxSpace: () => {}, close: () => {} };

/** Two NIC models joined back to back: what one sends the other receives. */
export function cable(a: NicModel, b: NicModel): void {
  const end = (peer: NicModel): NicWire => ({
    linkUp: true,
    send: (f, len) => {
      const ok = peer.receive(f, len);
      if (ok) peer.rxBatchDone();
      return ok;
    },
    rxSpace: () => {},
    close: () => {},
  });
  a.attachWire(end(b));
  b.attachWire(end(a));
}

/** A host TAP as the wire: frames read from it are received, frames sent are written to it. */
export class TapWire implements NicWire {
  readonly linkUp = true;
  private readonly buf = new Uint8Array(65536);
  private readonly watcher: Watcher;
  private paused = false;
  private closed = false;
  private nic: NicModel | null = null;

  /** The TAP outlives the NIC models plugged into it (a reset makes a new model), so it is opened once. */
  constructor(private readonly fd: number) {
    native.setNonblock(fd, true);
    this.watcher = new native.Watcher(fd, 'readable', () => this.pump());
    this.watcher.unref();
  }

  static open(name: string): TapWire {
    return new TapWire(native.tapOpen(name, { vnetHdr: false }).fd);
  }

  plug(nic: NicModel): void {
    this.nic = nic;
    nic.attachWire(this);
    this.rxSpace();
  }

  send(frame: Uint8Array, len: number): boolean {
    if (this.closed) return false;
    try {
      return native.writeFd(this.fd, frame, len) !== null;
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
      nic.receive(this.buf, r);
      n++;
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
