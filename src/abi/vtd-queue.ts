// The legacy-mode invalidation-queue descriptors (the VT-d spec's queued invalidation): 128 bits each, encoded here for
// the driver and decoded by the unit, so both agree on one bit layout.

export const DESC_CONTEXT_CACHE = 1;
export const DESC_IOTLB = 2;
export const DESC_DEVICE_TLB = 3;
export const DESC_IEC = 4;
export const DESC_WAIT = 5;

export const WAIT_IF = 1 << 4;
export const WAIT_SW = 1 << 5;
export const WAIT_FN = 1 << 6;

/** Entries in a queue whose IQA.QS is `qs`: 2^qs 4 KiB pages of 16-byte descriptors. */
export function queueEntries(qs: number): number {
  return 256 << qs;
}

export type Descriptor = readonly [bigint, bigint];

export function contextCacheDescriptor(gran: number, did = 0, sid = 0, fm = 0): Descriptor {
  return [BigInt(DESC_CONTEXT_CACHE) | (BigInt(gran & 3) << 4n) | (BigInt(did & 0xffff) << 16n) | (BigInt(sid & 0xffff) << 32n) | (BigInt(fm & 3) << 48n), 0n];
}

export function iotlbDescriptor(gran: number, did = 0, addr = 0, am = 0, ih = false): Descriptor {
  const qw0 = BigInt(DESC_IOTLB) | (BigInt(gran & 3) << 4n) | (1n << 6n) | (1n << 7n) | (BigInt(did & 0xffff) << 16n);
  const qw1 = (BigInt(addr) & ~0xfffn) | (ih ? 1n << 6n : 0n) | BigInt(am & 0x3f);
  return [qw0, qw1];
}

export function waitDescriptor(opts: { status?: { addr: number; data: number }; interrupt?: boolean; fence?: boolean }): Descriptor {
  let qw0 = BigInt(DESC_WAIT);
  let qw1 = 0n;
  if (opts.interrupt) qw0 |= BigInt(WAIT_IF);
  if (opts.fence) qw0 |= BigInt(WAIT_FN);
  if (opts.status) {
    if (opts.status.addr % 4 !== 0) throw new RangeError('wait status address must be 4-byte aligned');
    qw0 |= BigInt(WAIT_SW) | (BigInt(opts.status.data >>> 0) << 32n);
    qw1 = BigInt(opts.status.addr);
  }
  return [qw0, qw1];
}
