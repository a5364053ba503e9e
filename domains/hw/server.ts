// hw's side of the wire: every request from hv is answered exactly once, in order, and nothing
// hv sends can crash hw. A request that is short, unknown, out of range or carries descriptors
// it should not is refused with a reason; anything that throws while serving one becomes an EIO
// reply. Notices to hv are sent without waiting: when hv is not reading, they are dropped and
// counted, because hw must never block on hv (hv may itself be waiting on hw). Fault notices
// are few by construction: only a new fault record or an overflow, at most FAULT_NOTICES a
// second per source id, so one domain's device cannot crowd the others' notices out.
import { unpack } from 'msgpackr';
import { VtdUnit } from '../../src/hw/vtd/unit.js';
import type { FaultInfo } from '../../src/hw/vtd/faults.js';
import { REG_SPACE } from '../../src/abi/vtd-registers.js';
import { errnoCode, native, type Watcher } from '../../src/native/index.js';
import { HwDmaMemory } from './dma-memory.js';
import { HwDevices, HwRefusal } from './devices.js';
import { checkInit } from './init-check.js';
import { NoticeLimiter } from './notice-limit.js';
import {
  DISPOSITIONS, EVT, EVT_FAULT, EVT_LOG, EVT_MAX, FRAMES_PER_MESSAGE, HW_OP, HW_STATUS, INFO_LINK_UP, INFO_NVME, INFO_READONLY,
  REP, REP_MAX, REQ, REQ_MAX, STAT_FIELDS, isOp, putText, type HwStats, type HwStatus,
} from '../../src/hw/wire.js';

/** Descriptors each request carries; any other count is refused. */
const FDS_OF: Record<number, number | 'frames'> = { [HW_OP.INIT]: 1, [HW_OP.ATTACH]: 3, [HW_OP.DOMAIN_FRAMES]: 'frames', [HW_OP.TAP_WIRE]: 1 };
/** How long hw, once hv went, waits for medium transfers to return before it exits regardless. */
const RETIRE_WAIT_MS = 10_000;
/** Fault notices one source id may send a second. */
export const FAULT_NOTICES = 32;

export interface HwServerOptions {
  /** hv closed its end: hw has nothing left to do */
  onHvGone: () => void;
  /** the hardware list is in and every medium and TAP is open: hw may drop privileges */
  onInitialised?: () => void;
}

export class HwServer {
  private readonly req = new Uint8Array(REQ_MAX);
  private readonly reqDv = new DataView(this.req.buffer);
  private readonly rep = new Uint8Array(REP_MAX);
  private readonly repDv = new DataView(this.rep.buffer);
  private readonly evt = new Uint8Array(EVT_MAX);
  private readonly evtDv = new DataView(this.evt.buffer);
  private readonly watcher: Watcher;
  private unit: VtdUnit | null = null;
  private mem: HwDmaMemory | null = null;
  private devices: HwDevices | null = null;
  private dropped = 0;
  private closed = false;
  private readonly limiter = new NoticeLimiter(FAULT_NOTICES, 1000, (sid, n) =>
    this.log(`source id 0x${sid.toString(16)}: ${n} more fault notice(s) in the last second were not sent (limit ${FAULT_NOTICES}/s); the fault registers and STATS count every fault`),
  );

  constructor(
    private readonly rpcFd: number,
    private readonly eventFd: number,
    private readonly opts: HwServerOptions,
  ) {
    this.watcher = new native.Watcher(rpcFd, 'readable', () => this.serve());
    // hw lives exactly as long as hv's requests can come
    this.watcher.ref();
  }

  /** `cb` runs once every old owner's register page reads all-ones (see HwDevices.retire). */
  whenRetired(cb: () => void): void {
    if (this.devices === null) cb();
    else this.devices.whenRetired(cb);
  }

  /** A log line for hv's log (hv puts "hw:" in front). */
  log(line: string): void {
    const n = putText(this.evt, EVT.text, line);
    this.evtDv.setUint32(EVT.kind, EVT_LOG, true);
    this.evtDv.setUint32(EVT.textLen, n, true);
    this.notify(EVT.text + n);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.watcher.close();
    this.devices?.close();
    this.mem?.close();
  }

