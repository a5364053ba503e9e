// The OS side of the register interface: what an IOMMU driver (hv, in the platform) does through
// MMIO to point the unit at its root table, turn translation on, invalidate after changing
// tables and drain fault records. Only registers are used, so whatever the driver can do, a
// hostile one can try too, and the unit has to answer it.

import type { Descriptor } from '../../src/abi/vtd-queue.js';
import { contextCacheDescriptor, iotlbDescriptor, queueEntries, waitDescriptor } from '../../src/abi/vtd-queue.js';
import type { FrameSource, PhysMem } from '../../src/memory/physmem.js';
import { readU32 } from '../../src/memory/physmem.js';
import {
  CCMD_CIRG_SHIFT,
  CCMD_FM_SHIFT,
  CCMD_ICC,
  CCMD_SID_SHIFT,
  FRCD_F,
  FRCD_T,
  FSTS_IQE,
  FSTS_PFO,
  GCMD_QIE,
  GCMD_SRTP,
  GCMD_TE,
  GRAN_DEVICE_OR_PAGE,
  GRAN_DOMAIN,
  GRAN_GLOBAL,
  GSTS_QIES,
  GSTS_RTPS,
  GSTS_TES,
  IOTLB_DID_SHIFT,
  IOTLB_DR,
  IOTLB_DW,
  IOTLB_IIRG_SHIFT,
  IOTLB_IVT,
  IVA_IH,
  REG,
} from '../../src/abi/vtd-registers.js';

export interface Mmio {
  mmioRead(off: number, size: 4 | 8): bigint;
  mmioWrite(off: number, size: 4 | 8, value: bigint | number): void;
}

export interface DecodedCaps {
  cachingMode: boolean;
  sagaw: number;
  mgaw: number;
  sllps2m: boolean;
  sllps1g: boolean;
  nfr: number;
  fro: number;
  mamv: number;
  queuedInvalidation: boolean;
  passThrough: boolean;
  iro: number;
}

export interface DrainedFault {
  sid: number;
  address: bigint;
  reason: number;
  write: boolean;
}

export class VtdDriver {
  /** Persistent GCMD bits we want set, as Linux keeps iommu->gcmd. */
  private gcmd = 0;
  private queue = -1;
  private qs = 0;
  private tail = 0;
  private statusFrame = -1;
  private seq = 0;
  readonly caps: DecodedCaps;

  constructor(
    private readonly hw: Mmio,
    private readonly mem: PhysMem,
    private readonly frames: FrameSource,
  ) {
    const cap = hw.mmioRead(REG.CAP, 8);
    const ecap = hw.mmioRead(REG.ECAP, 8);
    const f = (v: bigint, shift: number, bits: number): number => Number((v >> BigInt(shift)) & ((1n << BigInt(bits)) - 1n));
    this.caps = {
      cachingMode: f(cap, 7, 1) === 1,
      sagaw: f(cap, 8, 5),
      mgaw: f(cap, 16, 6) + 1,
      sllps2m: f(cap, 34, 1) === 1,
      sllps1g: f(cap, 35, 1) === 1,
      nfr: f(cap, 40, 8) + 1,
      fro: f(cap, 24, 10) * 16,
      mamv: f(cap, 48, 6),
      queuedInvalidation: f(ecap, 1, 1) === 1,
      passThrough: f(ecap, 6, 1) === 1,
      iro: f(ecap, 8, 10) * 16,
    };
  }

  get queued(): boolean {
    return this.queue >= 0;
  }

  setRootTable(pa: number): void {
    this.hw.mmioWrite(REG.RTADDR, 8, BigInt(pa));
    this.hw.mmioWrite(REG.GCMD, 4, this.gcmd | GCMD_SRTP);
    this.expectStatus(GSTS_RTPS, true, 'root table pointer not latched');
  }

  enableTranslation(): void {
    this.setPersistent(GCMD_TE, GSTS_TES, true);
  }

  disableTranslation(): void {
    this.setPersistent(GCMD_TE, GSTS_TES, false);
  }

  /** Sets up a 2^qs-page queue (qs 0 needs only one frame) and a frame for wait status words. */
  enableQueuedInvalidation(qs = 0, queuePa?: number): void {
    if (!this.caps.queuedInvalidation) throw new Error('the unit has no queued invalidation (ECAP.QI=0)');
    if (qs !== 0 && queuePa === undefined) throw new RangeError('a queue larger than one page needs contiguous frames: pass queuePa');
    this.queue = queuePa ?? this.frames.alloc();
    this.qs = qs;
    this.statusFrame = this.frames.alloc();
    this.tail = 0;
    this.hw.mmioWrite(REG.IQT, 8, 0n);
    this.hw.mmioWrite(REG.IQA, 8, BigInt(this.queue) | BigInt(qs));
    this.setPersistent(GCMD_QIE, GSTS_QIES, true);
  }

  disableQueuedInvalidation(): void {
    this.setPersistent(GCMD_QIE, GSTS_QIES, false);
    this.queue = -1;
  }

  // ---- invalidation: queued when enabled, registers otherwise ----

  flushContextGlobal(): void {
    this.contextFlush(GRAN_GLOBAL, 0, 0, 0);
  }

  flushContextDomain(did: number): void {
    this.contextFlush(GRAN_DOMAIN, did, 0, 0);
  }

