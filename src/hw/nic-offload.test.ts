import {
  VIRTIO_NET_HDR_F_DATA_VALID,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_TCPV4,
  VIRTIO_NET_HDR_GSO_TCPV6,
  VIRTIO_NET_HDR_SIZE,
} from '../abi/virtio.js';
import { describe, expect, it } from 'vitest';
import { newL4Info } from '../packet/headers.js';
import { decodeVnetHdr, encodeVnetHdr, newVnetFields } from '../packet/vnet.js';
import { DESC_CSUM_BLANK, DESC_DATA_VALID, NIC_CAP, NIC_CAP_ALL, NIC_GSO, NIC_TX_ERR, NIC_TX_HDR_SIZE, TX_HDR, TX_HDR_F_CSUM } from '../abi/nic.js';
import { RX_DROP, checkTxOffload, newTxOffload, rxStatusFromVnet, vnetFromTxOffload } from './nic-offload.js';
import { inetSum, ipFrame } from './nic-testframes.js';

interface Hdr { flags?: number; gso?: number; hdrLen?: number; mss?: number; csumStart?: number; csumOffset?: number; reserved?: number }

/** header + frame in one buffer, as the device has them after its DMA */
function withHeader(frame: Uint8Array, h: Hdr): Uint8Array {
  const b = new Uint8Array(NIC_TX_HDR_SIZE + frame.length);
  const dv = new DataView(b.buffer);
  dv.setUint8(TX_HDR.FLAGS, h.flags ?? 0);
  dv.setUint8(TX_HDR.GSO, h.gso ?? 0);
  dv.setUint16(TX_HDR.HDR_LEN, h.hdrLen ?? 0, true);
  dv.setUint16(TX_HDR.MSS, h.mss ?? 0, true);
  dv.setUint16(TX_HDR.CSUM_START, h.csumStart ?? 0, true);
  dv.setUint16(TX_HDR.CSUM_OFFSET, h.csumOffset ?? 0, true);
  dv.setUint16(TX_HDR.RESERVED, h.reserved ?? 0, true);
  b.set(frame, NIC_TX_HDR_SIZE);
  return b;
}

const tso4: Hdr = { flags: TX_HDR_F_CSUM, gso: NIC_GSO.TCPV4, hdrLen: 54, mss: 1448, csumStart: 34, csumOffset: 16 };
const tso6: Hdr = { flags: TX_HDR_F_CSUM, gso: NIC_GSO.TCPV6, hdrLen: 74, mss: 1428, csumStart: 54, csumOffset: 16 };

function check(frame: Uint8Array, h: Hdr, enabled = NIC_CAP_ALL): number {
  return checkTxOffload(withHeader(frame, h), 0, frame.length, enabled, newL4Info(), newTxOffload());
}

