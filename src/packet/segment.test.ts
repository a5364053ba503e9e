import { describe, expect, it } from 'vitest';
import { XEN_NETIF_GSO_TYPE_TCPV4, XEN_NETIF_GSO_TYPE_TCPV6 } from '../abi/netif.js';
import { newPacketMeta, type PacketMeta } from './meta.js';
import { SoftwareGso } from './segment.js';

function csum(b: Uint8Array, off: number, len: number, init = 0): number {
  let s = init;
  for (let i = 0; i + 1 < len; i += 2) s += (b[off + i] << 8) | b[off + i + 1];
  if (len & 1) s += b[off + len - 1] << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

/** A TCP/IPv4 or IPv6 frame with `payload` bytes, the way a guest hands a GSO frame over. */
function tcpFrame(v6: boolean, payload: number, flags = 0x18): Uint8Array {
  const ip = v6 ? 40 : 20;
  const b = new Uint8Array(14 + ip + 20 + payload);
  b.set([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1], 0);
  b[12] = v6 ? 0x86 : 0x08;
  b[13] = v6 ? 0xdd : 0x00;
  const l3 = 14;
  if (v6) {
    b[l3] = 0x60;
    b[l3 + 6] = 6;
    b[l3 + 7] = 64;
    b[l3 + 8 + 15] = 1;
    b[l3 + 24 + 15] = 2;
  } else {
    b[l3] = 0x45;
    b[l3 + 4] = 0x12;
    b[l3 + 5] = 0x34;
    b[l3 + 8] = 64;
    b[l3 + 9] = 6;
    b.set([10, 0, 0, 1, 10, 0, 0, 2], l3 + 12);
  }
  const l4 = l3 + ip;
  b.set([0x13, 0x88, 0xc0, 0x00, 0xff, 0xff, 0xff, 0x00], l4); // ports, seq 0xffffff00 (wraps)
  b[l4 + 12] = 0x50;
  b[l4 + 13] = flags | 0x80; // CWR on the first segment only
  for (let i = 0; i < payload; i++) b[l4 + 20 + i] = i & 0xff;
  return b;
}

describe('software GSO for a wire without offloads', () => {
  for (const v6 of [false, true]) {
    it(`cuts a TCP/IPv${v6 ? 6 : 4} GSO frame into valid MSS segments`, () => {
      const g = new SoftwareGso(1514);
      const mss = v6 ? 1428 : 1448; // what a 1500-byte MTU allows each
      const f = tcpFrame(v6, 4000, 0x19); // PSH|FIN|ACK... FIN only on the last
      const meta: PacketMeta = { ...newPacketMeta(), gsoType: v6 ? XEN_NETIF_GSO_TYPE_TCPV6 : XEN_NETIF_GSO_TYPE_TCPV4, gsoSize: mss, csumBlank: true };
      const segs: Uint8Array[] = [];
      expect(g.process(f, 0, f.length, meta, (b, off, len, m) => {
        expect(m.gsoType).toBe(0);
        segs.push(b.slice(off, off + len));
        return true;
      })).toBe(true);
      expect(segs.map((s) => s.length - (14 + (v6 ? 40 : 20) + 20))).toEqual([mss, mss, 4000 - 2 * mss]);
      const payload: number[] = [];
      segs.forEach((s, i) => {
        const l3 = 14;
        const l4 = l3 + (v6 ? 40 : 20);
        const seq = ((s[l4 + 4] << 24) | (s[l4 + 5] << 16) | (s[l4 + 6] << 8) | s[l4 + 7]) >>> 0;
        expect(seq).toBe((0xffffff00 + i * mss) >>> 0);
        expect(s[l4 + 13] & 0x01).toBe(i === 2 ? 1 : 0); // FIN last only
        expect(s[l4 + 13] & 0x08).toBe(i === 2 ? 8 : 0); // PSH last only
        expect(s[l4 + 13] & 0x80).toBe(i === 0 ? 0x80 : 0); // CWR first only
        const l4len = s.length - l4;
        let pseudo: number;
        if (v6) {
          expect((s[l3 + 4] << 8) | s[l3 + 5]).toBe(l4len);
          pseudo = csum(s, l3 + 8, 32) + 6 + l4len;
        } else {
          expect((s[l3 + 2] << 8) | s[l3 + 3]).toBe(s.length - 14);
          expect((s[l3 + 4] << 8) | s[l3 + 5]).toBe((0x1234 + i) & 0xffff);
          expect(csum(s, l3, 20)).toBe(0xffff); // header checksum verifies
          pseudo = csum(s, l3 + 12, 8) + 6 + l4len;
        }
        expect(csum(s, l4, l4len, pseudo)).toBe(0xffff); // TCP checksum verifies
        payload.push(...s.subarray(l4 + 20));
      });
      expect(payload).toEqual(Array.from({ length: 4000 }, (_, i) => i & 0xff));
      expect(g.stats).toMatchObject({ segmented: 1, segments: 3 });
    });
  }

  it('fills in a partial checksum and passes plain frames untouched', () => {
    const g = new SoftwareGso(1514);
    const f = tcpFrame(false, 100);
    let out: Uint8Array | null = null;
    g.process(f, 0, f.length, { ...newPacketMeta(), csumBlank: true }, (b, off, len) => {
      out = b.slice(off, off + len);
      return true;
    });
    const s = out as unknown as Uint8Array;
    expect(csum(s, 34, s.length - 34, csum(s, 26, 8) + 6 + (s.length - 34))).toBe(0xffff);
    let same = false;
    g.process(f, 0, f.length, newPacketMeta(), (b) => (same = b === f));
    expect(same).toBe(true);
  });

  it('refuses what it cannot make wire-ready, without throwing', () => {
    const g = new SoftwareGso(1514);
    const arp = new Uint8Array(60);
    arp[12] = 0x08;
    arp[13] = 0x06;
    expect(g.process(arp, 0, 60, { ...newPacketMeta(), csumBlank: true }, () => true)).toBe(false);
    const f = tcpFrame(false, 3000);
    f[14 + 20 + 12] = 0x10; // TCP data offset 4 bytes: bogus
    expect(g.process(f, 0, f.length, { ...newPacketMeta(), gsoType: XEN_NETIF_GSO_TYPE_TCPV4, gsoSize: 1448 }, () => true)).toBe(false);
    expect(g.stats.refused).toBe(2);
  });
});
