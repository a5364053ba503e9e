// hv's end of the wire to its hardware process. A request is one sendmsg and one blocking
// receive, so programming the IOMMU reads like MMIO (VtdDriver sees an ordinary Mmio). hw never
// waits on hv, so a reply either comes or hw is broken: when hw exits, closes its socket, answers
// nonsense or does not answer within the timeout, the link is marked gone, hw is killed, and
// every later request fails with HwError naming the cause. hv itself carries on.
import type { ChildProcess } from 'node:child_process';
import { pack } from 'msgpackr';
import type { Mmio } from '../../iommu/vtd/driver.js';
import type { FaultDisposition, FaultInfo } from '../../src/hw/vtd/faults.js';
import { errnoCode, native, type Watcher } from '../../src/native/index.js';
import {
  DISPOSITIONS, EVT, EVT_FAULT, EVT_LOG, EVT_MAX, HW_EVENT_FD, HW_OP, HW_RPC_FD, NUM_SLOTS, REP, REP_MAX, REQ, REQ_MAX,
  STATUS_NAMES, getText, type HwInit, type HwOp,
} from '../../src/hw/wire.js';
import { spawnHardware } from './spawn.js';

/** An ordinary request; hw answers in microseconds, so this only catches a hung hw. */
const CALL_TIMEOUT_MS = 10_000;
/** INIT waits for a Node process to boot on a loaded machine, and opens media. */
const INIT_TIMEOUT_MS = 60_000;
/** How long a closed notice socket waits for hw's exit status before it is the cause. */
const EXIT_GRACE_MS = 1000;

export class HwError extends Error {
  constructor(
    readonly code: 'EIO' | 'EINVAL' | 'ENOENT',
    message: string,
  ) {
    super(message);
  }
}

export interface HwLinkOptions {
  bundle: string;
  /** start hw under ringside-confine with these rules */
  confine?: { launcher: string; args: string[] };
  /** libuv threads for hw's medium transfers */
  threads?: number;
  log: (line: string) => void;
  onFault: (f: FaultInfo) => void;
  /** hw is gone for good; `why` names the cause */
  onGone: (why: string) => void;
  /**
   * hw's process has exited: only now has every transfer it started really stopped (a SIGKILLed
   * process can sit in uninterruptible I/O for a while after hv gave up on it).
   */
  onExit?: () => void;
}

/** The reply to the last request: valid until the next one. */
export interface HwReply {
  value: bigint;
  flags: number;
  num(i: number): number;
}

export class HwLink implements Mmio {
  private readonly proc: ChildProcess;
  private readonly rpc: number;
  private readonly events: number;
  private readonly watcher: Watcher;
  private readonly req = new Uint8Array(REQ.size);
  private readonly reqDv = new DataView(this.req.buffer);
  private readonly rep = new Uint8Array(REP_MAX);
  private readonly repDv = new DataView(this.rep.buffer);
  private readonly evt = new Uint8Array(EVT_MAX);
  private readonly evtDv = new DataView(this.evt.buffer);
  private seq = 0;
  private goneWhy: string | null = null;
  private exitedFlag = false;
  private readonly reply: HwReply = {
    value: 0n,
    flags: 0,
    num: (i) => (i >= 0 && i < NUM_SLOTS ? this.repDv.getFloat64(REP.num + 8 * i, true) : Number.NaN),
  };

  constructor(private readonly opts: HwLinkOptions) {
    const [rpc, rpcChild] = native.seqpacketPair();
    const [events, eventsChild] = native.seqpacketPair();
    this.rpc = rpc;
    this.events = events;
    try {
      this.proc = spawnHardware({ bundle: opts.bundle, fds: { [HW_RPC_FD]: rpcChild, [HW_EVENT_FD]: eventsChild }, log: opts.log, ...(opts.confine ? { confine: opts.confine } : {}), ...(opts.threads !== undefined ? { threads: opts.threads } : {}) });
    } catch (e) {
      native.close(rpc);
      native.close(events);
      throw e;
    } finally {
      // hw holds its ends now; ours must go so hw's death reads as end-of-file here
      native.close(rpcChild);
      native.close(eventsChild);
    }
    native.setNonblock(rpc, false);
    native.setRecvTimeout(rpc, CALL_TIMEOUT_MS);
    this.watcher = new native.Watcher(events, 'readable', () => this.pump());
    this.proc.on('exit', (code, signal) => {
      this.lose(`hw exited (${signal ? `killed by ${signal}` : `code ${code}`})`);
      this.exited();
    });
    this.proc.on('error', (e) => {
      this.lose(`hw could not run: ${e.message}`);
      if (this.proc.pid === undefined) this.exited(); // never started: nothing of it can run
    });
  }

  get pid(): number | null {
    return this.proc.pid ?? null;
  }

  /** Whether hw's process has exited (not merely been given up on). */
  get hasExited(): boolean {
    return this.exitedFlag;
  }

  private exited(): void {
    if (this.exitedFlag) return;
    this.exitedFlag = true;
    this.opts.onExit?.();
  }

  /** Why hw is gone, or null while it runs. */
  get gone(): string | null {
    return this.goneWhy;
  }

  /** Sends the hardware list and the table area; hw opens media and TAPs before it answers. */
  init(init: HwInit, areaFd: number): void {
    const body = pack(init);
    if (REQ.size + body.length > REQ_MAX) throw new HwError('EINVAL', `the hardware list is ${body.length} bytes; hw takes at most ${REQ_MAX - REQ.size}`);
    const msg = new Uint8Array(REQ.size + body.length);
    msg.set(body, REQ.size);
    native.setRecvTimeout(this.rpc, INIT_TIMEOUT_MS);
    try {
      this.call(HW_OP.INIT, 0, 0, 0, 0n, [areaFd], msg);
    } finally {
      if (this.goneWhy === null) native.setRecvTimeout(this.rpc, CALL_TIMEOUT_MS);
    }
  }

