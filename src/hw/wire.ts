// The wire between hv and its hardware process, defined once for both ends. hv's requests go on
// one SOCK_SEQPACKET socket and hv sleeps until each is answered, the way a CPU stalls on an MMIO
// read; hw answers from its event loop and never waits on hv, so the two cannot deadlock. hw's
// notices (faults, log lines) go on a second socket that hv reads when it is idle. Every message
// is a fixed little-endian layout; only the one-off INIT body (the hardware list) is msgpack.

/** hw's descriptors: hv's requests on 3, hw's notices on 4. */
export const HW_RPC_FD = 3;
export const HW_EVENT_FD = 4;

export const HW_OP = {
  /** body: msgpack HwInit; fds: [the IOMMU table and firmware area memfd] */
  INIT: 1,
  /** a: register offset, b: access size */
  MMIO_READ: 2,
  /** a: register offset, b: access size, value */
  MMIO_WRITE: 3,
  /** a: domid, b: the domain's frame count, c: first gfn of this batch; fds: the batch's frames */
  DOMAIN_FRAMES: 4,
  /** a: domid */
  DOMAIN_DEAD: 5,
  /** a: source id; fds: register page memfd, doorbell eventfd, interrupt eventfd */
  ATTACH: 6,
  /** a: source id, b: 1 when the command register's bus-master bit is set */
  BUS_MASTER: 7,
  /** a: source id; reply: num[0] medium bytes, flags */
  DEVICE_INFO: 8,
  /** reply: num[] as STAT_FIELDS */
  STATS: 9,
  /** a: pfn; reply: value = medium transfers still in flight into or out of that page */
  IN_FLIGHT: 10,
  /**
   * a: index of a NIC whose wire is a TAP; fds: that TAP, opened by hv with virtio-net
   * headers (opening one by name takes CAP_NET_ADMIN over the host, which hw does not hold)
   */
  TAP_WIRE: 11,
} as const;
export type HwOp = (typeof HW_OP)[keyof typeof HW_OP];
const OPS = new Set<number>(Object.values(HW_OP));

/** A request: op, seq, a, b, c (u32), value (u64); INIT carries its body after these. */
export const REQ = { op: 0, seq: 4, a: 8, b: 12, c: 16, value: 24, size: 32 } as const;
/**
 * Largest request. A SOCK_SEQPACKET message goes whole or not at all and must fit the sender's
 * SO_SNDBUF (about 208 KiB by default), so this stays well below it; the INIT body (the hardware
 * list) is the only request that comes near, and both ends refuse a longer one by name.
 */
export const REQ_MAX = 128 << 10;

export const NUM_SLOTS = 16;
/** A reply: seq, status, value (u64), flags, text length, NUM_SLOTS f64s, then UTF-8 text. */
export const REP = { seq: 0, status: 4, value: 8, flags: 16, textLen: 20, num: 24, text: 24 + 8 * NUM_SLOTS } as const;
export const TEXT_MAX = 1024;
export const REP_MAX = REP.text + TEXT_MAX;

export const HW_STATUS = { OK: 0, EINVAL: 1, ENOENT: 2, EIO: 3 } as const;
export type HwStatus = (typeof HW_STATUS)[keyof typeof HW_STATUS];
export const STATUS_NAMES = ['OK', 'EINVAL', 'ENOENT', 'EIO'] as const;

/** DEVICE_INFO flags. */
export const INFO_READONLY = 1;
export const INFO_LINK_UP = 2;
export const INFO_NVME = 4;

/**
 * STATS: the unit's counters, then hw's own. Only new fault records and overflows become notices;
 * collapsed, overflowed and suppressed faults are counted here, as are notices the per-source
 * rate limit held back (heldNotices) and notices hv's full socket cost (droppedNotices).
 */
export const STAT_FIELDS = [
  'translations', 'iotlbHits', 'iotlbMisses', 'walks', 'faults', 'faultsCollapsed', 'faultsOverflowed', 'faultsSuppressed',
  'mappedViews', 'droppedNotices', 'heldNotices',
] as const;
if (STAT_FIELDS.length > NUM_SLOTS) throw new Error('STAT_FIELDS do not fit a reply');
export type HwStats = Record<(typeof STAT_FIELDS)[number], number>;

/** A notice: kind, then FAULT fields or a LOG text length and the text. */
export const EVT = { kind: 0, sid: 4, iova: 8, reason: 16, write: 20, disposition: 24, size: 32, textLen: 4, text: 8 } as const;
export const EVT_FAULT = 1;
export const EVT_LOG = 2;
export const EVT_MAX = EVT.text + TEXT_MAX;
export const DISPOSITIONS = ['recorded', 'collapsed', 'overflow', 'suppressed'] as const;

/** Descriptors in one DOMAIN_FRAMES request: what the addon's recvmsg takes in one message. */
export const FRAMES_PER_MESSAGE = 64;
export const MAX_FRAMES = 4096;
export const MAX_DOMID = 0x7fef;

/** The INIT body: only the functions that do DMA; bridges and config space are hv's. */
export interface HwInit {
  iommu: { enabled: boolean; addressWidth: 39 | 48; cachingMode: boolean };
  devices: HwDeviceSpec[];
}

export interface HwDeviceSpec {
  sid: number;
  /** 0000:BB:DD.F, for messages */
  name: string;
  kind: 'nvme' | 'nic';
  /** nvme: absolute path of the raw image, and the size to create it with when missing */
  medium?: string;
  sizeBytes?: number;
  /** nic: six bytes */
  mac?: number[];
  wire?: { kind: 'none' } | { kind: 'tap'; name: string } | { kind: 'cable'; peerSid: number };
  /** nic: offer the offloads its wire can carry (false: a NIC without any) */
  offloads?: boolean;
}

export function isOp(n: number): n is HwOp {
  return OPS.has(n);
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Writes `s` (cut to TEXT_MAX bytes) at `at`; returns its byte length. */
export function putText(buf: Uint8Array, at: number, s: string): number {
  const r = enc.encodeInto(s, buf.subarray(at, at + TEXT_MAX));
  return r.written;
}

export function getText(buf: Uint8Array, at: number, len: number): string {
  return dec.decode(buf.subarray(at, at + len));
}