  private serve(): void {
    while (!this.closed) {
      let r;
      try {
        r = native.recvmsg(this.rpcFd, this.req);
      } catch (e) {
        this.log(`request socket failed (${errnoCode(e) ?? (e as Error).message}): stopping`);
        return this.hvGone();
      }
      if (r === null) return;
      if (r.len === 0) return this.hvGone();
      this.answer(r.len, r.fds, r.truncated);
    }
  }

  private hvGone(): void {
    this.close();
    this.watcher.unref();
    // the owners' pages read all-ones before hw goes, once their last transfers returned; a
    // medium that never returns one costs the owners that much, not a hw that never exits
    const cap = setTimeout(() => {
      process.stderr.write(`hw: transfers still in flight ${RETIRE_WAIT_MS} ms after hv went: leaving their register pages as they are\n`);
      this.opts.onHvGone();
    }, RETIRE_WAIT_MS);
    this.whenRetired(() => {
      clearTimeout(cap);
      this.opts.onHvGone();
    });
  }

  private answer(len: number, fds: number[], truncated: boolean): void {
    const seq = len >= REQ.size ? this.reqDv.getUint32(REQ.seq, true) : 0;
    this.rep.fill(0, 0, REP.text);
    this.repDv.setUint32(REP.seq, seq, true);
    let status: HwStatus = HW_STATUS.OK;
    let text = '';
    try {
      if (truncated && len >= REQ.size && this.reqDv.getUint32(REQ.op, true) === HW_OP.INIT)
        throw new HwRefusal(HW_STATUS.EINVAL, `INIT: the hardware list is more than the ${REQ_MAX - REQ.size} bytes one request carries: list fewer devices, or give media shorter paths`);
      if (truncated) throw new HwRefusal(HW_STATUS.EINVAL, `request of ${len} bytes or its descriptors did not fit (at most ${REQ_MAX} bytes)`);
      if (len < REQ.size) throw new HwRefusal(HW_STATUS.EINVAL, `request of ${len} bytes is shorter than the ${REQ.size}-byte header`);
      const op = this.reqDv.getUint32(REQ.op, true);
      if (!isOp(op)) throw new HwRefusal(HW_STATUS.EINVAL, `unknown request ${op}`);
      const want = FDS_OF[op] ?? 0;
      if (want === 'frames' ? fds.length > FRAMES_PER_MESSAGE : fds.length !== want)
        throw new HwRefusal(HW_STATUS.EINVAL, `request ${op} came with ${fds.length} descriptors`);
      this.run(op, len, fds, () => {
        fds = [];
      });
    } catch (e) {
      status = e instanceof HwRefusal ? e.status : HW_STATUS.EIO;
      text = e instanceof Error ? e.message : String(e);
    } finally {
      for (const f of fds) native.close(f);
    }
    this.repDv.setInt32(REP.status, status, true);
    const n = text === '' ? 0 : putText(this.rep, REP.text, text);
    this.repDv.setUint32(REP.textLen, n, true);
    try {
      native.sendmsg(this.rpcFd, this.rep.subarray(0, REP.text + n));
    } catch (e) {
      // hv sleeps on this reply; without it hv gives up on hw, so there is nothing else to try
      this.log(`reply ${seq} not sent: ${errnoCode(e) ?? (e as Error).message}`);
    }
  }