  mmioRead(off: number, size: 4 | 8): bigint {
    return this.call(HW_OP.MMIO_READ, off, size).value;
  }

  mmioWrite(off: number, size: 4 | 8, value: bigint | number): void {
    this.call(HW_OP.MMIO_WRITE, off, size, 0, BigInt.asUintN(64, BigInt(value)));
  }

  /**
   * One request and its reply. Throws HwError: EIO when hw is gone (and marks it so), or the
   * status hw refused the request with.
   */
  call(op: HwOp, a = 0, b = 0, c = 0, value = 0n, fds: number[] = [], body?: Uint8Array): HwReply {
    if (this.goneWhy !== null) throw this.goneError();
    const msg = body ?? this.req;
    const dv = body ? new DataView(body.buffer, body.byteOffset, body.byteLength) : this.reqDv;
    const seq = (this.seq = (this.seq + 1) >>> 0);
    dv.setUint32(REQ.op, op, true);
    dv.setUint32(REQ.seq, seq, true);
    dv.setUint32(REQ.a, a >>> 0, true);
    dv.setUint32(REQ.b, b >>> 0, true);
    dv.setUint32(REQ.c, c >>> 0, true);
    dv.setBigUint64(REQ.value, value, true);
    try {
      native.sendmsg(this.rpc, msg, fds);
    } catch (e) {
      this.lose(`hw's request socket failed (${errnoCode(e) ?? (e as Error).message})`);
      throw this.goneError();
    }
    let r;
    try {
      r = native.recvmsg(this.rpc, this.rep, true);
    } catch (e) {
      this.lose(`hw's request socket failed (${errnoCode(e) ?? (e as Error).message})`);
      throw this.goneError();
    }
    if (r !== null) for (const f of r.fds) native.close(f); // hv takes no descriptors from hw
    if (r === null) this.lose(`hw did not answer request ${op} within ${CALL_TIMEOUT_MS} ms`);
    else if (r.len === 0) this.lose('hw closed its request socket');
    else if (r.truncated || r.len < REP.text || r.fds.length > 0) this.lose(`hw answered request ${op} with a malformed reply (${r.len} bytes)`);
    else if (this.repDv.getUint32(REP.seq, true) !== seq) this.lose(`hw answered request ${seq} out of turn`);
    else {
      const textLen = this.repDv.getUint32(REP.textLen, true);
      if (REP.text + textLen > r.len) this.lose(`hw answered request ${op} with a reply shorter than its text`);
      else {
        const status = this.repDv.getInt32(REP.status, true);
        if (status !== 0) {
          const text = getText(this.rep, REP.text, textLen);
          const name = STATUS_NAMES[status] ?? 'EIO';
          throw new HwError(name === 'ENOENT' || name === 'EINVAL' ? name : 'EIO', text || `hw refused request ${op} (${name})`);
        }
        this.reply.value = this.repDv.getBigUint64(REP.value, true);
        this.reply.flags = this.repDv.getUint32(REP.flags, true);
        return this.reply;
      }
    }
    throw this.goneError();
  }

  /** Reads every notice hw has queued: before answering anything that reports faults. */
  pump(): void {
    while (this.goneWhy === null) {
      let r;
      try {
        r = native.recvmsg(this.events, this.evt);
      } catch (e) {
        this.lose(`hw's notice socket failed (${errnoCode(e) ?? (e as Error).message})`);
        return;
      }
      if (r === null) return;
      for (const f of r.fds) native.close(f);
      if (r.len === 0) {
        // hw is dying: its exit status names the cause better than the socket can
        this.watcher.close();
        if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGKILL');
        setTimeout(() => this.lose('hw closed its notice socket'), EXIT_GRACE_MS).unref();
        return;
      }
      this.notice(r.len, r.truncated);
    }
  }

  /** Stops hw: hv is shutting down or gave up on the platform. */
  close(why = 'hv closed the platform'): void {
    this.lose(why, false);
  }

  private notice(len: number, truncated: boolean): void {
    const dv = this.evtDv;
    const kind = len >= 4 ? dv.getUint32(EVT.kind, true) : 0;
    if (!truncated && kind === EVT_FAULT && len === EVT.size) {
      const d = dv.getUint32(EVT.disposition, true);
      const f: FaultInfo = {
        sid: dv.getUint32(EVT.sid, true) & 0xffff,
        iova: dv.getFloat64(EVT.iova, true),
        reason: dv.getUint32(EVT.reason, true) & 0xff,
        write: dv.getUint32(EVT.write, true) !== 0,
        disposition: (DISPOSITIONS[d] ?? 'recorded') as FaultDisposition,
      };
      if (Number.isFinite(f.iova)) return this.opts.onFault(f);
    } else if (!truncated && kind === EVT_LOG && len >= EVT.text && EVT.text + dv.getUint32(EVT.textLen, true) === len) {
      // one line per notice: a line break inside could forge a line of hv's log
      return this.opts.log(`hw: ${getText(this.evt, EVT.text, len - EVT.text).replace(/[\r\n]/g, ' ')}`);
    }
    this.opts.log(`hv: malformed notice from hw (${len} bytes, kind ${kind}) dropped`);
  }

  private goneError(): HwError {
    return new HwError('EIO', `the PCI hardware is gone (${this.goneWhy}); its devices cannot be used until the platform restarts`);
  }

  private lose(why: string, report = true): void {
    if (this.goneWhy !== null) return;
    this.goneWhy = why;
    this.watcher.close();
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGKILL');
    native.close(this.rpc);
    native.close(this.events);
    if (report) this.opts.onGone(why);
  }
}
