// Software GSO and checksum completion, for a wire that offloads neither (an emulated NIC with
// 2 KiB buffers). A guest may hand netback one 64 KiB TCP frame with a partial checksum; before
// it leaves on such a wire it becomes MSS-sized segments with every IP and TCP field a real
// stack would have written: length, IPv4 id and header checksum, sequence number, flags, and
// the full L4 checksum. Segments are built in one reusable buffer: nothing allocates per frame.
import { XEN_NETIF_GSO_TYPE_NONE } from '../abi/netif.js';
import { newPacketMeta, type PacketMeta } from './meta.js';

const ETH = 14;
const ETH_IPV4 = 0x0800;
const ETH_IPV6 = 0x86dd;
const PROTO_TCP = 6;
const PROTO_UDP = 17;
const TCP_FIN = 0x01;
const TCP_PSH = 0x08;
const TCP_CWR = 0x80;

export interface SegmentStats {
  segmented: number;
  segments: number;
  checksummed: number;
  /** frames we could not make wire-ready (not IPv4/IPv6 TCP/UDP, truncated headers) */
  refused: number;
}

/** Sums 16-bit big-endian words of `b[off, off+len)` into a running ones'-complement sum. */
function sum16(b: Uint8Array, off: number, len: number, acc: number): number {
  let s = acc;
  const end = off + (len & ~1);
  for (let i = off; i < end; i += 2) s += (b[i] << 8) | b[i + 1];
  if (len & 1) s += b[off + len - 1] << 8;
  return s;
}

function fold(s: number): number {
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return s;
}

interface L3 {
  v6: boolean;
  l3: number; // offset of the IP header
  l4: number; // offset of the L4 header
  proto: number;
}

function parseL3(b: Uint8Array, off: number, len: number, out: L3): boolean {
  if (len < ETH + 20) return false;
  const type = (b[off + 12] << 8) | b[off + 13];
  out.l3 = off + ETH;
  if (type === ETH_IPV4) {
    const ihl = (b[out.l3] & 0x0f) * 4;
    if ((b[out.l3] >> 4) !== 4 || ihl < 20 || len < ETH + ihl + 8) return false;
    out.v6 = false;
    out.proto = b[out.l3 + 9];
    out.l4 = out.l3 + ihl;
    return true;
  }
  if (type === ETH_IPV6) {
    if (len < ETH + 40 + 8 || (b[out.l3] >> 4) !== 6) return false;
    out.v6 = true;
    out.proto = b[out.l3 + 6]; // no extension headers: GSO frames from Linux carry none
    out.l4 = out.l3 + 40;
    return true;
  }
  return false;
}

/** Pseudo-header sum for an L4 segment of `l4len` bytes. */
function pseudo(b: Uint8Array, h: L3, l4len: number): number {
  let s = h.v6 ? sum16(b, h.l3 + 8, 32, 0) : sum16(b, h.l3 + 12, 8, 0);
  s += h.proto + (l4len & 0xffff) + Math.floor(l4len / 0x10000);
  return s;
}

function setL4Checksum(b: Uint8Array, h: L3, end: number): void {
  const csumAt = h.l4 + (h.proto === PROTO_TCP ? 16 : 6);
  b[csumAt] = 0;
  b[csumAt + 1] = 0;
  let c = 0xffff - fold(sum16(b, h.l4, end - h.l4, pseudo(b, h, end - h.l4)));
  if (c === 0 && h.proto === PROTO_UDP) c = 0xffff;
  b[csumAt] = c >> 8;
  b[csumAt + 1] = c & 0xff;
}

function setIpv4Checksum(b: Uint8Array, l3: number): void {
  const ihl = (b[l3] & 0x0f) * 4;
  b[l3 + 10] = 0;
  b[l3 + 11] = 0;
  const c = 0xffff - fold(sum16(b, l3, ihl, 0));
  b[l3 + 10] = c >> 8;
  b[l3 + 11] = c & 0xff;
}

/**
 * Makes frames wire-ready for an uplink without offloads and hands each to `emit` (which must
 * copy it before returning). Returns false if the frame had to be dropped.
 */
export class SoftwareGso {
  readonly stats: SegmentStats = { segmented: 0, segments: 0, checksummed: 0, refused: 0 };
  private readonly buf: Uint8Array;
  private readonly h: L3 = { v6: false, l3: 0, l4: 0, proto: 0 };
  private readonly rel: L3 = { v6: false, l3: 0, l4: 0, proto: 0 };
  private readonly plain: PacketMeta = newPacketMeta();

