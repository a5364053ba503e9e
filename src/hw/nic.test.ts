import { VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6, VIRTIO_NET_HDR_SIZE } from '../abi/virtio.js';
import { describe, expect, it } from 'vitest';
import { NicDriver } from '../drivers/nic.js';
import { newPacketMeta, type PacketMeta } from '../packet/meta.js';
import type { UplinkSink } from '../netswitch/uplink.js';
import { parseBdf, type Bdf } from '../config/bdf.js';
import { NicModel, TapWire, WIRE_HEADROOM, cable, type NicWire } from './nic.js';
import {
  DESC, DESC_CMD_OFFLOAD, DESC_DD, DESC_ERR, NIC_CAP, NIC_CAP_ALL, NIC_CTRL_EN, NIC_FATAL, NIC_GSO, NIC_REG as R,
  NIC_STATUS_FATAL, NIC_TX_ERR, NIC_TX_ERR_BASE, NIC_TX_HDR_SIZE, TX_HDR, TX_HDR_F_CSUM,
} from '../abi/nic.js';
import type { NicTxOffload } from './nic-offload.js';
import { inetSum, ipFrame } from './nic-testframes.js';
import { OWNER_PA, makeRig, type Rig } from './testrig.js';
import { XEN_NETIF_GSO_TYPE_TCPV4, XEN_NETIF_GSO_TYPE_TCPV6 } from '../abi/netif.js';
import { native } from '../native/index.js';
import { decodeVnetHdr, encodeVnetHdr, newVnetFields } from '../packet/vnet.js';

function sink(): UplinkSink & { frames: Uint8Array[] } {
  const mem = new Uint8Array(65536);
  const frames: Uint8Array[] = [];
  return { mem, frames, reserve: () => 0, commit: (off, len) => frames.push(mem.slice(off, off + len)) };
}

function frame(len: number, fill: number): { mem: Uint8Array; off: number; len: number; meta: ReturnType<typeof newPacketMeta> } {
  const mem = new Uint8Array(len + 10).fill(fill);
  return { mem, off: 10, len, meta: newPacketMeta() };
}

function nicPair(rig: Rig, busMaster: { a?: () => boolean; b?: () => boolean } = {}) {
  const bdf2 = parseBdf('02:00.0') as Bdf;
  rig.iommu.attach(bdf2, 1);
  const mk = (sid: number, macLast: number, bm: () => boolean = () => true) => {
    const bar = new Uint8Array(4096);
    let raise = () => {};
    const model = new NicModel({ unit: rig.unit, mem: rig.mem, sid, bar, mac: Uint8Array.of(2, 0, 0, 0, 0, macLast), busMaster: bm, raiseIrq: () => raise() });
    const port = rig.port(bar, () => model.kick());
    raise = () => port.raise();
    return { model, port, bar };
  };
  const a = mk(rig.sid, 1, busMaster.a);
  const b = mk((2 << 8) | 0, 2, busMaster.b);
  cable(a.model, b.model);
  return { a, b };
}

