import { VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_SIZE } from '../abi/virtio.js';
import { describe, expect, it } from 'vitest';
import { NETIF_TX_RING, NETTXF_csum_blank, NETTXF_extra_info, NETTXF_more_data, XEN_NETIF_GSO_TYPE_TCPV4, XEN_NETIF_GSO_TYPE_TCPV6, netifExtraInfo, netifTxRequest } from '../abi/netif.js';
import { BackRing } from '../ring/back.js';
import { FrontRing } from '../ring/front.js';
import { finishChecksum, newL4Info, parseL4 } from '../packet/headers.js';
import { macKey, parseMacBytes } from '../packet/mac.js';
import { newPacketMeta } from '../packet/meta.js';
import { TxPacket, parseTxPacket } from './txparse.js';
import { readVnetHdr, writeVnetHdr } from '../packet/vnet.js';

/** Ethernet + IPv4 + TCP with `payload` bytes; checksum field seeded with the pseudo-header sum */
function tcp4(payload: number): Uint8Array {
  const f = new Uint8Array(14 + 20 + 20 + payload);
  f.set(parseMacBytes('00:16:3e:00:00:02'), 0);
  f.set(parseMacBytes('00:16:3e:00:00:01'), 6);
  f.set([0x08, 0x00], 12);
  const ipLen = 40 + payload;
  f.set([0x45, 0, ipLen >> 8, ipLen & 0xff, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2], 14);
  f.set([0x30, 0x39, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0], 34);
  for (let i = 54; i < f.length; i++) f[i] = i & 0xff;
  return f;
}

