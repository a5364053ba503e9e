// Just enough header parsing for offloads: where the L4 checksum starts and sits (a netif peer
// sends only "csum_blank", while a vnet header and the kernel want csum_start/csum_offset), how
// long the headers of a GSO frame are, and a flow hash to spread frames over queues. Every read
// is bounds-checked against the frame: the bytes come from a guest.

export const ETH_HLEN = 14;
export const ETH_P_IPV4 = 0x0800;
export const ETH_P_IPV6 = 0x86dd;
export const ETH_P_8021Q = 0x8100;
export const ETH_P_8021AD = 0x88a8;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;

export interface L4Info {
  /** 4 or 6; 0 when no IP header was found */
  ipVersion: number;
  l3Off: number;
  l4Off: number;
  /** IPPROTO_TCP or IPPROTO_UDP when ok */
  proto: number;
  /** where the L4 checksum starts and where its field is, relative to that start */
  csumStart: number;
  csumOffset: number;
  /** bytes of Ethernet + IP + L4 headers */
  hdrLen: number;
  /** stable per flow (addresses and ports), for queue selection */
  hash: number;
}

export function newL4Info(): L4Info {
  return { ipVersion: 0, l3Off: 0, l4Off: 0, proto: 0, csumStart: 0, csumOffset: 0, hdrLen: 0, hash: 0 };
}

const MAX_IPV6_EXT = 8;

function mix(h: number, v: number): number {
  return Math.imul(h ^ v, 0x01000193) >>> 0;
}

/**
 * Finds the TCP or UDP header of an Ethernet frame at buf[off, off+len). Returns false (and
 * leaves `into` describing what was found) for anything else: non-IP, fragments after the first,
 * truncated or malformed headers.
 */
export function parseL4(buf: Uint8Array, off: number, len: number, into: L4Info): boolean {
  into.ipVersion = 0;
  into.proto = 0;
  into.hash = 0;
  if (len < ETH_HLEN) return false;
  let p = 12;
  let type = (buf[off + p] << 8) | buf[off + p + 1];
  p += 2;
  for (let tags = 0; (type === ETH_P_8021Q || type === ETH_P_8021AD) && tags < 2; tags++) {
    if (len < p + 4) return false;
    type = (buf[off + p + 2] << 8) | buf[off + p + 3];
    p += 4;
  }
  into.l3Off = p;
  let proto: number;
  let h = 0x811c9dc5;
  if (type === ETH_P_IPV4) {
    if (len < p + 20) return false;
    const vihl = buf[off + p];
    const ihl = (vihl & 15) * 4;
    if (vihl >> 4 !== 4 || ihl < 20 || len < p + ihl) return false;
    into.ipVersion = 4;
    // a non-first fragment carries no L4 header
    if ((((buf[off + p + 6] & 0x1f) << 8) | buf[off + p + 7]) !== 0) return false;
    proto = buf[off + p + 9];
    for (let i = 12; i < 20; i++) h = mix(h, buf[off + p + i]);
    p += ihl;
  } else if (type === ETH_P_IPV6) {
    if (len < p + 40 || buf[off + p] >> 4 !== 6) return false;
    into.ipVersion = 6;
    proto = buf[off + p + 6];
    for (let i = 8; i < 40; i++) h = mix(h, buf[off + p + i]);
    p += 40;
    for (let n = 0; ; n++) {
      if (proto === 0 || proto === 43 || proto === 60) {
        if (n >= MAX_IPV6_EXT || len < p + 8) return false;
        const next = buf[off + p];
        p += (buf[off + p + 1] + 1) * 8;
        proto = next;
      } else if (proto === 51) {
        if (n >= MAX_IPV6_EXT || len < p + 8) return false;
        const next = buf[off + p];
        p += (buf[off + p + 1] + 2) * 4;
        proto = next;
      } else break;
    }
    if (len < p) return false;
  } else {
    return false;
  }
  into.proto = proto;
  into.l4Off = p;
  into.csumStart = p;
  if (proto === IPPROTO_TCP) {
    if (len < p + 20) return false;
    const doff = (buf[off + p + 12] >> 4) * 4;
    if (doff < 20 || len < p + doff) return false;
    into.csumOffset = 16;
    into.hdrLen = p + doff;
  } else if (proto === IPPROTO_UDP) {
    if (len < p + 8) return false;
    into.csumOffset = 6;
    into.hdrLen = p + 8;
  } else {
    into.hash = h;
    return false;
  }
  for (let i = 0; i < 4; i++) h = mix(h, buf[off + p + i]);
  into.hash = h;
  return true;
}

/**
 * Completes a CHECKSUM_PARTIAL frame in software: the field at start+csumOffset holds the
 * pseudo-header sum; the Internet checksum of [start, end) including it replaces it. Used when
 * the receiver cannot take a blank checksum.
 */
export function finishChecksum(buf: Uint8Array, off: number, len: number, start: number, csumOffset: number): boolean {
  if (start + csumOffset + 2 > len) return false;
  let sum = 0;
  let i = off + start;
  const end = off + len;
  for (; i + 1 < end; i += 2) sum += (buf[i] << 8) | buf[i + 1];
  if (i < end) sum += buf[i] << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  let c = ~sum & 0xffff;
  if (c === 0) c = 0xffff;
  buf[off + start + csumOffset] = c >> 8;
  buf[off + start + csumOffset + 1] = c & 0xff;
  return true;
}

/** the bytes of a MAC address as a number, for map keys without allocation */