describe('NIC model through the IOMMU', () => {
  it('carries frames over a cable between two NICs, descriptors and buffers by DMA', async () => {
    const rig = makeRig();
    const { a, b } = nicPair(rig);
    const da = new NicDriver('a', a.port, rig.driverMem, { ringSize: 8 });
    const db = new NicDriver('b', b.port, rig.driverMem, { ringSize: 8 });
    da.start();
    db.start();
    expect(Array.from(db.mac)).toEqual([2, 0, 0, 0, 0, 2]);
    const got = new Promise<void>((r) => db.onReadable(r));
    for (let i = 0; i < 20; i++) expect(da.transmit(frame(60 + i, i))).toBe(true);
    await got;
    const s = sink();
    // the receiver had 7 buffers: the rest were dropped by the device and counted
    expect(db.receive(s, 64)).toBe(7);
    expect(s.frames[3].length).toBe(63);
    expect(s.frames[3].every((v) => v === 3)).toBe(true);
    expect(b.model.stats.rxDrops).toBe(13);
    // buffers were re-posted: the next frames arrive
    da.transmit(frame(100, 0xee));
    await new Promise((r) => setImmediate(r));
    expect(db.receive(s, 64)).toBe(1);
    expect(s.frames[7].length).toBe(100);
    expect(rig.faults).toEqual([]);
    expect(da.transmit(frame(3000, 1))).toBe(false);
  });

  it('a transmit descriptor aimed at memory the owner was not given faults and the frame is not sent', () => {
    const rig = makeRig();
    const { a, b } = nicPair(rig);
    const db = new NicDriver('b', b.port, rig.driverMem, { ringSize: 8 });
    db.start();
    const ring = rig.driverMem.alloc(1);
    const w = new Int32Array(a.bar.buffer);
    w[R.TX_BASE >> 2] = ring.iova;
    w[R.TX_SIZE >> 2] = 4;
    w[R.RX_BASE >> 2] = ring.iova + 2048;
    w[R.RX_SIZE >> 2] = 4;
    w[R.CTRL >> 2] = NIC_CTRL_EN;
    const dv = new DataView(ring.bytes.buffer, ring.bytes.byteOffset, 4096);
    dv.setUint32(DESC.ADDR, 0x5000000, true); // never mapped
    dv.setUint16(DESC.LEN, 64, true);
    w[R.TX_TAIL >> 2] = 1;
    a.model.kick();
    expect(dv.getUint16(DESC.STATUS, true)).toBe(DESC_DD | DESC_ERR);
    expect(dv.getUint16(DESC.ERR_REASON, true)).toBe(6); // device read: PTE read not set
    expect(rig.faults[0]).toMatchObject({ sid: rig.sid, iova: 0x5000000, reason: 6, write: false });
    expect(b.model.stats.rxFrames).toBe(0);
    // a tail beyond the ring stops the NIC instead of walking off its end
    w[R.TX_TAIL >> 2] = 9;
    a.model.kick();
    expect(w[R.STATUS >> 2] & NIC_STATUS_FATAL).toBe(NIC_STATUS_FATAL);
    expect(w[R.FATAL_REASON >> 2]).toBe(NIC_FATAL.BAD_TX_TAIL);
  });

  it('an exception inside a NIC stops that NIC alone: FATAL with reason INTERNAL; the NIC sending to it is not blamed', async () => {
    const rig = makeRig();
    let broken = false;
    const { a, b } = nicPair(rig, {
      b: () => {
        if (broken) throw new Error('bus master lookup broke');
        return true;
      },
    });
    const da = new NicDriver('a', a.port, rig.driverMem, { ringSize: 8 });
    const db = new NicDriver('b', b.port, rig.driverMem, { ringSize: 8 });
    da.start();
    db.start();
    broken = true;
    // a frame over the cable reaches b's receive, which breaks inside b
    expect(() => da.transmit(frame(60, 1))).not.toThrow();
    const sb = new Int32Array(b.bar.buffer);
    expect(sb[R.STATUS >> 2] & NIC_STATUS_FATAL).toBe(NIC_STATUS_FATAL);
    expect(sb[R.FATAL_REASON >> 2]).toBe(NIC_FATAL.INTERNAL);
    expect(da.fatal).toBe(false);
    // b's own doorbell breaks the same way, and does not throw either
    expect(() => b.model.kick()).not.toThrow();
    expect(a.model.stats.txFrames + a.model.stats.txDrops).toBe(1);
  });

  it('a driver whose NIC page reads all-ones drops what was in flight and sends nothing more', async () => {
    const rig = makeRig();
    let bm = false;
    const { a } = nicPair(rig, { a: () => bm });
    const da = new NicDriver('a', a.port, rig.driverMem, { ringSize: 8 });
    da.start();
    // no bus mastering: the descriptors stay with the device
    for (let i = 0; i < 3; i++) expect(da.transmit(frame(60, i))).toBe(true);
    expect(a.model.stats.txFrames).toBe(0);
    // hw retired the page: every register reads all-ones, and the interrupt fires
    new Int32Array(a.bar.buffer).fill(-1);
    a.port.raise();
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    expect(da.removed).toBe(true);
    expect(da.drops.tx).toBe(3);
    bm = true;
    expect(da.transmit(frame(60, 9))).toBe(false);
    expect(da.drops.tx).toBe(4);
    const s = sink();
    expect(da.receive(s, 8)).toBe(0);
  });

});

/** A wire that takes every offload and keeps what it was given. */
class RecordingWire implements NicWire {
  readonly linkUp = true;
  readonly offloads = NIC_CAP_ALL;
  readonly sent: { frame: Uint8Array; tx: NicTxOffload | null }[] = [];
  rx = -1;
  send(buf: Uint8Array, len: number, tx: NicTxOffload | null): boolean {
    this.sent.push({ frame: buf.slice(WIRE_HEADROOM, WIRE_HEADROOM + len), tx: tx ? { ...tx } : null });
    return true;
  }
  setRxOffloads(caps: number): void {
    this.rx = caps;
  }
  rxSpace(): void {}
  close(): void {}
}

