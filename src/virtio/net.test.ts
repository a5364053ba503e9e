// virtio-net's data path against a driver we write by hand: frames out through the transmit queue
// (header in any split), frames in through posted buffers, and a driver that breaks the rules
// stops only its queue with a reason.
import { afterEach, describe, expect, it } from 'vitest';
import { VIRTQ_AVAIL_IDX, VIRTQ_AVAIL_RING, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VIRTQ_DESC_SIZE, VIRTQ_USED_IDX, VIRTQ_USED_RING, VIRTIO_NET_HDR_SIZE } from '../abi/virtio.js';
import { GPA, UADDR, testMemory } from './testing/memory.js';
import { SplitQueue } from './virtqueue.js';
import { MAX_FRAME, MAX_GSO_FRAME, VirtioNet, type TxSink } from './net.js';
import type { VirtioQueueHost } from './device.js';
import { copyMeta, newPacketMeta, type PacketMeta } from '../packet/meta.js';
import { XEN_NETIF_GSO_TYPE_NONE, XEN_NETIF_GSO_TYPE_TCPV4, XEN_NETIF_GSO_TYPE_TCPV6 } from '../abi/netif.js';
import {
  VIRTIO_NET_F_CSUM,
  VIRTIO_NET_F_GUEST_CSUM,
  VIRTIO_NET_F_GUEST_TSO4,
  VIRTIO_NET_F_HOST_TSO4,
  bit,
} from '../abi/virtio.js';

const RING = [0x0000, 0x4000]; // per queue: desc at +0, avail at +0x1000, used at +0x2000
const DATA = 0x10000;
const QSIZE = 16;

const open: (() => void)[] = [];
afterEach(() => {
  for (const c of open.splice(0)) c();
});

function rig(stagingBytes = MAX_FRAME + 450) {
  const { mem, view: g, bytes: dv, close } = testMemory('vnet-test', 4);
  open.push(close);
  const sent: number[][] = [];
  const metas: PacketMeta[] = [];
  let ready = 0;
  let rxReady = 0;
  const dev = new VirtioNet({ name: 'vif', mac: Uint8Array.of(0, 0x16, 0x3e, 1, 2, 3), mtu: 1500, txReady: () => ready++, rxReady: () => rxReady++ });
  // the switch's side: staging memory with room for a few frames per round
  const staging = new Uint8Array(stagingBytes);
  let used = 0;
  const sink: TxSink = {
    mem: staging,
    reserve: (max) => (used + max <= staging.length ? used : -1),
    commit: (off, len, meta) => {
      sent.push([...staging.subarray(off, off + len)]);
      metas.push(copyMeta(newPacketMeta(), meta));
      used = off + len;
    },
  };
  /** one switch round per call, as netback runs them */
  const pull = (max = 64) => {
    used = 0;
    return dev.pullTx(sink, max);
  };
  const events = { interrupts: [0, 0], faults: [] as string[] };
  const next = [0, 0];
  const avail = [0, 0];
  for (const q of [0, 1]) {
    const base = RING[q];
    const queue = new SplitQueue(mem, QSIZE, { desc: UADDR + base, avail: UADDR + base + 0x1000, used: UADDR + base + 0x2000 }, { eventIdx: false, indirect: true }, 0);
    const host: VirtioQueueHost = { resubmit: [], began: () => {}, completing: () => {}, completed: () => {}, interrupt: () => events.interrupts[q]++, fault: (r) => events.faults.push(`q${q}: ${r}`), log: () => {} };
    dev.startQueue(q, queue, mem, host);
  }
  let data = DATA;
  /** posts one chain of buffers [bytes | writable length] on queue q; returns the buffers' addresses */
  const post = (q: number, bufs: (number[] | { writable: number })[]): number[] => {
    const head = next[q];
    const addrs: number[] = [];
    bufs.forEach((b, k) => {
      const i = next[q]++ % QSIZE;
      const o = RING[q] + i * VIRTQ_DESC_SIZE;
      const len = Array.isArray(b) ? b.length : b.writable;
      if (Array.isArray(b)) g.set(b, data);
      dv.setBigUint64(o, BigInt(GPA + data), true);
      dv.setUint32(o + 8, len, true);
      dv.setUint16(o + 12, (Array.isArray(b) ? 0 : VIRTQ_DESC_F_WRITE) | (k < bufs.length - 1 ? VIRTQ_DESC_F_NEXT : 0), true);
      dv.setUint16(o + 14, (i + 1) % QSIZE, true);
      addrs.push(data);
      data += (len + 63) & ~63;
    });
    const a = RING[q] + 0x1000;
    dv.setUint16(a + VIRTQ_AVAIL_RING + 2 * (avail[q] % QSIZE), head % QSIZE, true);
    avail[q]++;
    dv.setUint16(a + VIRTQ_AVAIL_IDX, avail[q], true);
    return addrs;
  };
  const usedAt = (q: number, n: number) => {
    const u = RING[q] + 0x2000;
    return { idx: dv.getUint16(u + VIRTQ_USED_IDX, true), id: dv.getUint32(u + VIRTQ_USED_RING + 8 * n, true), len: dv.getUint32(u + VIRTQ_USED_RING + 8 * n + 4, true) };
  };
  return { dev, g, sent, metas, events, post, used: usedAt, pull, ready: () => ready, rxReady: () => rxReady };
}

