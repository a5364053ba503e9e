// virtio_net_hdr_v1, the 12 bytes in front of every frame on a TAP opened with IFF_VNET_HDR
// (little-endian on this host): how GSO frames and blank checksums cross the TAP whole.
import { XEN_NETIF_GSO_TYPE_NONE, XEN_NETIF_GSO_TYPE_TCPV4, XEN_NETIF_GSO_TYPE_TCPV6 } from '../abi/netif.js';
import {
  VIRTIO_NET_HDR_F_DATA_VALID, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_ECN, VIRTIO_NET_HDR_GSO_NONE, VIRTIO_NET_HDR_GSO_TCPV4,
  VIRTIO_NET_HDR_GSO_TCPV6, VIRTIO_NET_HDR_GSO_UDP, VIRTIO_NET_HDR_SIZE,
} from '../abi/virtio.js';
import type { PacketMeta } from './meta.js';
import { IPPROTO_TCP, parseL4, type L4Info } from './headers.js';


export type VnetReject = 'gso-type' | 'gso-size' | null;

/** The header's fields as they are, for a hop that carries checksum offsets (an emulated NIC). */
export interface VnetFields {
  flags: number;
  /** VIRTIO_NET_HDR_GSO_* with the ECN bit */
  gsoType: number;
  hdrLen: number;
  gsoSize: number;
  csumStart: number;
  csumOffset: number;
}

export function newVnetFields(): VnetFields {
  return { flags: 0, gsoType: VIRTIO_NET_HDR_GSO_NONE, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 };
}

export function decodeVnetHdr(buf: Uint8Array, off: number, into: VnetFields): VnetFields {
  into.flags = buf[off];
  into.gsoType = buf[off + 1];
  into.hdrLen = buf[off + 2] | (buf[off + 3] << 8);
  into.gsoSize = buf[off + 4] | (buf[off + 5] << 8);
  into.csumStart = buf[off + 6] | (buf[off + 7] << 8);
  into.csumOffset = buf[off + 8] | (buf[off + 9] << 8);
  return into;
}

export function encodeVnetHdr(buf: Uint8Array, off: number, f: VnetFields): void {
  buf[off] = f.flags;
  buf[off + 1] = f.gsoType;
  buf[off + 2] = f.hdrLen & 0xff;
  buf[off + 3] = f.hdrLen >> 8;
  buf[off + 4] = f.gsoSize & 0xff;
  buf[off + 5] = f.gsoSize >> 8;
  buf[off + 6] = f.csumStart & 0xff;
  buf[off + 7] = f.csumStart >> 8;
  buf[off + 8] = f.csumOffset & 0xff;
  buf[off + 9] = f.csumOffset >> 8;
  buf[off + 10] = 0; // num_buffers: the tun driver ignores it
  buf[off + 11] = 0;
}

/**
 * Decodes the header the kernel put in front of a frame. Only what netif can carry is accepted:
 * TCPv4/v6 segmentation (the ECN bit is dropped: the receiver's stack copes, as with a Xen
 * peer), blank checksums and validated data.
 */
export function readVnetHdr(buf: Uint8Array, off: number, into: PacketMeta): VnetReject {
  const flags = buf[off];
  const gso = buf[off + 1] & ~VIRTIO_NET_HDR_GSO_ECN;
  into.csumBlank = (flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) !== 0;
  into.dataValidated = into.csumBlank || (flags & VIRTIO_NET_HDR_F_DATA_VALID) !== 0;
  if (gso === VIRTIO_NET_HDR_GSO_NONE) {
    into.gsoType = XEN_NETIF_GSO_TYPE_NONE;
    into.gsoSize = 0;
    return null;
  }
  if (gso === VIRTIO_NET_HDR_GSO_TCPV4) into.gsoType = XEN_NETIF_GSO_TYPE_TCPV4;
  else if (gso === VIRTIO_NET_HDR_GSO_TCPV6) into.gsoType = XEN_NETIF_GSO_TYPE_TCPV6;
  else return 'gso-type';
  into.gsoSize = buf[off + 4] | (buf[off + 5] << 8);
  return into.gsoSize === 0 ? 'gso-size' : null;
}

/**
 * Encodes `meta` for the frame at frame[fOff, fOff+fLen) into buf[off, off+12). Checksum
 * offsets are re-derived from the headers (netif does not carry them). A GSO frame whose sender
 * left the checksum complete gets its pseudo-header sum re-seeded, as the kernel requires a
 * partial checksum on every GSO frame. Returns false when the frame cannot be described (a blank
 * checksum or GSO on something that is not TCP/UDP over IP): the caller drops it.
 */
export function writeVnetHdr(buf: Uint8Array, off: number, meta: PacketMeta, frame: Uint8Array, fOff: number, fLen: number, l4: L4Info): boolean {
  let flags = 0;
  let gso = VIRTIO_NET_HDR_GSO_NONE;
  let hdrLen = 0;
  let gsoSize = 0;
  let csumStart = 0;
  let csumOffset = 0;
  const isGso = meta.gsoType !== XEN_NETIF_GSO_TYPE_NONE;
  if (meta.csumBlank || isGso) {
    if (!parseL4(frame, fOff, fLen, l4)) return false;
    if (isGso) {
      if (l4.proto !== IPPROTO_TCP) return false;
      if ((meta.gsoType === XEN_NETIF_GSO_TYPE_TCPV4) !== (l4.ipVersion === 4)) return false;
      if (!meta.csumBlank) seedPseudoChecksum(frame, fOff, fLen, l4);
      gso = meta.gsoType === XEN_NETIF_GSO_TYPE_TCPV4 ? VIRTIO_NET_HDR_GSO_TCPV4 : VIRTIO_NET_HDR_GSO_TCPV6;
      gsoSize = meta.gsoSize;
      hdrLen = l4.hdrLen;
    }
    flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    csumStart = l4.csumStart;
    csumOffset = l4.csumOffset;
  } else if (meta.dataValidated) {
    flags = VIRTIO_NET_HDR_F_DATA_VALID;
  }
  buf[off] = flags;
  buf[off + 1] = gso;
  buf[off + 2] = hdrLen & 0xff;
  buf[off + 3] = hdrLen >> 8;
  buf[off + 4] = gsoSize & 0xff;
  buf[off + 5] = gsoSize >> 8;
  buf[off + 6] = csumStart & 0xff;
  buf[off + 7] = csumStart >> 8;
  buf[off + 8] = csumOffset & 0xff;
  buf[off + 9] = csumOffset >> 8;
  buf[off + 10] = 0;
  buf[off + 11] = 0;
  return true;
}

/** Writes the (uncomplemented) pseudo-header sum into the L4 checksum field: a partial checksum. */
export function seedPseudoChecksum(buf: Uint8Array, off: number, len: number, l4: L4Info): void {
  let sum = 0;
  const l3 = off + l4.l3Off;
  if (l4.ipVersion === 4) {
    for (let i = 12; i < 20; i += 2) sum += (buf[l3 + i] << 8) | buf[l3 + i + 1];
  } else {
    for (let i = 8; i < 40; i += 2) sum += (buf[l3 + i] << 8) | buf[l3 + i + 1];
  }
  const l4len = len - l4.l4Off;
  sum += l4.proto + (l4len & 0xffff) + (l4len >>> 16);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  const at = off + l4.csumStart + l4.csumOffset;
  buf[at] = sum >> 8;
  buf[at + 1] = sum & 0xff;
}
