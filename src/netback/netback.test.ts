import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../testing/until.js';
import { NETTXF_more_data, NETTXF_extra_info, XEN_NETIF_GSO_TYPE_TCPV4, netifTxRequest, netifExtraInfo } from '../abi/netif.js';
import { SRING_REQ_PROD } from '../abi/sring.js';
import { FakeXen, type FakeDomain } from '../domain/testing/fake-xen.js';
import { newPacketMeta, type PacketMeta } from '../packet/meta.js';
import { parseMacBytes } from '../packet/mac.js';
import { Netfront } from '../netfront/netfront.js';
import { Netback, type NetbackOptions } from './netback.js';
import type { Vif } from './vif.js';
import { DEFAULT_BACKEND_FEATURES } from '../netif/params.js';
import { parseFrontendNodes, parseRateNode, vifParamsFromNodes } from './negotiate.js';

const MAC = ['00:16:3e:00:00:01', '00:16:3e:00:00:02', '00:16:3e:00:00:03'];

function frame(dst: string, src: string, len: number, fill = 0x41): Uint8Array {
  const f = new Uint8Array(len).fill(fill);
  f.set(parseMacBytes(dst), 0);
  f.set(parseMacBytes(src), 6);
  f[12] = 0x08;
  f[13] = 0x00;
  for (let i = 14; i < len; i++) f[i] = (i * 7 + fill) & 0xff;
  return f;
}

const settle = async (ms = 5) => {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  await new Promise((r) => setTimeout(r, ms));
};

interface Guest {
  dom: FakeDomain;
  nf: Netfront;
  vif: Vif;
  got: { data: Uint8Array; meta: PacketMeta }[];
}

class Rig {
  hv = new FakeXen();
  back: FakeDomain;
  nb: Netback;
  constructor(opts: NetbackOptions = {}) {
    this.back = this.hv.domain(1, 2048);
    this.nb = new Netback(this.back, { stagingPages: 64, backlogPages: 8, backlogFrames: 16, ...opts });
  }
  async guest(domid: number, mac: string, o: { queues?: number; rate?: { bytesPerInterval: number; intervalUsec: number } } = {}): Promise<Guest> {
    const dom = this.hv.domain(domid, 2048);
    const nf = await Netfront.create(dom, { backendDomid: 1, mac, queues: o.queues, txBuffers: 8 });
    const info = nf.connectInfo;
    const vif = await this.nb.connect({ frontendDomid: domid, name: `vif${domid}.0`, mac, queues: info.queues, features: info.features, rate: o.rate ?? null });
    const got: Guest['got'] = [];
    nf.onFrame((buf, off, len, meta) => got.push({ data: buf.slice(off, off + len), meta: { ...meta } }));
    return { dom, nf, vif, got };
  }
}

let rig: Rig | null = null;
afterEach(async () => {
  await rig?.nb.close();
  rig?.hv.close();
  rig = null;
});