function oneNic(rig: Rig, wire: NicWire | null) {
  const bar = new Uint8Array(4096);
  let raise = () => {};
  const model = new NicModel({ unit: rig.unit, mem: rig.mem, sid: rig.sid, bar, mac: Uint8Array.of(2, 0, 0, 0, 0, 9), busMaster: () => true, raiseIrq: () => raise() });
  if (wire) model.attachWire(wire);
  const port = rig.port(bar, () => model.kick());
  raise = () => port.raise();
  return { model, port, bar, regs: new Int32Array(bar.buffer) };
}

/** A NIC enabled by hand: 4-entry rings, OFFLOADS as given, transmit buffers of 8 KiB each. */
function rawNic(rig: Rig, wire: NicWire | null, offloads: number) {
  const n = oneNic(rig, wire);
  const ring = rig.driverMem.alloc(1);
  const bufs = rig.driverMem.alloc(8);
  const w = n.regs;
  w[R.TX_BASE >> 2] = ring.iova;
  w[R.TX_SIZE >> 2] = 4;
  w[R.RX_BASE >> 2] = ring.iova + 2048;
  w[R.RX_SIZE >> 2] = 4;
  w[R.OFFLOADS >> 2] = offloads;
  w[R.CTRL >> 2] = NIC_CTRL_EN;
  n.model.kick();
  const dv = new DataView(ring.bytes.buffer, ring.bytes.byteOffset, 4096);
  let tail = 0;
  /** puts `bytes` in buffer `tail` behind descriptor `tail` and rings; returns the descriptor's STATUS and ERR_REASON */
  const send = (bytes: Uint8Array, cmd: number) => {
    const d = tail * 16;
    bufs.bytes.set(bytes, tail * 8192);
    dv.setUint32(d + DESC.ADDR, bufs.iova + tail * 8192, true);
    dv.setUint16(d + DESC.LEN, bytes.length, true);
    dv.setUint16(d + DESC.STATUS, 0, true);
    dv.setUint8(d + DESC.CMD, cmd);
    tail = (tail + 1) % 4;
    w[R.TX_TAIL >> 2] = tail;
    n.model.kick();
    return { status: dv.getUint16(d + DESC.STATUS, true), reason: dv.getUint16(d + DESC.ERR_REASON, true) };
  };
  return { ...n, send };
}

function offloadHeader(gso: number, hdrLen: number, mss: number, csumStart: number, csumOffset: number): Uint8Array {
  const h = new Uint8Array(NIC_TX_HDR_SIZE);
  const dv = new DataView(h.buffer);
  dv.setUint8(TX_HDR.FLAGS, TX_HDR_F_CSUM);
  dv.setUint8(TX_HDR.GSO, gso);
  dv.setUint16(TX_HDR.HDR_LEN, hdrLen, true);
  dv.setUint16(TX_HDR.MSS, mss, true);
  dv.setUint16(TX_HDR.CSUM_START, csumStart, true);
  dv.setUint16(TX_HDR.CSUM_OFFSET, csumOffset, true);
  return h;
}

const cat = (a: Uint8Array, b: Uint8Array) => {
  const o = new Uint8Array(a.length + b.length);
  o.set(a);
  o.set(b, a.length);
  return o;
};

