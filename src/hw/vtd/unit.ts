// The DMA-remapping unit: the register interface a driver programs, and the translation every
// device DMA goes through. Translation order follows the reference walk: interrupt window, IOTLB,
// context (cache or tables), pass-through, address width, second-level walk. A hit in the IOTLB
// touches only typed arrays and preallocated results, so the device data path (xlate) never
// allocates; misses may, faults do.

import { ContextCache, CC_NOT_PRESENT, CC_VALID } from './context-cache.js';
import { EntryMasks, TT_DEVICE_TLB, TT_PASS_THROUGH } from '../../abi/vtd-entries.js';
import { FR_BEYOND_MGAW, FR_READ, FR_TT_BLOCKED, FR_WRITE, isQualifiedFault } from '../../abi/vtd-fault-reasons.js';
import type { FaultInfo, FaultRecord } from './faults.js';
import { FaultRecorder } from './faults.js';
import { invalidateContextCache, invalidateIotlb, runInvalidationQueue } from './invalidation.js';
import { ACC_R, ACC_W, Iotlb } from './iotlb.js';
import type { PhysMem } from '../../memory/physmem.js';
import {
  CCMD_CAIG_SHIFT,
  CCMD_CIRG_SHIFT,
  CCMD_FM_SHIFT,
  CCMD_ICC,
  CCMD_SID_SHIFT,
  FECTL_IM,
  FECTL_IP,
  FRCD_F,
  FSTS_ICE,
  FSTS_IQE,
  FSTS_ITE,
  FSTS_PFO,
  FSTS_PPF,
  GCMD_CFI,
  GCMD_IRE,
  GCMD_QIE,
  GCMD_SFL,
  GCMD_SIRTP,
  GCMD_SRTP,
  GCMD_TE,
  GSTS_QIES,
  GSTS_RTPS,
  GSTS_TES,
  ICS_IWC,
  IOTLB_DID_SHIFT,
  IOTLB_IAIG_SHIFT,
  IOTLB_IIRG_SHIFT,
  IOTLB_IVT,
  REG,
  REG_SPACE,
  capValue,
  ecapValue,
} from '../../abi/vtd-registers.js';
import type { VtdCaps } from '../../abi/vtd-registers.js';
import { RegisterFile, type RegWrite } from './register-file.js';
import { ContextOut, WalkOut, fetchContext, walkSecondLevel } from './walk.js';
import type { WalkConfig } from './walk.js';

export const INTERRUPT_WINDOW_START = 0xfee00000;
export const INTERRUPT_WINDOW_END = 0xfeefffff;

/** translateRaw codes below zero other than -reason. */
export const TR_INTERRUPT_WINDOW = -0x100;
export const TR_INVALID_ADDRESS = -0x101;

const TWO32 = 4294967296;
const M32 = 0xffffffffn;

export interface InterruptMessage {
  source: 'fault-event' | 'invalidation-completion' | 'msi';
  /** Requester of an MSI. */
  sid?: number;
  addr: number;
  data: number;
}

export interface VtdUnitOptions {
  /** MGAW and host address width: 39 (3-level tables only) or 48 (3- and 4-level). Default 48. */
  addressWidth?: 39 | 48;
  /** CAP.CM: not-present entries may be cached, so software invalidates on not-present to present. */
  cachingMode?: boolean;
  /** CAP.SLLPS; both on by default. */
  superpages?: { '2M'?: boolean; '1G'?: boolean };
  iotlbEntries?: number;
  iotlbWays?: number;
  /** Fault recording registers (CAP.NFR + 1). Default 8. */
  faultRecords?: number;
  log?: (msg: string) => void;
  /** Every fault, whatever became of it. */
  onFault?: (f: FaultInfo) => void;
  /**
   * Only the faults that change what the fault registers show software: a new FRCD record, or the
   * one that set FSTS.PFO. A device can fault at will; collapsed, suppressed and further
   * overflowed faults are only counted (stats), so they never become one message each.
   */
  onFaultNotice?: (f: FaultInfo) => void;
  onInterrupt?: (m: InterruptMessage) => void;
}