  constructor(private readonly maxFrame: number) {
    this.buf = new Uint8Array(maxFrame);
  }

  process(mem: Uint8Array, off: number, len: number, meta: PacketMeta, emit: (b: Uint8Array, off: number, len: number, meta: PacketMeta) => boolean): boolean {
    const gso = meta.gsoType !== XEN_NETIF_GSO_TYPE_NONE && meta.gsoSize > 0 && len > this.maxFrame;
    if (!gso && !meta.csumBlank) return emit(mem, off, len, meta);
    const h = this.h;
    if (!parseL3(mem, off, len, h) || (h.proto !== PROTO_TCP && h.proto !== PROTO_UDP)) {
      this.stats.refused++;
      return false;
    }
    if (!gso) {
      if (len > this.maxFrame) {
        this.stats.refused++;
        return false;
      }
      this.buf.set(mem.subarray(off, off + len));
      const rel = this.rel;
      rel.v6 = h.v6;
      rel.proto = h.proto;
      rel.l3 = h.l3 - off;
      rel.l4 = h.l4 - off;
      setL4Checksum(this.buf, rel, len);
      this.stats.checksummed++;
      return emit(this.buf, 0, len, this.plain);
    }
    if (h.proto !== PROTO_TCP) {
      this.stats.refused++;
      return false;
    }
    return this.segment(mem, off, len, meta.gsoSize, emit);
  }

  private segment(mem: Uint8Array, off: number, len: number, mss: number, emit: (b: Uint8Array, off: number, len: number, meta: PacketMeta) => boolean): boolean {
    const h = this.h;
    const tcpLen = (mem[h.l4 + 12] >> 4) * 4;
    const hdr = h.l4 + tcpLen - off; // bytes of Ethernet + IP + TCP headers
    if (tcpLen < 20 || hdr >= len || hdr + mss > this.maxFrame) {
      this.stats.refused++;
      return false;
    }
    const b = this.buf;
    const l3 = h.l3 - off;
    const l4 = h.l4 - off;
    const rel = this.rel;
    rel.v6 = h.v6;
    rel.l3 = l3;
    rel.l4 = l4;
    rel.proto = PROTO_TCP;
    const seq0 = ((mem[h.l4 + 4] << 24) | (mem[h.l4 + 5] << 16) | (mem[h.l4 + 6] << 8) | mem[h.l4 + 7]) >>> 0;
    const flags0 = mem[h.l4 + 13];
    const id0 = h.v6 ? 0 : (mem[h.l3 + 4] << 8) | mem[h.l3 + 5];
    const payload = len - hdr;
    let ok = true;
    let i = 0;
    for (let p = 0; p < payload; p += mss, i++) {
      const n = Math.min(mss, payload - p);
      b.set(mem.subarray(off, off + hdr), 0);
      b.set(mem.subarray(off + hdr + p, off + hdr + p + n), hdr);
      const seq = (seq0 + p) >>> 0;
      b[l4 + 4] = seq >>> 24;
      b[l4 + 5] = (seq >>> 16) & 0xff;
      b[l4 + 6] = (seq >>> 8) & 0xff;
      b[l4 + 7] = seq & 0xff;
      const last = p + n >= payload;
      let flags = flags0;
      if (!last) flags &= ~(TCP_FIN | TCP_PSH);
      if (i > 0) flags &= ~TCP_CWR;
      b[l4 + 13] = flags;
      if (h.v6) {
        const plen = hdr + n - l3 - 40;
        b[l3 + 4] = plen >> 8;
        b[l3 + 5] = plen & 0xff;
      } else {
        const tot = hdr + n - l3;
        b[l3 + 2] = tot >> 8;
        b[l3 + 3] = tot & 0xff;
        const id = (id0 + i) & 0xffff;
        b[l3 + 4] = id >> 8;
        b[l3 + 5] = id & 0xff;
        setIpv4Checksum(b, l3);
      }
      setL4Checksum(b, rel, hdr + n);
      if (!emit(b, 0, hdr + n, this.plain)) ok = false;
      this.stats.segments++;
    }
    this.stats.segmented++;
    return ok;
  }
}
