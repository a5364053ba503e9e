import { describe, expect, it } from 'vitest';
import { NicDriver } from '../../src/drivers/nic.js';
import { newPacketMeta } from '../../src/netif/meta.js';
import type { UplinkSink } from '../../src/netswitch/uplink.js';
import { parseBdf, type Bdf } from '../../src/config/bdf.js';
import { NicModel, cable } from './nic.js';
import { DESC, DESC_DD, DESC_ERR, NIC_CTRL_EN, NIC_FATAL, NIC_REG as R, NIC_STATUS_FATAL } from './nic-abi.js';
import { makeRig, type Rig } from './testrig.js';

function sink(): UplinkSink & { frames: Uint8Array[] } {
  const mem = new Uint8Array(65536);
  const frames: Uint8Array[] = [];
  return { mem, frames, reserve: () => 0, commit: (off, len) => frames.push(mem.slice(off, off + len)) };
}

function frame(len: number, fill: number): { mem: Uint8Array; off: number; len: number; meta: ReturnType<typeof newPacketMeta> } {
  const mem = new Uint8Array(len + 10).fill(fill);
  return { mem, off: 10, len, meta: newPacketMeta() };
}

function nicPair(rig: Rig) {
  const bdf2 = parseBdf('02:00.0') as Bdf;
  rig.iommu.attach(bdf2, 1);
  const mk = (sid: number, macLast: number) => {
    const bar = new Uint8Array(4096);
    let raise = () => {};
    const model = new NicModel({ unit: rig.unit, mem: rig.mem, sid, bar, mac: Uint8Array.of(2, 0, 0, 0, 0, macLast), busMaster: () => true, raiseIrq: () => raise() });
    const port = rig.port(bar, () => model.kick());
    raise = () => port.raise();
    return { model, port, bar };
  };
  const a = mk(rig.sid, 1);
  const b = mk((2 << 8) | 0, 2);
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
});