const frame = (n: number, seed: number) => Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff);
const hdr = () => new Array<number>(VIRTIO_NET_HDR_SIZE).fill(0);

describe('virtio-net', () => {
  it('transmits whatever way the driver splits header and frame, and answers each chain', () => {
    const r = rig();
    const f1 = frame(60, 1);
    const f2 = frame(1514, 2);
    r.post(1, [[...hdr(), ...f1]]);
    r.post(1, [hdr().slice(0, 4), [...hdr().slice(4), ...f2.slice(0, 10)], f2.slice(10, 700), f2.slice(700)]);
    const before = r.ready();
    r.dev.kick(1);
    expect(r.ready()).toBe(before + 1);
    expect(r.pull()).toBe(2);
    expect(r.sent).toEqual([f1, f2]);
    expect(r.used(1, 0)).toMatchObject({ idx: 2, id: 0, len: 0 });
    expect(r.used(1, 1)).toMatchObject({ id: 1, len: 0 });
    expect(r.events.interrupts[1]).toBe(1);
    expect(r.dev.stats).toMatchObject({ txFrames: 2, txDropped: 0 });
    expect(r.dev.hasTxWork()).toBe(false);
  });

  it('pulls no more than the switch has room for, and the rest in the next round', () => {
    const r = rig();
    for (let i = 0; i < 6; i++) r.post(1, [[...hdr(), ...frame(200, i)]]);
    expect(r.pull()).toBe(3); // 200-byte frames: a MAX_FRAME reservation fits at 0, 200 and 400 only
    expect(r.dev.hasTxWork()).toBe(true);
    expect(r.pull(2)).toBe(2);
    expect(r.pull()).toBe(1);
    expect(r.sent).toEqual([0, 1, 2, 3, 4, 5].map((i) => frame(200, i)));
  });

  it('receives into posted buffers: a zeroed v1 header with num_buffers 1, then the frame', () => {
    const r = rig();
    const [a] = r.post(0, [{ writable: 1526 }]);
    const f = Uint8Array.from(frame(100, 3));
    expect(r.dev.receive(f, 0, f.length)).toBe('delivered');
    expect(r.used(0, 0)).toMatchObject({ idx: 1, len: VIRTIO_NET_HDR_SIZE + 100 });
    expect([...r.g.subarray(a, a + VIRTIO_NET_HDR_SIZE)]).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
    expect([...r.g.subarray(a + VIRTIO_NET_HDR_SIZE, a + VIRTIO_NET_HDR_SIZE + 100)]).toEqual([...f]);
    // across buffers, the header itself split
    const [b1, b2, b3] = r.post(0, [{ writable: 5 }, { writable: 40 }, { writable: 1500 }]);
    expect(r.dev.receive(f, 0, f.length)).toBe('delivered');
    const got = [...r.g.subarray(b1, b1 + 5), ...r.g.subarray(b2, b2 + 40), ...r.g.subarray(b3, b3 + 67)];
    expect(got.slice(0, 12)).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
    expect(got.slice(12)).toEqual([...f]);
    expect(r.events.interrupts[0]).toBe(2);
  });

  it('with no buffer posted it says so and counts nothing (the caller keeps the frame); the next kick says buffers came', () => {
    const r = rig();
    const f = Uint8Array.from(frame(100, 6));
    expect(r.dev.hasRxBuffer()).toBe(false);
    expect(r.dev.receive(f, 0, f.length)).toBe('no-buffer');
    expect(r.dev.stats.rxDropped).toBe(0);
    expect(r.rxReady()).toBe(0);
    r.post(0, [{ writable: 1526 }]);
    r.dev.kick(0);
    expect(r.rxReady()).toBe(1);
    expect(r.dev.hasRxBuffer()).toBe(true);
    expect(r.dev.receive(f, 0, f.length)).toBe('delivered');
  });

  it('drops and counts what it cannot deliver: a buffer too small, a frame too large', () => {
    const r = rig();
    const f = Uint8Array.from(frame(1000, 4));
    r.post(0, [{ writable: 500 }]);
    expect(r.dev.receive(f, 0, f.length)).toBe('dropped');
    expect(r.used(0, 0)).toMatchObject({ idx: 1, len: 0 });
    r.post(1, [[...hdr(), ...frame(MAX_FRAME + 1, 5)]]);
    r.post(1, [hdr()]);
    r.post(1, [[...hdr(), 1, 2, 3]]); // shorter than an Ethernet header
    expect(r.pull()).toBe(0);
    expect(r.sent).toEqual([]);
    expect(r.dev.stats).toMatchObject({ rxDropped: 1, txDropped: 3, txFrames: 0, rxFrames: 0 });
    expect(r.events.faults).toEqual([]);
  });

  it('a driver that posts writable buffers to transmit, or readable ones to receive, stops that queue with a reason', () => {
    const r = rig();
    r.post(1, [[...hdr(), ...frame(20, 0)], { writable: 64 }]);
    expect(r.pull()).toBe(0);
    expect(r.events.faults).toEqual(['q1: tx chain at head 0 has device-writable buffers']);
    r.post(0, [[1, 2, 3]]);
    expect(r.dev.receive(Uint8Array.of(1, 2, 3), 0, 3)).toBe('dropped');
    expect(r.events.faults[1]).toBe('q0: rx chain at head 0 has driver-readable buffers');
    // stopped queues stay stopped: nothing more is taken or sent
    r.post(1, [[...hdr(), ...frame(20, 9)]]);
    r.dev.kick(1);
    expect(r.pull()).toBe(0);
    expect(r.sent).toEqual([]);
  });

  it('SEND_RARP: announces its own MAC with one broadcast RARP ahead of what the guest sends, and refuses any other MAC', () => {
    const r = rig();
    const mac = Uint8Array.of(0, 0x16, 0x3e, 1, 2, 3);
    expect(r.dev.announce(Uint8Array.of(0, 0x16, 0x3e, 9, 9, 9))).toMatch(/names 00:16:3e:09:09:09, not the vif's MAC 00:16:3e:01:02:03: refused/);
    expect(r.dev.hasTxWork()).toBe(false);
    const before = r.ready();
    expect(r.dev.announce(mac)).toBeNull();
    expect(r.ready()).toBe(before + 1);
    r.post(1, [[...hdr(), ...frame(60, 1)]]);
    expect(r.pull()).toBe(2);
    const [rarp, next] = r.sent;
    expect(rarp).toHaveLength(60);
    expect(rarp.slice(0, 6)).toEqual([255, 255, 255, 255, 255, 255]);
    expect(rarp.slice(6, 14)).toEqual([...mac, 0x80, 0x35]);
    expect(rarp.slice(14, 22)).toEqual([0, 1, 8, 0, 6, 4, 0, 3]); // Ethernet/IPv4, reverse request
    expect(rarp.slice(22, 28)).toEqual([...mac]);
    expect(rarp.slice(32, 38)).toEqual([...mac]);
    expect(next).toEqual(frame(60, 1));
    expect(r.pull()).toBe(0); // sent once
  });

  it('offers its MAC, link up, one queue pair and its MTU', () => {
    const c = rig().dev.config();
    expect([...c]).toEqual([0, 0x16, 0x3e, 1, 2, 3, 1, 0, 1, 0, 0xdc, 0x05]);
  });

  describe('offloads, as netif carries them', () => {
    /** Ethernet + IPv4 + a 20-byte TCP header + `payload` bytes: what parseL4 must find */
    const tcp4 = (payload: number): number[] => {
      const ipLen = 20 + 20 + payload;
      return [
        ...[0, 0x16, 0x3e, 9, 9, 9, 0, 0x16, 0x3e, 1, 2, 3, 0x08, 0x00],
        ...[0x45, 0, ipLen >> 8, ipLen & 0xff, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2],
        ...[0x30, 0x39, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0],
        ...frame(payload, 3),
      ];
    };
    /** a virtio_net_hdr_v1 */
    const vhdr = (flags: number, gso: number, hdrLen = 0, gsoSize = 0, csumStart = 0, csumOffset = 0) => [flags, gso, hdrLen & 0xff, hdrLen >> 8, gsoSize & 0xff, gsoSize >> 8, csumStart & 0xff, csumStart >> 8, csumOffset & 0xff, csumOffset >> 8, 0, 0];
    const ack = (...b: number[]) => b.reduce((a, x) => a | bit(x), 0n);

    it('offers partial checksums and TSO both ways', () => {
      const f = rig().dev.features;
      for (const b of [VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_GUEST_TSO4]) expect(f & bit(b), `bit ${b}`).not.toBe(0n);
    });

    it('a transmitted frame with NEEDS_CSUM, and a 20000-byte TSO frame, reach the switch with their meta', () => {
      const r = rig(MAX_GSO_FRAME + 1024);
      r.dev.setFeatures(ack(VIRTIO_NET_F_CSUM, VIRTIO_NET_F_HOST_TSO4));
      r.post(1, [[...vhdr(1, 0, 0, 0, 34, 16), ...tcp4(100)]]);
      r.post(1, [vhdr(1, 1, 54, 1448, 34, 16), tcp4(20000 - 54)]);
      expect(r.pull()).toBe(2);
      expect(r.metas[0]).toMatchObject({ csumBlank: true, gsoType: XEN_NETIF_GSO_TYPE_NONE });
      expect(r.metas[1]).toMatchObject({ csumBlank: true, gsoType: XEN_NETIF_GSO_TYPE_TCPV4, gsoSize: 1448 });
      expect(r.sent[1].length).toBe(20000);
      expect(r.dev.stats).toMatchObject({ txFrames: 2, txDropped: 0 });
    });

    it('drops a header that asks for what was not acked, or a frame too large for what it is', () => {
      const r = rig(MAX_GSO_FRAME + 1024);
      r.dev.setFeatures(ack(VIRTIO_NET_F_HOST_TSO4)); // TSO without CSUM is not honoured
      r.post(1, [[...vhdr(1, 0, 0, 0, 34, 16), ...tcp4(100)]]); // NEEDS_CSUM without CSUM
      r.post(1, [[...vhdr(1, 1, 54, 1448, 34, 16), ...tcp4(3000)]]);
      expect(r.pull()).toBe(0);
      r.dev.setFeatures(ack(VIRTIO_NET_F_CSUM)); // CSUM, no TSO
      r.post(1, [[...vhdr(1, 4, 74, 1428, 54, 16), ...tcp4(3000)]]); // TCPv6 GSO not acked
      r.post(1, [[...vhdr(1, 3, 0, 1400), ...tcp4(3000)]]); // UDP GSO: netif has none
      r.dev.setFeatures(ack(VIRTIO_NET_F_CSUM, VIRTIO_NET_F_HOST_TSO4));
      r.post(1, [[...vhdr(0, 1, 54, 1448), ...tcp4(3000)]]); // GSO with a complete checksum
      r.post(1, [[...hdr(), ...tcp4(MAX_FRAME)]]); // no GSO, yet past MAX_FRAME
      expect(r.pull()).toBe(0);
      expect(r.dev.stats).toMatchObject({ txFrames: 0, txDropped: 6 });
      expect(r.events.faults).toEqual([]);
    });

    it('a received frame carries NEEDS_CSUM and GSO to a guest that acked them, and is refused to one that did not', () => {
      const r = rig();
      const f = Uint8Array.from(tcp4(3000));
      const gso: PacketMeta = { ...newPacketMeta(), csumBlank: true, dataValidated: true, gsoType: XEN_NETIF_GSO_TYPE_TCPV4, gsoSize: 1448 };
      const blank: PacketMeta = { ...newPacketMeta(), csumBlank: true, dataValidated: true };
      expect(r.dev.takes(gso)).toBe(false);
      expect(r.dev.takes(blank)).toBe(false);
      const [a] = r.post(0, [{ writable: 4096 }]);
      expect(r.dev.receive(f, 0, f.length, gso)).toBe('dropped');
      expect(r.used(0, 0).idx, 'a refused frame took a buffer').toBe(0);
      r.dev.setFeatures(ack(VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4));
      expect(r.dev.takes(gso)).toBe(true);
      expect(r.dev.takes({ ...gso, gsoType: XEN_NETIF_GSO_TYPE_TCPV6 })).toBe(false);
      expect(r.dev.receive(f, 0, f.length, gso)).toBe('delivered');
      // NEEDS_CSUM, GSO_TCPV4, hdr_len 54, gso_size 1448, csum_start 34, csum_offset 16, num_buffers 1
      expect([...r.g.subarray(a, a + VIRTIO_NET_HDR_SIZE)]).toEqual(vhdr(1, 1, 54, 1448, 34, 16).map((x, i) => (i === 10 ? 1 : x)));
      const [b] = r.post(0, [{ writable: 4096 }]);
      const small = Uint8Array.from(tcp4(100));
      expect(r.dev.receive(small, 0, small.length, blank)).toBe('delivered');
      expect([...r.g.subarray(b, b + VIRTIO_NET_HDR_SIZE)]).toEqual(vhdr(1, 0, 0, 0, 34, 16).map((x, i) => (i === 10 ? 1 : x)));
    });
  });
});
