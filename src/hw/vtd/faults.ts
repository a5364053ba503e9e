// Primary fault logging: fault recording registers (FRCD), FSTS.PFO/PPF/FRI and the decision to
// raise a fault event. What happens when the event fires (FECTL mask/pending, delivering the
// message) is the unit's business, so this module stays a pure function of the register file.

import type { RegisterFile } from './register-file.js';
import { FRCD_F, FRCD_T, FSTS_FRI_SHIFT, FSTS_PFO, FSTS_PPF, REG } from '../../abi/vtd-registers.js';

/** What became of one fault. */
export type FaultDisposition =
  | 'recorded' // written to an FRCD
  | 'collapsed' // same SID already has a pending record
  | 'overflow' // no free record (PFO set now or already)
  | 'suppressed'; // FPD in the device's context entry

export interface FaultInfo {
  sid: number;
  /** The DMA address as the device issued it. */
  iova: number;
  reason: number;
  write: boolean;
  disposition: FaultDisposition;
  /** FRCD index when recorded. */
  record?: number;
  /** Domain id from the context entry, when the fault happened after the context was known. */
  did?: number;
}

export interface FaultRecord {
  index: number;
  sid: number;
  /** Page address of the faulting request (FI, bits 63:12). */
  address: bigint;
  reason: number;
  write: boolean;
}

const M64 = (1n << 64n) - 1n;
const FI_MAX = M64 & ~0xfffn;

function faultInfoAddress(iova: number): bigint {
  if (!Number.isInteger(iova) || iova < 0) return FI_MAX;
  const a = BigInt(iova);
  return a > M64 ? FI_MAX : a & ~0xfffn;
}

export class FaultRecorder {
  private next = 0;

  constructor(
    private readonly regs: RegisterFile,
    private readonly nfr: number,
    /** Called when a fault event condition arises (first pending fault, or overflow). */
    private readonly raiseEvent: () => void,
  ) {}

  record(sid: number, iova: number, reason: number, isWrite: boolean): { disposition: FaultDisposition; index: number } {
    const fsts = this.regs.get32(REG.FSTS);
    if ((fsts & FSTS_PFO) !== 0) return { disposition: 'overflow', index: -1 };
    for (let i = 0; i < this.nfr; i++) {
      const hi = this.regs.get(hiOff(i));
      if ((hi & FRCD_F) !== 0n && Number(hi & 0xffffn) === sid) return { disposition: 'collapsed', index: i };
    }
    const index = this.next;
    if ((this.regs.get(hiOff(index)) & FRCD_F) !== 0n) {
      this.regs.set32(REG.FSTS, fsts | FSTS_PFO);
      this.raiseEvent();
      return { disposition: 'overflow', index: -1 };
    }
    this.regs.set(loOff(index), faultInfoAddress(iova));
    this.regs.set(hiOff(index), FRCD_F | (isWrite ? 0n : FRCD_T) | (BigInt(reason & 0xff) << 32n) | BigInt(sid & 0xffff));
    this.next = (index + 1) % this.nfr;
    if ((fsts & FSTS_PPF) === 0) {
      this.regs.set32(REG.FSTS, (fsts & ~(0xff << FSTS_FRI_SHIFT)) | FSTS_PPF | (index << FSTS_FRI_SHIFT));
      this.raiseEvent();
    }
    return { disposition: 'recorded', index };
  }

  /** PPF mirrors "some F is set"; software clearing the last F clears it. */
  refreshPpf(): void {
    let pending = false;
    for (let i = 0; i < this.nfr && !pending; i++) pending = (this.regs.get(hiOff(i)) & FRCD_F) !== 0n;
    const fsts = this.regs.get32(REG.FSTS);
    this.regs.set32(REG.FSTS, pending ? fsts | FSTS_PPF : fsts & ~FSTS_PPF);
  }

  /** Pending records, oldest slot first from FRI; what a driver's fault handler would read. */
  pending(): FaultRecord[] {
    const out: FaultRecord[] = [];
    for (let i = 0; i < this.nfr; i++) {
      const hi = this.regs.get(hiOff(i));
      if ((hi & FRCD_F) === 0n) continue;
      out.push({
        index: i,
        sid: Number(hi & 0xffffn),
        address: this.regs.get(loOff(i)),
        reason: Number((hi >> 32n) & 0xffn),
        write: (hi & FRCD_T) === 0n,
      });
    }
    return out;
  }
}

function loOff(i: number): number {
  return REG.FRCD + 16 * i;
}

function hiOff(i: number): number {
  return REG.FRCD + 16 * i + 8;
}