describe('NIC transmit offload requests, checked as hostile input', () => {
  it('accepts TSO for IPv4 and IPv6 TCP and a checksum request on UDP', () => {
    expect(check(ipFrame(false, 4000), tso4)).toBe(0);
    expect(check(ipFrame(true, 4000), tso6)).toBe(0);
    expect(check(ipFrame(false, 100, 17), { flags: TX_HDR_F_CSUM, csumStart: 34, csumOffset: 6 })).toBe(0);
    expect(check(ipFrame(false, 100), {})).toBe(0); // an empty request: the frame as it is
  });

  const v4 = ipFrame(false, 4000);
  const cases: [string, Uint8Array, Hdr, number, number?][] = [
    ['unknown flags', v4, { ...tso4, flags: 0x81 }, NIC_TX_ERR.BAD_HEADER],
    ['a nonzero reserved field', v4, { ...tso4, reserved: 1 }, NIC_TX_ERR.BAD_HEADER],
    ['an unknown GSO type (UDP)', v4, { ...tso4, gso: 3 }, NIC_TX_ERR.BAD_HEADER],
    ['checksum offload not enabled', v4, { flags: TX_HDR_F_CSUM, csumStart: 34, csumOffset: 16 }, NIC_TX_ERR.NOT_ENABLED, NIC_CAP.RX_CSUM],
    ['TSO4 not enabled', v4, tso4, NIC_TX_ERR.NOT_ENABLED, NIC_CAP.TX_CSUM | NIC_CAP.TSO6],
    ['a checksum field past the end', ipFrame(false, 10), { flags: TX_HDR_F_CSUM, csumStart: 60, csumOffset: 16 }, NIC_TX_ERR.CSUM_RANGE],
    ['a checksum start inside the Ethernet header', v4, { flags: TX_HDR_F_CSUM, csumStart: 4, csumOffset: 2 }, NIC_TX_ERR.CSUM_RANGE],
    ['TSO without a checksum request', v4, { ...tso4, flags: 0 }, NIC_TX_ERR.GSO_NO_CSUM],
    ['TSO on a UDP frame', ipFrame(false, 4000, 17), { ...tso4, hdrLen: 42, csumOffset: 6 }, NIC_TX_ERR.NOT_TCP],
    ['TSO4 on an IPv6 frame', ipFrame(true, 4000), { ...tso6, gso: NIC_GSO.TCPV4 }, NIC_TX_ERR.NOT_TCP],
    ['TSO on an ARP frame', Uint8Array.from({ length: 4000 }, (_, i) => (i === 12 ? 8 : i === 13 ? 6 : 0)), tso4, NIC_TX_ERR.NOT_TCP],
    ['TSO with the checksum somewhere other than TCP\'s', v4, { ...tso4, csumOffset: 6 }, NIC_TX_ERR.CSUM_RANGE],
    ['TSO with a wrong header length', v4, { ...tso4, hdrLen: 40 }, NIC_TX_ERR.HDR_LEN],
    ['MSS 0', v4, { ...tso4, mss: 0 }, NIC_TX_ERR.MSS],
    ['an MSS larger than the frame', v4, { ...tso4, mss: 5000 }, NIC_TX_ERR.MSS],
    ['segments longer than the wire takes', ipFrame(false, 30000), { ...tso4, mss: 9200 }, NIC_TX_ERR.MSS],
    ['a frame longer than 9216 bytes without TSO', ipFrame(false, 9300), { flags: TX_HDR_F_CSUM, csumStart: 34, csumOffset: 16 }, NIC_TX_ERR.TOO_LONG],
    ['a frame shorter than an Ethernet header', new Uint8Array(10), {}, NIC_TX_ERR.SHORT],
  ];
  for (const [what, frame, h, code, enabled] of cases) {
    it(`refuses ${what}`, () => {
      expect(check(frame, h, enabled)).toBe(code);
    });
  }

  it('a truncated TCP header is not taken for TSO', () => {
    const f = ipFrame(false, 4000);
    f[34 + 12] = 0xf0; // data offset 60 bytes: headers claim more than hdrLen says
    expect(check(f, tso4)).toBe(NIC_TX_ERR.HDR_LEN);
    f[34 + 12] = 0x10; // data offset 4 bytes: no TCP header at all
    expect(check(f, tso4)).toBe(NIC_TX_ERR.NOT_TCP);
  });
});