describe('NIC offloads', () => {
  it('offers offloads only on a wire that carries them, and none when built without', () => {
    const rig = makeRig();
    expect(oneNic(rig, new RecordingWire()).regs[R.CAPS >> 2]).toBe(NIC_CAP_ALL);
    expect(oneNic(rig, null).regs[R.CAPS >> 2]).toBe(0);
    const { a } = nicPair(rig);
    expect(new Int32Array(a.bar.buffer)[R.CAPS >> 2]).toBe(0); // a cable
    const bar = new Uint8Array(4096);
    const plain = new NicModel({ unit: rig.unit, mem: rig.mem, sid: rig.sid, bar, mac: new Uint8Array(6), busMaster: () => true, raiseIrq: () => {}, offloads: false });
    plain.attachWire(new RecordingWire());
    expect(new Int32Array(bar.buffer)[R.CAPS >> 2]).toBe(0);
  });

  it('the driver enables them and hands a GSO frame to the wire whole, with its metadata', async () => {
    const rig = makeRig();
    const wire = new RecordingWire();
    const { port } = oneNic(rig, wire);
    const d = new NicDriver('n', port, rig.driverMem, { ringSize: 8 });
    d.start();
    expect(d.offloads).toBe(NIC_CAP_ALL);
    expect(d.noOffloads).toBe(false);
    expect(wire.rx).toBe(NIC_CAP.RX_CSUM);
    for (const v6 of [false, true]) {
      const f = ipFrame(v6, 60000);
      const mss = v6 ? 1428 : 1448;
      const meta: PacketMeta = { ...newPacketMeta(), gsoType: v6 ? XEN_NETIF_GSO_TYPE_TCPV6 : XEN_NETIF_GSO_TYPE_TCPV4, gsoSize: mss, csumBlank: true };
      expect(d.transmit({ mem: f, off: 0, len: f.length, meta })).toBe(true);
      const got = wire.sent.at(-1)!;
      expect(got.frame).toEqual(f);
      expect(got.tx).toEqual({ csum: true, csumStart: v6 ? 54 : 34, csumOffset: 16, gso: v6 ? NIC_GSO.TCPV6 : NIC_GSO.TCPV4, hdrLen: v6 ? 74 : 54, mss });
    }
    // a blank UDP checksum: a checksum request, no segmentation
    const u = ipFrame(false, 500, 17);
    expect(d.transmit({ mem: u, off: 0, len: u.length, meta: { ...newPacketMeta(), csumBlank: true } })).toBe(true);
    expect(wire.sent.at(-1)!.tx).toMatchObject({ csum: true, gso: NIC_GSO.NONE, csumStart: 34, csumOffset: 6 });
    // a plain frame goes without a header
    const p = ipFrame(false, 100);
    expect(d.transmit({ mem: p, off: 0, len: p.length, meta: newPacketMeta() })).toBe(true);
    expect(wire.sent.at(-1)!.tx).toBeNull();
    // GSO metadata on something that is not TCP: dropped by the driver, never sent
    expect(d.transmit({ mem: u, off: 0, len: u.length, meta: { ...newPacketMeta(), gsoType: XEN_NETIF_GSO_TYPE_TCPV4, gsoSize: 100 } })).toBe(false);
    expect(d.drops.txUnsupported).toBe(1);
    expect(d.counters()).toMatchObject({ txFrames: 4, txGso: 2, txCsum: 3, txErrors: 0 });
    expect(rig.faults).toEqual([]);
  });

  it('super-frames keep going out as the device frees the transmit arena, none overwritten in flight', async () => {
    const rig = makeRig();
    const wire = new RecordingWire();
    const { port, model, regs } = oneNic(rig, wire);
    // the device runs a turn after the doorbell, as hv does: frames pile up in the arena and it wraps
    const late = { ...port, ring: () => void setImmediate(() => model.kick()) };
    const d = new NicDriver('n', late, rig.driverMem, { ringSize: 16 });
    d.start();
    await new Promise((r) => setImmediate(r));
    const f = ipFrame(false, 62000);
    // a sender that completed its checksum: the driver re-seeds the pseudo-header sum for the segmenter
    const meta: PacketMeta = { ...newPacketMeta(), gsoType: XEN_NETIF_GSO_TYPE_TCPV4, gsoSize: 1448 };
    const txRing = (regs[R.TX_BASE >> 2] >>> 0) + OWNER_PA;
    const descAddr = (i: number) => new DataView(rig.mem.page(Math.floor(txRing / 4096)).buffer).getUint32((txRing % 4096) + i * 16 + DESC.ADDR, true);
    for (let i = 0; i < 40; i++) {
      f[100] = i;
      f[f.length - 1] = i;
      while (!d.transmit({ mem: f, off: 0, len: f.length, meta })) await new Promise((r) => setImmediate(r));
      // the device takes four; eight more fill the 512 KiB arena; the ninth wraps into the space
      // of the four that are done, and the thirteenth must wait for the four still in flight
      if (i % 4 === 3 && (i < 4 || i > 12)) await new Promise((r) => setImmediate(r));
      if (i === 8) expect(descAddr(8)).toBe(descAddr(0));
    }
    for (let i = 0; i < 4; i++) await new Promise((r) => setImmediate(r));
    expect(wire.sent.map((s) => [s.frame[100], s.frame[s.frame.length - 1]])).toEqual(Array.from({ length: 40 }, (_, i) => [i, i]));
    const s = wire.sent[0].frame;
    expect((s[50] << 8) | s[51]).toBe(inetSum(s, 26, 8, 6 + (s.length - 34)));
    expect(f[50] | f[51]).toBe(0); // the switch's copy is left as it was
    expect(model.stats.txErrors).toBe(0);
  });

  it('a driver that turns them off (or a NIC without them) leaves segmentation to the switch', () => {
    const rig = makeRig();
    const wire = new RecordingWire();
    const { port, regs } = oneNic(rig, wire);
    const d = new NicDriver('n', port, rig.driverMem, { ringSize: 8, offloads: false });
    d.start();
    expect(d.noOffloads).toBe(true);
    expect(regs[R.OFFLOADS >> 2]).toBe(0);
    expect(wire.rx).toBe(0);
  });

  it('refuses bad offload requests per descriptor, counts them, and keeps going', () => {
    const rig = makeRig();
    const wire = new RecordingWire();
    const n = rawNic(rig, wire, NIC_CAP_ALL);
    const f = ipFrame(false, 4000);
    const err = (code: number) => ({ status: DESC_DD | DESC_ERR, reason: NIC_TX_ERR_BASE | code });
    expect(n.send(cat(offloadHeader(NIC_GSO.TCPV4, 54, 0, 34, 16), f), DESC_CMD_OFFLOAD)).toEqual(err(NIC_TX_ERR.MSS));
    expect(n.regs[R.LAST_TX_ERROR >> 2]).toBe(NIC_TX_ERR.MSS);
    expect(n.send(cat(offloadHeader(NIC_GSO.TCPV4, 54, 1448, 34, 16), ipFrame(false, 4000, 17)), DESC_CMD_OFFLOAD)).toEqual(err(NIC_TX_ERR.NOT_TCP));
    expect(n.send(cat(offloadHeader(NIC_GSO.TCPV4, 54, 1448, 34, 16), f), 0x80 | DESC_CMD_OFFLOAD)).toEqual(err(NIC_TX_ERR.BAD_CMD));
    expect(n.send(new Uint8Array(NIC_TX_HDR_SIZE + 4), DESC_CMD_OFFLOAD)).toEqual(err(NIC_TX_ERR.SHORT));
    expect(n.regs[R.TX_ERRORS >> 2]).toBe(4);
    expect(n.regs[R.STATUS >> 2] & NIC_STATUS_FATAL).toBe(0);
    expect(wire.sent).toEqual([]);
    // the NIC goes on: a good request after the bad ones is sent
    expect(n.send(cat(offloadHeader(NIC_GSO.TCPV4, 54, 1448, 34, 16), f), DESC_CMD_OFFLOAD)).toEqual({ status: DESC_DD, reason: 0 });
    expect(wire.sent).toHaveLength(1);
    expect(n.regs[R.TX_GSO_FRAMES >> 2]).toBe(1);
    expect(n.model.stats).toMatchObject({ txErrors: 4, txGso: 1, txFrames: 1 });
  });

  it('an offload request the driver did not enable is refused; asking for more than CAPS stops the NIC', () => {
    const rig = makeRig();
    const wire = new RecordingWire();
    const n = rawNic(rig, wire, 0);
    expect(n.send(cat(offloadHeader(NIC_GSO.TCPV4, 54, 1448, 34, 16), ipFrame(false, 4000)), DESC_CMD_OFFLOAD)).toEqual({ status: DESC_DD | DESC_ERR, reason: NIC_TX_ERR_BASE | NIC_TX_ERR.NOT_ENABLED });
    // a plain frame on the same NIC goes as it always did
    expect(n.send(ipFrame(false, 100), 0)).toEqual({ status: DESC_DD, reason: 0 });
    expect(wire.sent).toEqual([{ frame: ipFrame(false, 100), tx: null }]);
    const { a } = nicPair(rig); // a cable: CAPS 0
    const w = new Int32Array(a.bar.buffer);
    const ring = rig.driverMem.alloc(1);
    w[R.TX_BASE >> 2] = ring.iova;
    w[R.RX_BASE >> 2] = ring.iova + 2048;
    w[R.TX_SIZE >> 2] = w[R.RX_SIZE >> 2] = 4;
    w[R.OFFLOADS >> 2] = NIC_CAP.TX_CSUM | NIC_CAP.TSO4;
    w[R.CTRL >> 2] = NIC_CTRL_EN;
    a.model.kick();
    expect(w[R.STATUS >> 2] & NIC_STATUS_FATAL).toBe(NIC_STATUS_FATAL);
    expect(w[R.FATAL_REASON >> 2]).toBe(NIC_FATAL.BAD_OFFLOADS);
    const t = rawNic(rig, new RecordingWire(), NIC_CAP.TSO4); // TSO without checksum offload
    expect(t.regs[R.FATAL_REASON >> 2]).toBe(NIC_FATAL.BAD_OFFLOADS);
  });
});

