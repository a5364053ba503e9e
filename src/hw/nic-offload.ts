// What the emulated NIC accepts as an offload request from its driver, and how offload metadata
// maps to and from the virtio-net header of a host TAP wire. The driver is another domain: every
// field of its header is checked against the frame itself before the wire sees any of it, and a
// request that does not hold is refused with a NIC_TX_ERR code (the descriptor fails, the NIC
// goes on). Nothing here allocates: callers pass the structures to fill.
import {
  VIRTIO_NET_HDR_F_DATA_VALID,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_NONE,
  VIRTIO_NET_HDR_GSO_TCPV4,
  VIRTIO_NET_HDR_GSO_TCPV6,
} from '../abi/virtio.js';
import { ETH_HLEN, IPPROTO_TCP, finishChecksum, parseL4, type L4Info } from '../packet/headers.js';
import { type VnetFields } from '../packet/vnet.js';
import {
  DESC_CSUM_BLANK, DESC_DATA_VALID, NIC_CAP, NIC_GSO, NIC_MAX_FRAME, NIC_MAX_TSO_FRAME, NIC_TX_ERR, NIC_TX_HDR_SIZE,
  TX_HDR, TX_HDR_F_CSUM,
} from '../abi/nic.js';

/** A transmit offload request that passed checkTxOffload. */
export interface NicTxOffload {
  csum: boolean;
  csumStart: number;
  csumOffset: number;
  /** NIC_GSO */
  gso: number;
  hdrLen: number;
  mss: number;
}

export function newTxOffload(): NicTxOffload {
  return { csum: false, csumStart: 0, csumOffset: 0, gso: NIC_GSO.NONE, hdrLen: 0, mss: 0 };
}

const u16 = (b: Uint8Array, at: number): number => b[at] | (b[at + 1] << 8);

/**
 * Checks the offload header at b[at, at+12) against the frame that follows it (fLen bytes) and the
 * offloads the driver enabled. Returns 0 and fills `out`, or the NIC_TX_ERR code that refuses it.
 */
export function checkTxOffload(b: Uint8Array, at: number, fLen: number, enabled: number, l4: L4Info, out: NicTxOffload): number {
  const flags = b[at + TX_HDR.FLAGS];
  const gso = b[at + TX_HDR.GSO];
  if ((flags & ~TX_HDR_F_CSUM) !== 0 || u16(b, at + TX_HDR.RESERVED) !== 0) return NIC_TX_ERR.BAD_HEADER;
  if (gso !== NIC_GSO.NONE && gso !== NIC_GSO.TCPV4 && gso !== NIC_GSO.TCPV6) return NIC_TX_ERR.BAD_HEADER;
  if (fLen < ETH_HLEN) return NIC_TX_ERR.SHORT;
  out.csum = (flags & TX_HDR_F_CSUM) !== 0;
  out.csumStart = u16(b, at + TX_HDR.CSUM_START);
  out.csumOffset = u16(b, at + TX_HDR.CSUM_OFFSET);
  out.gso = gso;
  out.hdrLen = u16(b, at + TX_HDR.HDR_LEN);
  out.mss = u16(b, at + TX_HDR.MSS);
  if (out.csum) {
    if ((enabled & NIC_CAP.TX_CSUM) === 0) return NIC_TX_ERR.NOT_ENABLED;
    if (out.csumStart < ETH_HLEN || out.csumStart + out.csumOffset + 2 > fLen) return NIC_TX_ERR.CSUM_RANGE;
  }
  if (gso === NIC_GSO.NONE) return fLen > NIC_MAX_FRAME ? NIC_TX_ERR.TOO_LONG : 0;
  if ((enabled & (gso === NIC_GSO.TCPV4 ? NIC_CAP.TSO4 : NIC_CAP.TSO6)) === 0) return NIC_TX_ERR.NOT_ENABLED;
  if (!out.csum) return NIC_TX_ERR.GSO_NO_CSUM;
  if (fLen > NIC_MAX_TSO_FRAME) return NIC_TX_ERR.TOO_LONG;
  const f = at + NIC_TX_HDR_SIZE;
  if (!parseL4(b, f, fLen, l4) || l4.proto !== IPPROTO_TCP || l4.ipVersion !== (gso === NIC_GSO.TCPV4 ? 4 : 6)) return NIC_TX_ERR.NOT_TCP;
  // the segmenter rewrites the TCP checksum of every segment: it must be the one named
  if (out.csumStart !== l4.csumStart || out.csumOffset !== l4.csumOffset) return NIC_TX_ERR.CSUM_RANGE;
  if (out.hdrLen !== l4.hdrLen) return NIC_TX_ERR.HDR_LEN;
  if (out.mss === 0 || out.hdrLen + out.mss > NIC_MAX_FRAME || fLen - out.hdrLen <= out.mss) return NIC_TX_ERR.MSS;
  return 0;
}

/** The virtio-net header that hands a checked request to the host kernel. */
export function vnetFromTxOffload(o: NicTxOffload, into: VnetFields): VnetFields {
  into.flags = o.csum ? VIRTIO_NET_HDR_F_NEEDS_CSUM : 0;
  into.gsoType = o.gso === NIC_GSO.TCPV4 ? VIRTIO_NET_HDR_GSO_TCPV4 : o.gso === NIC_GSO.TCPV6 ? VIRTIO_NET_HDR_GSO_TCPV6 : VIRTIO_NET_HDR_GSO_NONE;
  into.hdrLen = o.gso === NIC_GSO.NONE ? 0 : o.hdrLen;
  into.gsoSize = o.gso === NIC_GSO.NONE ? 0 : o.mss;
  into.csumStart = o.csum ? o.csumStart : 0;
  into.csumOffset = o.csum ? o.csumOffset : 0;
  return into;
}

/** RX_DROP: the frame cannot be delivered as the header describes it. */
export const RX_DROP = -1;

/**
 * Receive status bits for a frame the host TAP delivered with header `v`. The NIC never asks the
 * kernel for TSO frames (it has no LRO), so a GSO header is refused. A checksum-partial frame keeps
 * its blank checksum when the driver takes CSUM_BLANK and the offsets are the TCP/UDP ones, and is
 * completed here otherwise, so nobody downstream sees a frame it cannot verify.
 */
export function rxStatusFromVnet(v: VnetFields, frame: Uint8Array, off: number, len: number, rxCsum: boolean, l4: L4Info): number {
  if (v.gsoType !== VIRTIO_NET_HDR_GSO_NONE) return RX_DROP;
  if ((v.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) !== 0) {
    if (rxCsum && parseL4(frame, off, len, l4) && v.csumStart === l4.csumStart && v.csumOffset === l4.csumOffset) return DESC_CSUM_BLANK | DESC_DATA_VALID;
    if (v.csumStart < ETH_HLEN || !finishChecksum(frame, off, len, v.csumStart, v.csumOffset)) return RX_DROP;
    return rxCsum ? DESC_DATA_VALID : 0;
  }
  return rxCsum && (v.flags & VIRTIO_NET_HDR_F_DATA_VALID) !== 0 ? DESC_DATA_VALID : 0;
}