export interface TranslateOk {
  readonly ok: true;
  readonly addr: number;
}
export interface TranslateFault {
  readonly ok: false;
  /** VT-d fault reason 1..0xD, or 0 for the interrupt window / an address that is not one. */
  readonly reason: number;
}
/** Valid until the next call on the same unit: the objects are reused so translate never allocates. */
export type TranslateResult = TranslateOk | TranslateFault;

export type DmaResult =
  | { readonly ok: true }
  | {
      readonly ok: false;
      /** VT-d fault reason when kind is 'fault', else 0. */
      readonly reason: number;
      /** First address of the page that stopped the transfer. */
      readonly iova: number;
      readonly kind: 'fault' | 'unbacked' | 'interrupt-window';
    };

const DMA_OK: DmaResult = Object.freeze({ ok: true });

export interface UnitStats {
  translations: number;
  iotlbHits: number;
  iotlbMisses: number;
  walks: number;
  faults: number;
  /** faults the same source id's pending record already stood for */
  faultsCollapsed: number;
  /** faults with no free record (PFO set by one of them or already) */
  faultsOverflowed: number;
  /** faults FPD kept out of the records */
  faultsSuppressed: number;
}

export class VtdUnit {
  readonly regs: RegisterFile;
  readonly contextCache = new ContextCache();
  readonly iotlb: Iotlb;
  readonly caps: Readonly<VtdCaps>;
  readonly stats: UnitStats = {
    translations: 0, iotlbHits: 0, iotlbMisses: 0, walks: 0, faults: 0, faultsCollapsed: 0, faultsOverflowed: 0, faultsSuppressed: 0,
  };
  /** Bench/diagnostic switch: when false every translation walks (nothing is looked up or filled). */
  iotlbEnabled = true;
  onFault: ((f: FaultInfo) => void) | undefined;
  onFaultNotice: ((f: FaultInfo) => void) | undefined;
  onInterrupt: ((m: InterruptMessage) => void) | undefined;

  private readonly faults: FaultRecorder;
  private readonly cfg: WalkConfig;
  private readonly log: (msg: string) => void;
  private te = false;
  private qie = false;
  private rootTable = -1;
  private readonly scratch = new Uint32Array(2);
  private readonly ctx = new ContextOut();
  private readonly walk = new WalkOut();
  /** Address slot of xlate(): iova in, physical address out. */
  readonly io = new Float64Array(1);
  // NaN, not 0: the field starts with double representation, so updates write in place
  private readonly okResult: { ok: true; addr: number } = { ok: true, addr: Number.NaN };
  private readonly faultResult: { ok: false; reason: number } = { ok: false, reason: 0 };
  private dmaPages = new Float64Array(64);
  private readonly msiBuf = new Uint8Array(4);
  private readonly statusBuf = new Uint8Array(4);

  constructor(
    readonly mem: PhysMem,
    opts: VtdUnitOptions = {},
  ) {
    const nfr = opts.faultRecords ?? 8;
    if (!Number.isInteger(nfr) || nfr < 1 || REG.FRCD + 16 * nfr > REG_SPACE) throw new RangeError(`fault record count ${nfr} does not fit the register page`);
    this.caps = Object.freeze({
      addressWidth: opts.addressWidth ?? 48,
      cachingMode: opts.cachingMode ?? false,
      sllps2m: opts.superpages?.['2M'] ?? true,
      sllps1g: opts.superpages?.['1G'] ?? true,
      nfr,
    });
    this.log = opts.log ?? (() => {});
    this.onFault = opts.onFault;
    this.onFaultNotice = opts.onFaultNotice;
    this.onInterrupt = opts.onInterrupt;
    this.regs = new RegisterFile(nfr, (m) => this.log(`vt-d: ${m}`));
    this.regs.set32(REG.VER, 0x10);
    this.regs.set(REG.CAP, capValue(this.caps));
    this.regs.set(REG.ECAP, ecapValue());
    this.regs.set32(REG.FECTL, FECTL_IM);
    this.regs.set32(REG.IECTL, FECTL_IM);
    this.iotlb = new Iotlb(opts.iotlbEntries ?? 1024, opts.iotlbWays ?? 4);
    this.faults = new FaultRecorder(this.regs, nfr, () => this.raiseFaultEvent());
    this.cfg = {
      masks: new EntryMasks({ haw: this.caps.addressWidth, sllps2m: this.caps.sllps2m, sllps1g: this.caps.sllps1g, snoopControl: true, deviceTlb: true }),
      sagaw: this.caps.addressWidth === 48 ? 0b110 : 0b010,
      passThrough: true,
      deviceTlb: true,
    };
  }