describe('netback + switch + netfront (in-process hv stand-in)', () => {
  it('switches a unicast frame between two vifs, bytes intact', async () => {
    rig = new Rig();
    const a = await rig.guest(2, MAC[0]);
    const b = await rig.guest(3, MAC[1]);
    const f = frame(MAC[1], MAC[0], 1514);
    expect(a.nf.send(f)).toBe(true);
    await waitFor(() => b.got.length === 1);
    expect(b.got[0].data).toEqual(f);
    expect(a.got.length).toBe(0);
    expect(a.vif.vstats.txPackets).toBe(1);
    expect(b.vif.vstats.rxPackets).toBe(1);
    await waitFor(() => a.nf.txFree === 8);
  });

  it('carries a 64 KiB GSO frame over many slots with its GSO extra and checksum flags', async () => {
    rig = new Rig();
    const a = await rig.guest(2, MAC[0]);
    const b = await rig.guest(3, MAC[1]);
    const f = frame(MAC[1], MAC[0], 65535, 7);
    const meta = newPacketMeta();
    meta.csumBlank = true;
    meta.dataValidated = true;
    meta.gsoType = XEN_NETIF_GSO_TYPE_TCPV4;
    meta.gsoSize = 1448;
    expect(a.nf.send(f, meta)).toBe(true);
    await waitFor(() => b.got.length === 1);
    expect(b.got[0].data).toEqual(f);
    expect(b.got[0].meta).toMatchObject({ csumBlank: true, gsoType: XEN_NETIF_GSO_TYPE_TCPV4, gsoSize: 1448 });
  });

  it('floods broadcast, learns nothing from vifs, and drops and counts a forged source MAC', async () => {
    rig = new Rig();
    const a = await rig.guest(2, MAC[0]);
    const b = await rig.guest(3, MAC[1]);
    const c = await rig.guest(4, MAC[2]);
    a.nf.send(frame('ff:ff:ff:ff:ff:ff', MAC[0], 60));
    await waitFor(() => b.got.length === 1 && c.got.length === 1);
    a.nf.send(frame(MAC[1], '00:16:3e:66:66:66', 60));
    a.nf.send(frame(MAC[1], MAC[2], 60));
    b.nf.send(frame(MAC[2], MAC[1], 100));
    await waitFor(() => c.got.length === 2);
    expect(a.vif.stats.spoofDrops).toBe(2);
    expect(b.got.length).toBe(1);
    expect(a.vif.dead).toBe(false);
  });

  it('rate-limits a vif by credit and still delivers everything', async () => {
    rig = new Rig();
    const a = await rig.guest(2, MAC[0], { rate: { bytesPerInterval: 3000, intervalUsec: 5000 } });
    const b = await rig.guest(3, MAC[1]);
    for (let i = 0; i < 6; i++) a.nf.send(frame(MAC[1], MAC[0], 1500, i));
    await waitFor(() => b.got.length === 6);
    expect(a.vif.vstats.txRateLimited).toBeGreaterThan(0);
  });

  it('spreads flows over multiple queues with split event channels', async () => {
    rig = new Rig();
    const a = await rig.guest(2, MAC[0], { queues: 4 });
    const b = await rig.guest(3, MAC[1], { queues: 4 });
    expect(a.vif.queues.length).toBe(4);
    expect(a.vif.queues[0].split).toBe(true);
    for (let i = 0; i < 40; i++) {
      const f = frame(MAC[1], MAC[0], 200, i);
      // IPv4 + UDP with varying ports so flows hash apart
      f.set([0x45, 0, 0, 186, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2], 14);
      f.set([i, 1, 0, 53, 0, 166, 0, 0], 34);
      expect(a.nf.send(f)).toBe(true);
      if (a.nf.txFree === 0) await waitFor(() => a.nf.txFree > 0);
    }
    await waitFor(() => b.got.length === 40);
    expect(b.nf.queues.filter((q) => q.rx.rspCons > 0).length).toBeGreaterThan(1);
  });

  it('reconnects a frontend after its vif went away', async () => {
    rig = new Rig();
    const a = await rig.guest(2, MAC[0]);
    const b = await rig.guest(3, MAC[1]);
    await rig.nb.disconnect(a.vif);
    const info = await a.nf.reconnect();
    a.vif = await rig.nb.connect({ frontendDomid: 2, name: 'vif2.0', mac: MAC[0], queues: info.queues, features: info.features, rate: null });
    a.nf.send(frame(MAC[1], MAC[0], 300));
    await waitFor(() => b.got.length === 1);
  });
});