describe('NIC offloads <-> virtio_net_hdr of a host TAP', () => {
  it('maps a checked TSO request to the header the kernel segments by', () => {
    for (const [v6, h, gso] of [[false, tso4, VIRTIO_NET_HDR_GSO_TCPV4], [true, tso6, VIRTIO_NET_HDR_GSO_TCPV6]] as const) {
      const o = newTxOffload();
      const f = ipFrame(v6, 4000);
      expect(checkTxOffload(withHeader(f, h), 0, f.length, NIC_CAP_ALL, newL4Info(), o)).toBe(0);
      const b = new Uint8Array(VIRTIO_NET_HDR_SIZE).fill(0xee);
      encodeVnetHdr(b, 0, vnetFromTxOffload(o, newVnetFields()));
      // virtio_net_hdr_v1: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset, num_buffers (le16)
      const le = (n: number) => [n & 0xff, n >> 8];
      expect(Array.from(b)).toEqual([VIRTIO_NET_HDR_F_NEEDS_CSUM, gso, ...le(h.hdrLen!), ...le(h.mss!), ...le(h.csumStart!), 16, 0, 0, 0]);
    }
  });

  it('maps a checksum-only request with no segmentation fields, and no request to an all-zero header', () => {
    const o = newTxOffload();
    const f = ipFrame(false, 100, 17);
    expect(checkTxOffload(withHeader(f, { flags: TX_HDR_F_CSUM, csumStart: 34, csumOffset: 6, mss: 77, hdrLen: 9 }), 0, f.length, NIC_CAP_ALL, newL4Info(), o)).toBe(0);
    expect(vnetFromTxOffload(o, newVnetFields())).toEqual({ flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 34, csumOffset: 6 });
    const none = newTxOffload();
    expect(vnetFromTxOffload(none, newVnetFields())).toEqual(newVnetFields());
  });

  it('decodes what it encodes', () => {
    const v = { flags: 1, gsoType: 4, hdrLen: 74, gsoSize: 1428, csumStart: 54, csumOffset: 16 };
    const b = new Uint8Array(VIRTIO_NET_HDR_SIZE);
    encodeVnetHdr(b, 0, v);
    expect(decodeVnetHdr(b, 0, newVnetFields())).toEqual(v);
  });

  it('receive: checksum status from the header, blank checksums kept or completed', () => {
    const l4 = newL4Info();
    const v = newVnetFields();
    const f = ipFrame(false, 200);
    // a partial checksum as the host stack leaves it: the pseudo-header sum in the field
    const seed = (fr: Uint8Array) => {
      const ps = inetSum(fr, 26, 8) + 6 + (fr.length - 34);
      const s = ps > 0xffff ? (ps & 0xffff) + (ps >>> 16) : ps;
      fr[50] = s >> 8;
      fr[51] = s & 0xff;
    };
    seed(f);
    v.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    v.csumStart = 34;
    v.csumOffset = 16;
    expect(rxStatusFromVnet(v, f, 0, f.length, true, l4)).toBe(DESC_CSUM_BLANK | DESC_DATA_VALID);
    // the driver does not take blank checksums: completed here, and it verifies
    const g = f.slice();
    expect(rxStatusFromVnet(v, g, 0, g.length, false, l4)).toBe(0);
    expect(inetSum(g, 34, g.length - 34, inetSum(g, 26, 8) + 6 + (g.length - 34))).toBe(0xffff);
    // offsets that are not the TCP checksum's: completed where the header says, never passed on blank
    const h = f.slice();
    v.csumOffset = 4;
    expect(rxStatusFromVnet(v, h, 0, h.length, true, l4)).toBe(DESC_DATA_VALID);
    v.csumStart = 250; // its field would end past the frame
    expect(rxStatusFromVnet(v, h, 0, h.length, true, l4)).toBe(RX_DROP);
    v.flags = VIRTIO_NET_HDR_F_DATA_VALID;
    expect(rxStatusFromVnet(v, f, 0, f.length, true, l4)).toBe(DESC_DATA_VALID);
    expect(rxStatusFromVnet(v, f, 0, f.length, false, l4)).toBe(0);
    v.flags = 0;
    expect(rxStatusFromVnet(v, f, 0, f.length, true, l4)).toBe(0);
    // the NIC never asked for TSO frames: one that comes anyway is refused
    v.gsoType = VIRTIO_NET_HDR_GSO_TCPV4;
    v.gsoSize = 1448;
    expect(rxStatusFromVnet(v, f, 0, f.length, true, l4)).toBe(RX_DROP);
  });
});