  get translationEnabled(): boolean {
    return this.te;
  }

  /** Pending fault records as a driver's fault handler would read them. */
  pendingFaults(): FaultRecord[] {
    return this.faults.pending();
  }

  // ---- MMIO ----

  mmioRead(off: number, size: 4 | 8): bigint {
    return this.regs.read(off, size);
  }

  mmioWrite(off: number, size: 4 | 8, value: bigint | number): void {
    let v: bigint;
    try {
      v = typeof value === 'bigint' ? value : BigInt(value);
    } catch {
      this.regs.ignored++;
      this.log(`vt-d: write of non-integer ${String(value)} at 0x${off.toString(16)} ignored`);
      return;
    }
    const w = this.regs.write(off, size, v);
    if (w !== null) this.afterWrite(w);
  }

  private afterWrite(w: RegWrite): void {
    switch (w.def.name) {
      case 'GCMD':
        this.command(Number(w.value & M32));
        break;
      case 'CCMD':
        if ((w.value & CCMD_ICC) !== 0n) this.contextCommand(w.value);
        break;
      case 'IOTLB':
        if ((w.value & IOTLB_IVT) !== 0n) this.iotlbCommand(w.value);
        break;
      case 'IQT':
        this.processQueue();
        break;
      case 'FSTS':
        if ((w.old & BigInt(FSTS_IQE)) !== 0n && (w.value & BigInt(FSTS_IQE)) === 0n) this.processQueue();
        this.maybeClearFaultPending();
        break;
      case 'FECTL':
        this.unmasked(REG.FECTL, 'fault-event', REG.FEADDR, REG.FEDATA);
        break;
      case 'IECTL':
        this.unmasked(REG.IECTL, 'invalidation-completion', REG.IEADDR, REG.IEDATA);
        break;
      case 'ICS':
        if ((this.regs.get32(REG.ICS) & ICS_IWC) === 0) this.regs.set32(REG.IECTL, this.regs.get32(REG.IECTL) & ~FECTL_IP);
        break;
      case 'FRCD_HI':
        if ((w.written & FRCD_F) !== 0n) {
          this.faults.refreshPpf();
          this.maybeClearFaultPending();
        }
        break;
      default:
        break;
    }
  }

  /** GCMD: persistent bits state the wanted status, one-shot bits run a command. */
  private command(v: number): void {
    let sts = this.regs.get32(REG.GSTS);
    if ((v & GCMD_SRTP) !== 0) {
      this.rootTable = Number(this.regs.get(REG.RTADDR) & ~0xfffn);
      sts |= GSTS_RTPS;
      this.resetCaches();
    }
    if ((v & GCMD_SFL) !== 0) this.log('vt-d: SFL ignored: advanced fault logging is not supported (CAP.AFL=0)');
    if ((v & (GCMD_SIRTP | GCMD_IRE | GCMD_CFI)) !== 0) this.log('vt-d: interrupt-remapping commands ignored: ECAP.IR=0');
    const te = (v & GCMD_TE) !== 0;
    if (te !== this.te) {
      if (te && (sts & GSTS_RTPS) === 0) this.log('vt-d: translation enabled before a root table was set; every DMA will fault');
      this.te = te;
      sts = te ? sts | GSTS_TES : sts & ~GSTS_TES;
      this.resetCaches();
    }
    const qie = (v & GCMD_QIE) !== 0;
    if (qie !== this.qie) {
      if (qie) this.regs.set(REG.IQH, 0n);
      else if (this.regs.get(REG.IQH) !== this.regs.get(REG.IQT)) this.log('vt-d: queued invalidation disabled with descriptors still pending');
      this.qie = qie;
      sts = qie ? sts | GSTS_QIES : sts & ~GSTS_QIES;
    }
    this.regs.set32(REG.GSTS, sts >>> 0);
  }