function inetSum(b: Uint8Array, from: number, to: number, seed = 0): number {
  let s = seed;
  for (let i = from; i < to; i += 2) s += (b[i] << 8) | (i + 1 < to ? b[i + 1] : 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

describe('headers', () => {
  it('finds the TCP checksum of an IPv4 frame and rejects garbage without reading past the end', () => {
    const l4 = newL4Info();
    const f = tcp4(100);
    expect(parseL4(f, 0, f.length, l4)).toBe(true);
    expect(l4).toMatchObject({ ipVersion: 4, proto: 6, csumStart: 34, csumOffset: 16, hdrLen: 54 });
    expect(parseL4(f, 0, 40, l4)).toBe(false);
    const bad = tcp4(0);
    bad[14] = 0x4f; // ihl 60 > frame
    expect(parseL4(bad, 0, 54, l4)).toBe(false);
    expect(parseL4(new Uint8Array(10), 0, 10, l4)).toBe(false);
  });

  it('completes a partial checksum so the receiver verifies it', () => {
    const f = tcp4(333);
    const l4 = newL4Info();
    parseL4(f, 0, f.length, l4);
    // seed the pseudo-header sum as a sender with checksum offload does
    let s = inetSum(f, 26, 34) + 6 + (f.length - 34);
    while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
    f[50] = s >> 8;
    f[51] = s & 0xff;
    expect(finishChecksum(f, 0, f.length, l4.csumStart, l4.csumOffset)).toBe(true);
    // verification: pseudo header + segment sums to 0xffff
    let v = inetSum(f, 26, 34) + 6 + (f.length - 34) + inetSum(f, 34, f.length);
    while (v > 0xffff) v = (v & 0xffff) + (v >>> 16);
    expect(v).toBe(0xffff);
  });

  it('keys MACs without allocation', () => {
    expect(macKey(parseMacBytes('00:16:3e:00:00:01'), 0)).toBe(0x00163e000001);
    expect(() => parseMacBytes('zz')).toThrow(/not a MAC/);
  });
});

describe('vnet header <-> netif metadata', () => {
  it('maps a TSO frame both ways, with offsets re-derived from the headers', () => {
    const f = tcp4(3000);
    const hdr = new Uint8Array(VIRTIO_NET_HDR_SIZE);
    const meta = newPacketMeta();
    meta.csumBlank = true;
    meta.gsoType = XEN_NETIF_GSO_TYPE_TCPV4;
    meta.gsoSize = 1448;
    expect(writeVnetHdr(hdr, 0, meta, f, 0, f.length, newL4Info())).toBe(true);
    expect(hdr[0]).toBe(VIRTIO_NET_HDR_F_NEEDS_CSUM);
    expect(hdr[1]).toBe(VIRTIO_NET_HDR_GSO_TCPV4);
    expect(hdr[2] | (hdr[3] << 8)).toBe(54);
    expect(hdr[4] | (hdr[5] << 8)).toBe(1448);
    expect(hdr[6] | (hdr[7] << 8)).toBe(34);
    expect(hdr[8] | (hdr[9] << 8)).toBe(16);
    const back = newPacketMeta();
    expect(readVnetHdr(hdr, 0, back)).toBeNull();
    expect(back).toEqual({ csumBlank: true, dataValidated: true, gsoType: XEN_NETIF_GSO_TYPE_TCPV4, gsoSize: 1448 });
    // a GSO type netif cannot carry, and a TCPv6 GSO claim on an IPv4 frame
    hdr[1] = 3;
    expect(readVnetHdr(hdr, 0, back)).toBe('gso-type');
    meta.gsoType = XEN_NETIF_GSO_TYPE_TCPV6;
    expect(writeVnetHdr(hdr, 0, meta, f, 0, f.length, newL4Info())).toBe(false);
  });
});

describe('tx slot parsing', () => {
  function ring() {
    const buf = new ArrayBuffer(4096);
    const front = FrontRing.init(buf, NETIF_TX_RING);
    const back = BackRing.attach(buf, NETIF_TX_RING);
    return { front, back };
  }
  const feats = { gsoTcpv4: true, gsoTcpv6: true };

  it('parses first slot, GSO extra and fragments; waits for a packet that is not all pushed', () => {
    const { front, back } = ring();
    const v = front.view;
    netifTxRequest.write(v, front.produceRequest(), 100, 10, NETTXF_csum_blank | NETTXF_extra_info | NETTXF_more_data, 1, 5000);
    netifExtraInfo.writeGso(v, front.produceRequest(), 0, 1448, XEN_NETIF_GSO_TYPE_TCPV4, 0);
    netifTxRequest.write(v, front.produceRequest(), 101, 0, NETTXF_more_data, 2, 4000);
    front.pushRequests();
    const pkt = new TxPacket();
    expect(parseTxPacket(back, back.unconsumedRequests(), pkt, feats)).toBe('incomplete');
    expect(back.reqCons).toBe(0);
    netifTxRequest.write(v, front.produceRequest(), 102, 0, 0, 3, 500);
    front.pushRequests();
    expect(parseTxPacket(back, back.unconsumedRequests(), pkt, feats)).toBe('ok');
    expect(pkt.nSlots).toBe(3);
    expect(pkt.extraCount).toBe(1);
    expect(pkt.ringSlots).toBe(4);
    expect(pkt.size).toBe(5000);
    expect(pkt.slots.slice(0, 3).map((s) => s.size)).toEqual([500, 4000, 500]);
    expect(pkt.meta).toMatchObject({ csumBlank: true, gsoType: XEN_NETIF_GSO_TYPE_TCPV4, gsoSize: 1448 });
  });

  it('refuses a GSO type that was not negotiated and an unknown extra type', () => {
    for (const [type, gso] of [[1, XEN_NETIF_GSO_TYPE_TCPV6], [9, 0]] as const) {
      const { front, back } = ring();
      netifTxRequest.write(front.view, front.produceRequest(), 1, 0, NETTXF_extra_info, 1, 100);
      const off = front.produceRequest();
      if (type === 1) netifExtraInfo.writeGso(front.view, off, 0, 1448, gso, 0);
      else front.view.setUint8(off, type);
      front.pushRequests();
      const pkt = new TxPacket();
      expect(parseTxPacket(back, back.unconsumedRequests(), pkt, { gsoTcpv4: true, gsoTcpv6: false })).toBe('fatal');
      expect(pkt.reason).toMatch(type === 1 ? /not negotiated/ : /bad extra-info type/);
    }
  });

  it('answers a runt frame with an error rather than a cut-off', () => {
    const { front, back } = ring();
    netifTxRequest.write(front.view, front.produceRequest(), 1, 0, 0, 1, 10);
    front.pushRequests();
    const pkt = new TxPacket();
    expect(parseTxPacket(back, back.unconsumedRequests(), pkt, feats)).toBe('drop');
  });
});