describe('TapWire: the NIC behind virtio-net headers', () => {
  it('writes a TSO super-frame in one message behind its header, and receives a blank checksum as such', async () => {
    const rig = makeRig();
    // a seqpacket pair keeps message boundaries as a TAP does; `host` plays the kernel's side
    const [tapFd, host] = native.seqpacketPair();
    const tap = new TapWire(tapFd);
    try {
      const bar = new Uint8Array(4096);
      let raise = () => {};
      const model = new NicModel({ unit: rig.unit, mem: rig.mem, sid: rig.sid, bar, mac: Uint8Array.of(2, 0, 0, 0, 0, 7), busMaster: () => true, raiseIrq: () => raise() });
      tap.plug(model);
      const port = rig.port(bar, () => model.kick());
      raise = () => port.raise();
      const d = new NicDriver('t', port, rig.driverMem, { ringSize: 8 });
      d.start();
      expect(d.noOffloads).toBe(false);
      const f = ipFrame(true, 30000);
      expect(d.transmit({ mem: f, off: 0, len: f.length, meta: { ...newPacketMeta(), gsoType: XEN_NETIF_GSO_TYPE_TCPV6, gsoSize: 1428, csumBlank: true } })).toBe(true);
      const out = new Uint8Array(70000);
      const n = native.readFd(host, out);
      expect(n).toBe(VIRTIO_NET_HDR_SIZE + f.length);
      expect(decodeVnetHdr(out, 0, newVnetFields())).toEqual({ flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, gsoType: VIRTIO_NET_HDR_GSO_TCPV6, hdrLen: 74, gsoSize: 1428, csumStart: 54, csumOffset: 16 });
      expect(out.subarray(VIRTIO_NET_HDR_SIZE, n!)).toEqual(f);
      const p = ipFrame(false, 64);
      d.transmit({ mem: p, off: 0, len: p.length, meta: newPacketMeta() });
      expect(native.readFd(host, out)).toBe(VIRTIO_NET_HDR_SIZE + p.length);
      expect(Array.from(out.subarray(0, VIRTIO_NET_HDR_SIZE))).toEqual(new Array(VIRTIO_NET_HDR_SIZE).fill(0));

      // host -> NIC: a checksum-partial frame, then a GSO frame the NIC never asked for
      const r = ipFrame(false, 300);
      const msg = new Uint8Array(VIRTIO_NET_HDR_SIZE + r.length);
      encodeVnetHdr(msg, 0, { ...newVnetFields(), flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, csumStart: 34, csumOffset: 16 });
      msg.set(r, VIRTIO_NET_HDR_SIZE);
      const readable = new Promise<void>((res) => d.onReadable(res));
      native.writeFd(host, msg);
      encodeVnetHdr(msg, 0, { ...newVnetFields(), flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, gsoType: VIRTIO_NET_HDR_GSO_TCPV4, gsoSize: 100, hdrLen: 54, csumStart: 34, csumOffset: 16 });
      native.writeFd(host, msg);
      await readable;
      for (let i = 0; i < 10 && model.stats.rxDrops === 0; i++) await new Promise((res) => setImmediate(res));
      const metas: PacketMeta[] = [];
      const s = sink();
      s.commit = (off, len, m) => {
        s.frames.push(s.mem.slice(off, off + len));
        metas.push({ ...m });
      };
      expect(d.receive(s, 8)).toBe(1);
      expect(s.frames[0]).toEqual(r);
      expect(metas[0]).toMatchObject({ csumBlank: true, dataValidated: true });
      expect(model.stats).toMatchObject({ rxFrames: 1, rxDrops: 1, rxCsum: 1 });
    } finally {
      tap.close();
      native.close(host);
    }
  });
});