describe('netback against hostile frontends: the offender is cut off, the others go on', () => {
  async function setup() {
    rig = new Rig();
    const bad = await rig.guest(2, MAC[0]);
    const a = await rig.guest(3, MAC[1]);
    const b = await rig.guest(4, MAC[2]);
    return { bad, a, b };
  }

  async function stillFlows(a: Guest, b: Guest): Promise<void> {
    const n = b.got.length;
    a.nf.send(frame(MAC[2], MAC[1], 1000));
    await waitFor(() => b.got.length === n + 1);
  }

  /** writes raw tx requests into the bad guest's tx ring and notifies */
  function rawTx(g: Guest, reqs: { gref: number; offset: number; flags: number; id: number; size: number; extraGso?: boolean }[]): void {
    const ring = g.nf.queues[0].tx;
    for (const r of reqs) {
      if (r.extraGso) netifExtraInfo.writeGso(ring.view, ring.produceRequest(), 0, 1448, XEN_NETIF_GSO_TYPE_TCPV4, 0);
      else netifTxRequest.write(ring.view, ring.produceRequest(), r.gref, r.offset, r.flags, r.id, r.size);
    }
    ring.pushRequests();
    g.dom.evtchn.notify(g.nf.queues[0].portTx);
  }

  function txGref(g: Guest): number {
    const gfn = g.dom.frames.alloc();
    return g.dom.grants.grantAccess(1, gfn, true);
  }

  it('PROD_OVERFLOW: a req_prod far ahead halts the vif', async () => {
    const { bad, a, b } = await setup();
    const ring = bad.nf.queues[0].tx;
    ring.view.setUint32(SRING_REQ_PROD, 300, true);
    bad.dom.evtchn.notify(bad.nf.queues[0].portTx);
    await waitFor(() => bad.vif.dead);
    expect(bad.vif.fatalReason).toMatch(/bogus ring requests/);
    await stillFlows(a, b);
  });

  it('a zero-length fragment (XSA-448)', async () => {
    const { bad, a, b } = await setup();
    const g = txGref(bad);
    rawTx(bad, [{ gref: g, offset: 0, flags: NETTXF_more_data, id: 0, size: 100 }, { gref: g, offset: 0, flags: 0, id: 1, size: 0 }]);
    await waitFor(() => bad.vif.dead);
    expect(bad.vif.fatalReason).toMatch(/zero-length fragment/);
    await stillFlows(a, b);
  });

  it('an oversize fragment that crosses its page', async () => {
    const { bad, a, b } = await setup();
    const g = txGref(bad);
    rawTx(bad, [{ gref: g, offset: 4000, flags: 0, id: 0, size: 1000 }]);
    await waitFor(() => bad.vif.dead);
    expect(bad.vif.fatalReason).toMatch(/crosses its page/);
    await stillFlows(a, b);
  });

  it('a first slot smaller than the fragments after it', async () => {
    const { bad, a, b } = await setup();
    const g = txGref(bad);
    rawTx(bad, [{ gref: g, offset: 0, flags: NETTXF_more_data, id: 0, size: 100 }, { gref: g, offset: 0, flags: 0, id: 1, size: 2000 }]);
    await waitFor(() => bad.vif.dead);
    expect(bad.vif.fatalReason).toMatch(/more than the packet size/);
    await stillFlows(a, b);
  });

  it('too many slots: 19 is answered with an error, 21 cuts the vif off', async () => {
    const { bad, a, b } = await setup();
    const g = txGref(bad);
    const chain = (n: number, id0: number) =>
      Array.from({ length: n }, (_, i) => ({ gref: g, offset: 0, flags: i < n - 1 ? NETTXF_more_data : 0, id: id0 + i, size: i === 0 ? n * 100 : 100 }));
    rawTx(bad, chain(19, 0));
    await waitFor(() => bad.vif.vstats.txErrors === 1);
    expect(bad.vif.dead).toBe(false);
    rawTx(bad, chain(21, 19));
    await waitFor(() => bad.vif.dead);
    expect(bad.vif.fatalReason).toMatch(/more than 20 slots/);
    await stillFlows(a, b);
  });

  it('a bad gref', async () => {
    const { bad, a, b } = await setup();
    rawTx(bad, [{ gref: 4000, offset: 0, flags: 0, id: 0, size: 100 }]);
    await waitFor(() => bad.vif.dead);
    expect(bad.vif.fatalReason).toMatch(/GNTST_permission_denied/);
    await stillFlows(a, b);
  });

  it('a bad GSO extra', async () => {
    const { bad, a, b } = await setup();
    const g = txGref(bad);
    const ring = bad.nf.queues[0].tx;
    netifTxRequest.write(ring.view, ring.produceRequest(), g, 0, NETTXF_extra_info, 0, 100);
    ring.view.setUint32(ring.produceRequest(), 0x0001_0001 | (0 << 16), true); // GSO extra, size 0
    ring.pushRequests();
    bad.dom.evtchn.notify(bad.nf.queues[0].portTx);
    await waitFor(() => bad.vif.dead);
    expect(bad.vif.fatalReason).toMatch(/GSO/);
    await stillFlows(a, b);
  });

  it('a frontend that never posts rx buffers: bounded backlog, drops counted, stall flushes (XSA-392)', async () => {
    rig = new Rig({ rxStallMs: 150, rxDrainMs: 10_000 });
    const a = await rig.guest(3, MAC[1]);
    const b = await rig.guest(4, MAC[2]);
    const starving = await rig.guest(2, MAC[0]);
    // take back every posted rx buffer: the backend sees none
    const rx = starving.nf.queues[0].rx;
    rx.view.setUint32(SRING_REQ_PROD, 0, true);
    (starving.nf.queues[0] as unknown as { pollRx: () => void }).pollRx = () => {};
    // the vif was connected with 256 posted: it consumes them first, then starves
    for (let i = 0; i < 400; i++) {
      a.nf.send(frame(MAC[0], MAC[1], 1000, i & 0xff));
      if (a.nf.txFree === 0) await waitFor(() => a.nf.txFree > 0);
    }
    await waitFor(() => starving.vif.vstats.rxQueueDrops > 0 || starving.vif.vstats.rxStalls > 0);
    await waitFor(() => starving.vif.vstats.rxStalls > 0);
    expect(starving.vif.queues[0].backlog.count).toBe(0);
    await stillFlows(a, b);
  });

  it('multi-queue-num-queues = 0 or too large is refused at connect, and by the node parser', async () => {
    rig = new Rig();
    const g = await rig.guest(3, MAC[1]);
    await expect(rig.nb.connect({ frontendDomid: 2, name: 'vif2.0', mac: MAC[0], queues: [], features: g.nf.connectInfo.features, rate: null })).rejects.toThrow(/0 queues/);
    const many = Array.from({ length: 9 }, () => g.nf.connectInfo.queues[0]);
    await expect(rig.nb.connect({ frontendDomid: 2, name: 'vif2.0', mac: MAC[0], queues: many, features: g.nf.connectInfo.features, rate: null })).rejects.toThrow(/9 queues/);
    const nodes = (m: Record<string, string>) => (k: string) => m[k];
    const base = { 'request-rx-copy': '1', 'tx-ring-ref': '8', 'rx-ring-ref': '9', 'event-channel': '3' };
    expect(parseFrontendNodes(nodes({ ...base, 'multi-queue-num-queues': '0' }), DEFAULT_BACKEND_FEATURES)).toMatchObject({ ok: false, error: /= 0/ });
    expect(parseFrontendNodes(nodes({ ...base, 'multi-queue-num-queues': '9' }), DEFAULT_BACKEND_FEATURES)).toMatchObject({ ok: false, error: /exceeds/ });
    expect(parseFrontendNodes(nodes({ ...base, 'multi-queue-num-queues': 'x' }), DEFAULT_BACKEND_FEATURES).ok).toBe(false);
    expect(parseFrontendNodes(nodes({ ...base, 'request-rx-copy': '0' }), DEFAULT_BACKEND_FEATURES)).toMatchObject({ ok: false, error: /rx-copy/ });
    expect(parseFrontendNodes(nodes(base), DEFAULT_BACKEND_FEATURES)).toMatchObject({ ok: true, value: { queues: [{ txRingRef: 8, rxRingRef: 9, evtchnTx: 3, evtchnRx: 3 }] } });
    const two = {
      'request-rx-copy': '1', 'multi-queue-num-queues': '2', 'feature-sg': '1', 'feature-gso-tcpv4': '1',
      'queue-0/tx-ring-ref': '8', 'queue-0/rx-ring-ref': '9', 'queue-0/event-channel-tx': '3', 'queue-0/event-channel-rx': '4',
      'queue-1/tx-ring-ref': '10', 'queue-1/rx-ring-ref': '11', 'queue-1/event-channel-tx': '5', 'queue-1/event-channel-rx': '6',
    };
    const r = parseFrontendNodes(nodes(two), DEFAULT_BACKEND_FEATURES);
    expect(r.ok && r.value.queues[1]).toEqual({ txRingRef: 10, rxRingRef: 11, evtchnTx: 5, evtchnRx: 6 });
    expect(r.ok && r.value.features).toMatchObject({ sg: true, gsoTcpv4: true, gsoTcpv6: false });
    expect(parseRateNode('1250000,50000')).toEqual({ ok: true, value: { bytesPerInterval: 1250000, intervalUsec: 50000 } });
    expect(parseRateNode('lots').ok).toBe(false);
    expect(vifParamsFromNodes(5, 0, nodes(base), nodes({ mac: '01:00:00:00:00:01' }), DEFAULT_BACKEND_FEATURES)).toMatchObject({ ok: false, error: /multicast/ });
    await stillFlowsPair(g);
  });
});

async function stillFlowsPair(g: Guest): Promise<void> {
  expect(g.vif.dead).toBe(false);
}