  private resetCaches(): void {
    this.contextCache.invalidateAll();
    this.iotlb.invalidateAll();
  }

  private contextCommand(v: bigint): void {
    let caig = 0;
    if (this.qie) this.log('vt-d: CCMD ignored: register-based invalidation while queued invalidation is enabled');
    else {
      const gran = Number((v >> CCMD_CIRG_SHIFT) & 3n);
      caig = invalidateContextCache(this.contextCache, gran, Number(v & 0xffffn), Number((v >> CCMD_SID_SHIFT) & 0xffffn), Number((v >> CCMD_FM_SHIFT) & 3n));
      if (caig === 0) this.log(`vt-d: CCMD with reserved granularity ${gran} not performed`);
    }
    this.regs.set(REG.CCMD, (v & ~CCMD_ICC & ~(3n << CCMD_CAIG_SHIFT)) | (BigInt(caig) << CCMD_CAIG_SHIFT));
  }

  private iotlbCommand(v: bigint): void {
    let iaig = 0;
    if (this.qie) this.log('vt-d: IOTLB command ignored: register-based invalidation while queued invalidation is enabled');
    else {
      const gran = Number((v >> IOTLB_IIRG_SHIFT) & 3n);
      const iva = this.regs.get(REG.IVA);
      iaig = invalidateIotlb(this.iotlb, gran, Number((v >> IOTLB_DID_SHIFT) & 0xffffn), Number(iva & ~0xfffn), Number(iva & 0x3fn));
      if (iaig === 0) this.log(`vt-d: IOTLB command with reserved granularity ${gran} not performed`);
    }
    this.regs.set(REG.IOTLB, (v & ~IOTLB_IVT & ~(3n << IOTLB_IAIG_SHIFT)) | (BigInt(iaig) << IOTLB_IAIG_SHIFT));
  }

  private processQueue(): void {
    if (!this.qie || (this.regs.get32(REG.FSTS) & FSTS_IQE) !== 0) return;
    const head = Number((this.regs.get(REG.IQH) >> 4n) & 0x7fffn);
    const tail = Number((this.regs.get(REG.IQT) >> 4n) & 0x7fffn);
    const run = runInvalidationQueue(this.mem, this.scratch, this.regs.get(REG.IQA), head, tail, {
      contextCache: (g, did, sid, fm) => void invalidateContextCache(this.contextCache, g, did, sid, fm),
      iotlb: (g, did, addr, am) => void invalidateIotlb(this.iotlb, g, did, addr, am),
      statusWrite: (pa, data) => {
        new DataView(this.statusBuf.buffer).setUint32(0, data >>> 0, true);
        return this.mem.write(pa, this.statusBuf);
      },
      completion: () => this.invalidationCompletion(),
    });
    this.regs.set(REG.IQH, BigInt(run.head) << 4n);
    if (run.error !== undefined) {
      this.log(`vt-d: invalidation queue error: ${run.error}`);
      this.regs.set32(REG.FSTS, this.regs.get32(REG.FSTS) | FSTS_IQE);
      this.raiseFaultEvent();
    }
  }

  // ---- events ----

  private raiseFaultEvent(): void {
    this.raise(REG.FECTL, 'fault-event', REG.FEADDR, REG.FEDATA);
  }

  private invalidationCompletion(): void {
    const ics = this.regs.get32(REG.ICS);
    if ((ics & ICS_IWC) !== 0) return; // already signalled and not yet serviced
    this.regs.set32(REG.ICS, ics | ICS_IWC);
    this.raise(REG.IECTL, 'invalidation-completion', REG.IEADDR, REG.IEDATA);
  }

  private raise(ctl: number, source: InterruptMessage['source'], addrReg: number, dataReg: number): void {
    const c = this.regs.get32(ctl);
    if ((c & FECTL_IM) !== 0) this.regs.set32(ctl, c | FECTL_IP);
    else {
      this.regs.set32(ctl, c & ~FECTL_IP);
      this.deliver(source, addrReg, dataReg);
    }
  }

