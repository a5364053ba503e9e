// Invalidation of the context cache and IOTLB as the unit performs it: the register-based commands
// (CCMD, IOTLB + IVA) and the invalidation queue (IQA/IQH/IQT). The descriptor layout is in
// src/abi/vtd-queue.ts, shared with the driver.

import type { ContextCache } from './context-cache.js';
import type { Iotlb } from './iotlb.js';
import type { PhysMem } from '../../memory/physmem.js';
import { GRAN_DEVICE_OR_PAGE, GRAN_DOMAIN, GRAN_GLOBAL, MAMV } from '../../abi/vtd-registers.js';
import { DESC_CONTEXT_CACHE, DESC_DEVICE_TLB, DESC_IEC, DESC_IOTLB, DESC_WAIT, WAIT_IF, WAIT_SW, queueEntries } from '../../abi/vtd-queue.js';

const TWO32 = 4294967296;

/** Context-cache invalidation; returns the granularity actually performed (CAIG), 0 if refused. */
export function invalidateContextCache(cc: ContextCache, gran: number, did: number, sid: number, fm: number): number {
  if (gran === GRAN_GLOBAL) cc.invalidateAll();
  else if (gran === GRAN_DOMAIN) cc.invalidateDomain(did);
  else if (gran === GRAN_DEVICE_OR_PAGE) cc.invalidateDevice(sid, fm);
  else return 0;
  return gran;
}

/**
 * IOTLB invalidation; returns the granularity actually performed (IAIG), 0 if refused. A
 * page-selective request with AM above MAMV is widened to the whole domain, which the spec allows
 * (hardware may always invalidate more than asked and reports what it did). IH is accepted and
 * has nothing to skip: no paging-structure cache is modelled.
 */
export function invalidateIotlb(t: Iotlb, gran: number, did: number, addr: number, am: number): number {
  if (gran === GRAN_GLOBAL) t.invalidateAll();
  else if (gran === GRAN_DOMAIN) t.invalidateDomain(did);
  else if (gran === GRAN_DEVICE_OR_PAGE) {
    if (am > MAMV) {
      t.invalidateDomain(did);
      return GRAN_DOMAIN;
    }
    t.invalidatePages(did, addr, am);
  } else return 0;
  return gran;
}

// ---- queued invalidation ----

/** What processing a descriptor does to the unit. */
export interface QueueHost {
  contextCache(gran: number, did: number, sid: number, fm: number): void;
  iotlb(gran: number, did: number, addr: number, am: number): void;
  /** Wait descriptor with SW: store `data` (u32) at `pa`; false if the address is not backed. */
  statusWrite(pa: number, data: number): boolean;
  /** Wait descriptor with IF: set ICS.IWC and raise the completion event. */
  completion(): void;
}

export interface QueueRun {
  /** Index of the next descriptor to fetch; on error, the offending descriptor. */
  head: number;
  /** Why processing stopped at `head`, if it did. */
  error?: string;
}

/**
 * Processes descriptors from `head` up to (not including) `tail`. Stops at the first bad one,
 * leaving `head` on it so software can see which (FSTS.IQE is the caller's to set).
 */
export function runInvalidationQueue(mem: PhysMem, w: Uint32Array, iqa: bigint, head: number, tail: number, host: QueueHost): QueueRun {
  const base = Number(iqa & ~0xfffn & ((1n << 64n) - 1n));
  const entries = queueEntries(Number(iqa & 7n));
  if (tail >= entries) return { head, error: `IQT index ${tail} is beyond the ${entries}-entry queue` };
  if (head >= entries) return { head, error: `IQH index ${head} is beyond the ${entries}-entry queue` };
  while (head !== tail) {
    const pa = base + head * 16;
    if (!mem.readU64(pa, w)) return { head, error: `descriptor at 0x${pa.toString(16)} is not in memory` };
    const w0 = w[0];
    const w1 = w[1];
    if (!mem.readU64(pa + 8, w)) return { head, error: `descriptor at 0x${pa.toString(16)} is not in memory` };
    const w2 = w[0];
    const w3 = w[1];
    const error = execute(w0, w1, w2, w3, host);
    if (error !== undefined) return { head, error: `descriptor ${head}: ${error}` };
    head = (head + 1) % entries;
  }
  return { head };
}

function execute(w0: number, w1: number, w2: number, w3: number, host: QueueHost): string | undefined {
  const type = w0 & 0xf;
  const gran = (w0 >>> 4) & 3;
  switch (type) {
    case DESC_CONTEXT_CACHE: {
      if ((w0 & 0xffc0) !== 0 || (w1 & 0xfffc0000) !== 0 || w2 !== 0 || w3 !== 0) return 'context-cache descriptor has reserved bits set';
      if (gran === 0) return 'context-cache descriptor with granularity 0';
      host.contextCache(gran, w0 >>> 16, w1 & 0xffff, (w1 >>> 16) & 3);
      return undefined;
    }
    case DESC_IOTLB: {
      if ((w0 & 0xff00) !== 0 || w1 !== 0 || (w2 & 0xf80) !== 0) return 'IOTLB descriptor has reserved bits set';
      if (gran === 0) return 'IOTLB descriptor with granularity 0';
      const am = w2 & 0x3f;
      if (gran === GRAN_DEVICE_OR_PAGE && am > MAMV) return `IOTLB descriptor address mask ${am} exceeds MAMV ${MAMV}`;
      host.iotlb(gran, w0 >>> 16, w3 * TWO32 + ((w2 & 0xfffff000) >>> 0), am);
      return undefined;
    }
    case DESC_DEVICE_TLB:
    case DESC_IEC:
      // Accepted and completed at once: no device TLB or interrupt-entry cache is modelled.
      return undefined;
    case DESC_WAIT: {
      if ((w0 & 0xffffff80) !== 0 || (w2 & 3) !== 0) return 'wait descriptor has reserved bits set';
      if ((w0 & WAIT_SW) !== 0 && !host.statusWrite(w3 * TWO32 + ((w2 & 0xfffffffc) >>> 0), w1)) return 'wait descriptor status address is not in memory';
      if ((w0 & WAIT_IF) !== 0) host.completion();
      return undefined;
    }
    default:
      return `descriptor type ${type} is not a legacy-mode invalidation descriptor`;
  }
}
