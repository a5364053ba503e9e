// xen/include/public/io/ring.h shared-ring header (DEFINE_RING_TYPES' sring), defined once for every
// ring user. Little-endian; indices are free-running u32.

/** byte offsets inside the sring header */
export const SRING_REQ_PROD = 0;
export const SRING_REQ_EVENT = 4;
export const SRING_RSP_PROD = 8;
export const SRING_RSP_EVENT = 12;
/** 4-byte private union (netif smartpoll_active, tapif msg): zeroed at init, otherwise unused */
export const SRING_PVT = 16;
export const SRING_PAD = 20;
/** first slot; the 44 pad bytes keep the ring array on its own cache line */
export const SRING_HEADER_SIZE = 64;

/** the same offsets as u32 word indices, for Atomics on an Int32Array over the sring */
export const SRING_W_REQ_PROD = SRING_REQ_PROD >> 2;
export const SRING_W_REQ_EVENT = SRING_REQ_EVENT >> 2;
export const SRING_W_RSP_PROD = SRING_RSP_PROD >> 2;
export const SRING_W_RSP_EVENT = SRING_RSP_EVENT >> 2;

export const XEN_PAGE_SIZE = 4096;
/** multi-page rings: blkback's max-ring-page-order and what this project supports (1..16 pages) */
export const MAX_RING_PAGE_ORDER = 4;

/**
 * Entry geometry of one ring kind. A slot holds the union of request and response, so
 * `entrySize` is the larger of the two; the backend copies `requestSize` bytes out once and zeroes
 * `responseSize` bytes before filling a response.
 */
export interface RingLayout {
  readonly name: string;
  readonly entrySize: number;
  readonly requestSize: number;
  readonly responseSize: number;
}

/** largest power of two <= n (0 for n < 1) */
export function floorPow2(n: number): number {
  if (n < 1) return 0;
  return 2 ** Math.floor(Math.log2(n));
}

/** __CONST_RING_SIZE: slots in a ring of `byteLength` bytes, rounded down to a power of two */
export function ringSlots(byteLength: number, entrySize: number): number {
  if (!Number.isInteger(entrySize) || entrySize <= 0) throw new RangeError(`bad ring entry size ${entrySize}`);
  if (byteLength <= SRING_HEADER_SIZE) return 0;
  const n = floorPow2(Math.floor((byteLength - SRING_HEADER_SIZE) / entrySize));
  // floorPow2 goes through floating point; make sure no rounding pushed it past the true floor
  return n * entrySize + SRING_HEADER_SIZE > byteLength ? n / 2 : n;
}

/** bytes of a ring of 2^order pages */
export function ringBytes(order: number): number {
  if (!Number.isInteger(order) || order < 0 || order > MAX_RING_PAGE_ORDER) {
    throw new RangeError(`ring page order ${order} outside 0..${MAX_RING_PAGE_ORDER}`);
  }
  return XEN_PAGE_SIZE << order;
}