  /** Serves one request; `took` is called once the descriptors are someone else's to close. */
  private run(op: number, len: number, fds: number[], took: () => void): void {
    const a = this.reqDv.getUint32(REQ.a, true);
    const b = this.reqDv.getUint32(REQ.b, true);
    const c = this.reqDv.getUint32(REQ.c, true);
    if (op === HW_OP.INIT) return this.init(len, fds[0]);
    const unit = this.unit;
    const mem = this.mem;
    const devices = this.devices;
    if (unit === null || mem === null || devices === null) throw new HwRefusal(HW_STATUS.EINVAL, 'hw is not initialised: INIT comes first');
    switch (op) {
      case HW_OP.MMIO_READ:
        checkRegister(a, b);
        this.repDv.setBigUint64(REP.value, unit.mmioRead(a, b as 4 | 8), true);
        return;
      case HW_OP.MMIO_WRITE:
        checkRegister(a, b);
        unit.mmioWrite(a, b as 4 | 8, this.reqDv.getBigUint64(REQ.value, true));
        return;
      case HW_OP.DOMAIN_FRAMES:
        took();
        try {
          mem.addFrames(a, b, c, fds);
        } catch (e) {
          throw new HwRefusal(HW_STATUS.EINVAL, (e as Error).message);
        }
        return;
      case HW_OP.DOMAIN_DEAD:
        mem.domainDead(a);
        return;
      case HW_OP.ATTACH: {
        const i = this.device(a);
        took();
        devices.attach(i, fds);
        return;
      }
      case HW_OP.BUS_MASTER:
        devices.setBusMaster(this.device(a), b !== 0);
        return;
      case HW_OP.DEVICE_INFO: {
        const i = devices.info(this.device(a));
        this.repDv.setFloat64(REP.num, i.size, true);
        this.repDv.setUint32(REP.flags, (i.nvme ? INFO_NVME : 0) | (i.readonly ? INFO_READONLY : 0) | (i.linkUp ? INFO_LINK_UP : 0), true);
        return;
      }
      case HW_OP.STATS: {
        const s: HwStats = { ...unit.stats, mappedViews: mem.mappedViews, droppedNotices: this.dropped, heldNotices: this.limiter.held };
        STAT_FIELDS.forEach((f, k) => this.repDv.setFloat64(REP.num + 8 * k, s[f], true));
        return;
      }
      case HW_OP.TAP_WIRE: {
        const i = this.device(a);
        took();
        try {
          devices.plugTap(i, fds[0]);
        } catch (e) {
          throw new HwRefusal(HW_STATUS.EINVAL, (e as Error).message);
        }
        return;
      }
      case HW_OP.IN_FLIGHT:
        this.repDv.setBigUint64(REP.value, BigInt(mem.inFlight(a)), true);
        return;
      default:
        throw new HwRefusal(HW_STATUS.EINVAL, `request ${op} is not served`);
    }
  }

  private device(index: number): number {
    const n = this.devices?.count ?? 0;
    if (index >= n) throw new HwRefusal(HW_STATUS.EINVAL, `device ${index} does not exist (hw has ${n})`);
    return index;
  }

  private init(len: number, areaFd: number): void {
    if (this.unit !== null) throw new HwRefusal(HW_STATUS.EINVAL, 'hw is initialised already');
    let init;
    try {
      init = checkInit(unpack(this.req.subarray(REQ.size, len)));
    } catch (e) {
      throw new HwRefusal(HW_STATUS.EINVAL, (e as Error).message);
    }
    const mem = new HwDmaMemory(areaFd);
    let devices: HwDevices;
    const unit = new VtdUnit(mem, {
      addressWidth: init.iommu.addressWidth,
      cachingMode: init.iommu.cachingMode,
      log: (m) => this.log(m),
      onFaultNotice: (f) => this.fault(f),
    });
    try {
      devices = new HwDevices(init, unit, mem, (m) => this.log(m));
    } catch (e) {
      mem.close();
      throw e;
    }
    this.unit = unit;
    this.mem = mem;
    this.devices = devices;
    this.opts.onInitialised?.();
  }

  private fault(f: FaultInfo): void {
    if (!this.limiter.allow(f.sid)) return;
    const dv = this.evtDv;
    dv.setUint32(EVT.kind, EVT_FAULT, true);
    dv.setUint32(EVT.sid, f.sid, true);
    dv.setFloat64(EVT.iova, f.iova, true);
    dv.setUint32(EVT.reason, f.reason, true);
    dv.setUint32(EVT.write, f.write ? 1 : 0, true);
    dv.setUint32(EVT.disposition, DISPOSITIONS.indexOf(f.disposition), true);
    this.notify(EVT.size);
  }

  private notify(len: number): void {
    if (this.closed) return;
    try {
      native.sendmsg(this.eventFd, this.evt.subarray(0, len));
    } catch {
      // EAGAIN: hv is behind (or waiting on us); a lost notice is counted, never waited for
      this.dropped++;
    }
  }
}

function checkRegister(off: number, size: number): void {
  if (size !== 4 && size !== 8) throw new HwRefusal(HW_STATUS.EINVAL, `register access of ${size} bytes (4 or 8)`);
  if (off % size !== 0 || off + size > REG_SPACE) throw new HwRefusal(HW_STATUS.EINVAL, `register offset 0x${off.toString(16)} is not an aligned ${size}-byte register in the ${REG_SPACE}-byte page`);
}