  /** Clearing IM with an event pending sends it. */
  private unmasked(ctl: number, source: InterruptMessage['source'], addrReg: number, dataReg: number): void {
    const c = this.regs.get32(ctl);
    if ((c & FECTL_IM) === 0 && (c & FECTL_IP) !== 0) {
      this.regs.set32(ctl, c & ~FECTL_IP);
      this.deliver(source, addrReg, dataReg);
    }
  }

  private deliver(source: InterruptMessage['source'], addrReg: number, dataReg: number): void {
    const addr = this.regs.get32(addrReg + 4) * TWO32 + this.regs.get32(addrReg);
    this.onInterrupt?.({ source, addr, data: this.regs.get32(dataReg) });
  }

  /** Software serviced every fault status: the pending event is gone. */
  private maybeClearFaultPending(): void {
    if ((this.regs.get32(REG.FSTS) & (FSTS_PFO | FSTS_PPF | FSTS_IQE | FSTS_ICE | FSTS_ITE)) === 0) {
      this.regs.set32(REG.FECTL, this.regs.get32(REG.FECTL) & ~FECTL_IP);
    }
  }

  // ---- translation ----

  /**
   * Translates one DMA address; see TranslateResult for the lifetime of the returned object.
   * Nothing in here allocates, but V8 boxes an `iova` above 2^30 passed to a call it does not
   * inline; device models on the data path use xlate().
   */
  translate(sid: number, iova: number, access: 'r' | 'w'): TranslateResult {
    this.io[0] = iova;
    const r = this.xlate(sid, access === 'w');
    if (r === 0) {
      this.okResult.addr = this.io[0];
      return this.okResult;
    }
    this.faultResult.reason = r >= -0xff ? -r : 0;
    return this.faultResult;
  }

  /**
   * One number instead of an object: a physical address (>= 0), -reason for a DMA-remapping fault
   * (already recorded or suppressed), TR_INTERRUPT_WINDOW or TR_INVALID_ADDRESS.
   */
  translateRaw(sid: number, iova: number, isWrite: boolean): number {
    this.io[0] = iova;
    const r = this.xlate(sid, isWrite);
    return r === 0 ? this.io[0] : r;
  }

  /**
   * The data path's form. V8 boxes a double that is not a small integer whenever it crosses a call
   * that is not inlined, and DMA addresses rarely are small, so the address travels through
   * `io[0]` instead: store the iova there, call, and on 0 read the physical address back from
   * `io[0]`; otherwise the result is a negative code as translateRaw's. An IOTLB hit allocates
   * nothing on this path.
   */
  xlate(sid: number, isWrite: boolean): number {
    this.stats.translations++;
    const iova = this.io[0];
    if (iova >= INTERRUPT_WINDOW_START && iova <= INTERRUPT_WINDOW_END) return TR_INTERRUPT_WINDOW;
    if (!this.te) {
      if (!(iova >= 0 && iova <= Number.MAX_SAFE_INTEGER)) return TR_INVALID_ADDRESS;
      this.io[0] = Math.floor(iova);
      return 0;
    }
    sid &= 0xffff;
    if (this.iotlbEnabled && iova >= 0 && iova < 281474976710656) {
      const lo = iova >>> 0;
      const t = this.iotlb;
      const slot = t.lookup(sid, lo >>> 12, (iova - lo) / TWO32);
      if (slot >= 0) {
        const acc = t.access[slot];
        if ((acc & (isWrite ? ACC_W : ACC_R)) !== 0) {
          this.stats.iotlbHits++;
          const level = t.level[slot];
          this.io[0] = t.base[slot] + (level === 1 ? lo & 0xfff : level === 2 ? lo & 0x1fffff : lo & 0x3fffffff);
          return 0;
        }
        if (acc === 0) {
          // caching mode remembered a not-present entry: fault without looking at memory
          this.stats.iotlbHits++;
          return this.cachedNotPresent(sid, isWrite, slot);
        }
      }
      this.stats.iotlbMisses++;
    }
    return this.slowTranslate(sid, isWrite);
  }

  // The miss paths read the iova from io[0] themselves: passing it as an argument would make the
  // optimized xlate box it even on hits.