  flushContextDevice(sid: number, did = 0, fm = 0): void {
    this.contextFlush(GRAN_DEVICE_OR_PAGE, did, sid, fm);
  }

  flushIotlbGlobal(): void {
    this.iotlbFlush(GRAN_GLOBAL, 0, 0, 0, false);
  }

  flushIotlbDomain(did: number): void {
    this.iotlbFlush(GRAN_DOMAIN, did, 0, 0, false);
  }

  /** Page-selective: 2^am pages naturally aligned around `addr`. */
  flushIotlbPages(did: number, addr: number, am = 0, ih = false): void {
    this.iotlbFlush(GRAN_DEVICE_OR_PAGE, did, addr, am, ih);
  }

  /**
   * Queues `descs` followed by a wait descriptor with a status write, and checks the status
   * arrived: the model completes synchronously, so a missing status means the queue stopped.
   */
  submit(descs: readonly Descriptor[]): void {
    if (this.queue < 0) throw new Error('queued invalidation is not enabled');
    const token = (++this.seq & 0x7fffffff) | 1;
    const all = [...descs, waitDescriptor({ status: { addr: this.statusFrame, data: token } })];
    const entries = queueEntries(this.qs);
    for (const d of all) {
      const pa = this.queue + this.tail * 16;
      const b = new Uint8Array(16);
      const dv = new DataView(b.buffer);
      dv.setBigUint64(0, d[0], true);
      dv.setBigUint64(8, d[1], true);
      if (!this.mem.write(pa, b)) throw new RangeError(`queue slot 0x${pa.toString(16)} is not backed`);
      this.tail = (this.tail + 1) % entries;
    }
    this.hw.mmioWrite(REG.IQT, 8, BigInt(this.tail) << 4n);
    if ((Number(this.hw.mmioRead(REG.FSTS, 4)) & FSTS_IQE) !== 0) {
      const head = Number(this.hw.mmioRead(REG.IQH, 8) >> 4n);
      throw new Error(`invalidation queue error at descriptor ${head} (FSTS.IQE)`);
    }
    if (readU32(this.mem, this.statusFrame) !== token) throw new Error('invalidation wait descriptor did not complete');
  }

  // ---- fault handling ----

  /** Reads and clears every pending fault record, and PFO, like a driver's fault interrupt handler. */
  drainFaults(): { faults: DrainedFault[]; overflow: boolean } {
    const faults: DrainedFault[] = [];
    for (let i = 0; i < this.caps.nfr; i++) {
      const off = this.caps.fro + 16 * i;
      const hi = this.hw.mmioRead(off + 8, 8);
      if ((hi & FRCD_F) === 0n) continue;
      faults.push({ sid: Number(hi & 0xffffn), address: this.hw.mmioRead(off, 8), reason: Number((hi >> 32n) & 0xffn), write: (hi & FRCD_T) === 0n });
      this.hw.mmioWrite(off + 12, 4, Number(FRCD_F >> 32n));
    }
    const overflow = (Number(this.hw.mmioRead(REG.FSTS, 4)) & FSTS_PFO) !== 0;
    this.hw.mmioWrite(REG.FSTS, 4, FSTS_PFO);
    return { faults, overflow };
  }

  private contextFlush(gran: number, did: number, sid: number, fm: number): void {
    if (this.queued) {
      this.submit([contextCacheDescriptor(gran, did, sid, fm)]);
      return;
    }
    this.hw.mmioWrite(REG.CCMD, 8, CCMD_ICC | (BigInt(gran) << CCMD_CIRG_SHIFT) | (BigInt(fm & 3) << CCMD_FM_SHIFT) | (BigInt(sid & 0xffff) << CCMD_SID_SHIFT) | BigInt(did & 0xffff));
    if ((this.hw.mmioRead(REG.CCMD, 8) & CCMD_ICC) !== 0n) throw new Error('context-cache invalidation did not complete');
  }

  private iotlbFlush(gran: number, did: number, addr: number, am: number, ih: boolean): void {
    if (this.queued) {
      this.submit([iotlbDescriptor(gran, did, addr, am, ih)]);
      return;
    }
    const iotlb = this.caps.iro + 8;
    if (gran === GRAN_DEVICE_OR_PAGE) this.hw.mmioWrite(this.caps.iro, 8, (BigInt(addr) & ~0xfffn) | (ih ? IVA_IH : 0n) | BigInt(am & 0x3f));
    this.hw.mmioWrite(iotlb, 8, IOTLB_IVT | IOTLB_DR | IOTLB_DW | (BigInt(gran) << IOTLB_IIRG_SHIFT) | (BigInt(did & 0xffff) << IOTLB_DID_SHIFT));
    if ((this.hw.mmioRead(iotlb, 8) & IOTLB_IVT) !== 0n) throw new Error('IOTLB invalidation did not complete');
  }

  private setPersistent(cmd: number, status: number, on: boolean): void {
    this.gcmd = on ? (this.gcmd | cmd) >>> 0 : (this.gcmd & ~cmd) >>> 0;
    this.hw.mmioWrite(REG.GCMD, 4, this.gcmd);
    this.expectStatus(status, on, `GSTS did not follow GCMD 0x${this.gcmd.toString(16)}`);
  }

  private expectStatus(bit: number, set: boolean, msg: string): void {
    const sts = Number(this.hw.mmioRead(REG.GSTS, 4));
    if (((sts & bit) !== 0) !== set) throw new Error(`vt-d: ${msg}`);
  }
}