  private cachedNotPresent(sid: number, isWrite: boolean, slot: number): number {
    const t = this.iotlb;
    return this.fault(sid, this.io[0], isWrite ? FR_WRITE : FR_READ, isWrite, t.fpd[slot] === 1, t.did[slot]);
  }

  private slowTranslate(sid: number, isWrite: boolean): number {
    const iova = this.io[0];
    const r = this.lookupContext(sid);
    if (r !== 0) return this.fault(sid, iova, r, isWrite, false, -1);
    const c = this.ctx;
    const width = c.tt === TT_PASS_THROUGH ? 2 ** this.caps.addressWidth : 2 ** (12 + 9 * c.levels);
    if (!(iova >= 0 && iova < width && Number.isInteger(iova))) return this.fault(sid, iova, FR_BEYOND_MGAW, isWrite, c.fpd, c.did);
    if (c.tt === TT_PASS_THROUGH) {
      this.io[0] = iova;
      return 0;
    }
    this.stats.walks++;
    const lo = iova >>> 0;
    const hi = (iova - lo) / TWO32;
    const w = this.walk;
    const fr = walkSecondLevel(this.mem, this.scratch, this.cfg.masks, c.slptptr, c.levels, lo, hi, isWrite, w);
    if (fr !== 0) {
      if (this.caps.cachingMode && this.iotlbEnabled && (fr === FR_READ || fr === FR_WRITE) && w.access === 0) {
        this.iotlb.insert(sid, c.did, iova, 1, 0, 0, c.fpd);
      }
      return this.fault(sid, iova, fr, isWrite, c.fpd, c.did);
    }
    if (this.iotlbEnabled) this.iotlb.insert(sid, c.did, iova, w.level, w.base, w.access, c.fpd);
    this.io[0] = w.base + (w.level === 1 ? lo & 0xfff : w.level === 2 ? lo & 0x1fffff : lo & 0x3fffffff);
    return 0;
  }

  /** Fills this.ctx from the context cache or the tables; 0 or a fault reason. */
  private lookupContext(sid: number): number {
    const cc = this.contextCache;
    const st = cc.state[sid];
    if (st === CC_VALID) {
      const c = this.ctx;
      c.did = cc.did[sid];
      c.levels = cc.levels[sid];
      c.tt = cc.tt[sid];
      c.fpd = cc.fpd[sid] === 1;
      c.slptptr = cc.slptptr[sid];
      return 0;
    }
    if (st === CC_NOT_PRESENT) return cc.reason[sid];
    const r = fetchContext(this.mem, this.scratch, this.rootTable, sid, this.cfg, this.ctx);
    if (r === 0) {
      const c = this.ctx;
      cc.fill(sid, c.did, c.levels, c.tt, c.fpd, c.slptptr);
    } else if (this.caps.cachingMode && (r === 1 || r === 2)) cc.fillNotPresent(sid, r);
    return r;
  }

  private fault(sid: number, iova: number, reason: number, isWrite: boolean, fpd: boolean, did: number): number {
    this.stats.faults++;
    let disposition: FaultInfo['disposition'] = 'suppressed';
    let record = -1;
    let notice = false;
    if (!(fpd && isQualifiedFault(reason))) {
      const overflowedBefore = (this.regs.get32(REG.FSTS) & FSTS_PFO) !== 0;
      const r = this.faults.record(sid, iova, reason, isWrite);
      disposition = r.disposition;
      record = r.index;
      notice = disposition === 'recorded' || (disposition === 'overflow' && !overflowedBefore);
    }
    if (disposition === 'collapsed') this.stats.faultsCollapsed++;
    else if (disposition === 'overflow') this.stats.faultsOverflowed++;
    else if (disposition === 'suppressed') this.stats.faultsSuppressed++;
    if (this.onFault !== undefined || (notice && this.onFaultNotice !== undefined)) {
      const info: FaultInfo = { sid, iova, reason, write: isWrite, disposition };
      if (record >= 0) info.record = record;
      if (did >= 0) info.did = did;
      this.onFault?.(info);
      if (notice) this.onFaultNotice?.(info);
    }
    return -reason;
  }

  // ---- ATS (device-TLB) requests ----

  /** An ATS translation request: allowed only when the context entry's TT is 1. */
  translationRequest(sid: number, iova: number, access: 'r' | 'w'): TranslateResult {
    const blocked = this.atsBlocked(sid & 0xffff, iova, access === 'w');
    if (blocked !== 0) return this.faultOf(blocked);
    return this.translate(sid, iova, access);
  }

  /** A translated request (address already translated by the device's ATC): TT 1 only. */
  translatedRequest(sid: number, addr: number, access: 'r' | 'w'): TranslateResult {
    if (!this.te) return this.translate(sid, addr, access);
    const blocked = this.atsBlocked(sid & 0xffff, addr, access === 'w');
    if (blocked !== 0) return this.faultOf(blocked);
    this.okResult.addr = addr;
    return this.okResult;
  }

  private atsBlocked(sid: number, addr: number, isWrite: boolean): number {
    if (!this.te) return 0;
    const r = this.lookupContext(sid);
    if (r !== 0) return -this.fault(sid, addr, r, isWrite, false, -1);
    if (this.ctx.tt !== TT_DEVICE_TLB) return -this.fault(sid, addr, FR_TT_BLOCKED, isWrite, this.ctx.fpd, this.ctx.did);
    return 0;
  }

  private faultOf(reason: number): TranslateFault {
    this.faultResult.reason = reason;
    return this.faultResult;
  }

  // ---- DMA ----

  /**
   * Device read of `buf.length` bytes at `iova`. Every page is translated before a byte moves, so
   * a fault anywhere aborts the whole transfer and `buf` is untouched.
   */
  dmaRead(sid: number, iova: number, buf: Uint8Array): DmaResult {
    const bad = this.translateAll(sid, iova, buf.length, false);
    if (bad !== null) return bad;
    return this.copy(iova, buf, false);
  }

  /**
   * Device write. As dmaRead, nothing is written unless every page translates; a 4-byte aligned
   * write into the interrupt window is an MSI and goes to onInterrupt instead of memory.
   */
  dmaWrite(sid: number, iova: number, buf: Uint8Array): DmaResult {
    if (iova >= INTERRUPT_WINDOW_START && iova <= INTERRUPT_WINDOW_END && buf.length === 4 && iova % 4 === 0) {
      this.msiBuf.set(buf);
      const data = new DataView(this.msiBuf.buffer).getUint32(0, true);
      this.onInterrupt?.({ source: 'msi', sid: sid & 0xffff, addr: iova, data });
      return DMA_OK;
    }
    const bad = this.translateAll(sid, iova, buf.length, true);
    if (bad !== null) return bad;
    return this.copy(iova, buf, true);
  }

  private translateAll(sid: number, iova: number, len: number, isWrite: boolean): DmaResult | null {
    const pages = len === 0 ? 0 : Math.floor(((iova % 4096) + len + 4095) / 4096);
    if (this.dmaPages.length < pages) this.dmaPages = new Float64Array(Math.max(pages, this.dmaPages.length * 2));
    let a = iova;
    for (let i = 0; i < pages; i++) {
      this.io[0] = a;
      const r = this.xlate(sid, isWrite);
      if (r !== 0) {
        const page = a - (a % 4096);
        if (r === TR_INTERRUPT_WINDOW) return { ok: false, reason: 0, iova: page, kind: 'interrupt-window' };
        if (r === TR_INVALID_ADDRESS) return { ok: false, reason: 0, iova: page, kind: 'unbacked' };
        return { ok: false, reason: -r, iova: page, kind: 'fault' };
      }
      this.dmaPages[i] = this.io[0];
      a += 4096 - (a % 4096);
    }
    return null;
  }

  private copy(iova: number, buf: Uint8Array, isWrite: boolean): DmaResult {
    let done = 0;
    let i = 0;
    while (done < buf.length) {
      const a = iova + done;
      const n = Math.min(4096 - (a % 4096), buf.length - done);
      const chunk = buf.subarray(done, done + n);
      const ok = isWrite ? this.mem.write(this.dmaPages[i], chunk) : this.mem.read(this.dmaPages[i], chunk);
      if (!ok) return { ok: false, reason: 0, iova: a - (a % 4096), kind: 'unbacked' };
      done += n;
      i++;
    }
    return DMA_OK;
  }
}
