import { afterEach, describe, expect, it } from 'vitest';
import { NETRXF_more_data, netifRxResponse } from '../abi/netif.js';
import { SRING_RSP_PROD } from '../abi/sring.js';
import { FakeXen } from '../domain/testing/fake-xen.js';
import { Netfront } from './netfront.js';
import { frontendNodes, parseBackendNodes } from './nodes.js';
import { parseFrontendNodes } from '../netback/negotiate.js';
import { DEFAULT_BACKEND_FEATURES } from '../netif/params.js';
import { backendFeatureNodes } from '../netback/negotiate.js';

const xens: FakeXen[] = [];
afterEach(() => {
  for (const x of xens.splice(0)) x.close();
});

async function front(queues = 1) {
  const hv = new FakeXen();
  xens.push(hv);
  hv.domain(1, 16);
  const dom = hv.domain(2, 2048);
  const nf = await Netfront.create(dom, { backendDomid: 1, mac: '00:16:3e:00:00:01', queues, txBuffers: 4 });
  const faults: string[] = [];
  nf.onFault((r) => faults.push(r));
  return { hv, dom, nf, faults };
}

describe('netfront', () => {
  it('writes the keys netback reads, and reads back what netback offers', async () => {
    const { nf } = await front(2);
    const nodes = new Map(frontendNodes(nf.connectInfo));
    expect(nodes.get('multi-queue-num-queues')).toBe('2');
    expect(nodes.has('queue-1/event-channel-rx')).toBe(true);
    const parsed = parseFrontendNodes((k) => nodes.get(k), DEFAULT_BACKEND_FEATURES);
    expect(parsed.ok && parsed.value.queues).toEqual(nf.connectInfo.queues);
    const offer = new Map(backendFeatureNodes(DEFAULT_BACKEND_FEATURES));
    expect(parseBackendNodes((k) => offer.get(k))).toEqual(DEFAULT_BACKEND_FEATURES);
    expect(parseBackendNodes(() => 'garbage')).toMatchObject({ sg: false, maxQueues: 1 });
  });

  it('posts one rx buffer per slot and refuses frames it cannot send', async () => {
    const { nf } = await front();
    expect(nf.queues[0].rx.reqProd).toBe(256);
    expect(nf.send(new Uint8Array(10))).toBe(false);
    expect(nf.stats.txDropped).toBe(1);
    expect(nf.txFree).toBe(4);
  });

  it('treats a hostile backend as a fault: bogus rsp_prod, wrong rx ids, lengths past the page', async () => {
    for (const hostile of ['rsp-prod', 'rx-id', 'rx-len', 'tx-id'] as const) {
      const { nf, faults } = await front();
      const q = nf.queues[0];
      if (hostile === 'rsp-prod') {
        q.rx.view.setUint32(SRING_RSP_PROD, 1000, true);
      } else if (hostile === 'rx-id') {
        netifRxResponse.write(q.rx.view, 64, 7, 0, 0, 100);
        q.rx.view.setUint32(SRING_RSP_PROD, 1, true);
      } else if (hostile === 'rx-len') {
        netifRxResponse.write(q.rx.view, 64, 0, 4000, NETRXF_more_data, 200);
        q.rx.view.setUint32(SRING_RSP_PROD, 1, true);
      } else {
        nf.send(new Uint8Array(100).fill(1));
        q.tx.view.setUint32(64, 0x0000_0005, true); // response for id 5, never used
        q.tx.view.setUint32(SRING_RSP_PROD, 1, true);
        q.pollTx();
      }
      q.pollRx();
      expect(faults.length, hostile).toBe(1);
      expect(nf.faultReason).not.toBeNull();
      expect(nf.send(new Uint8Array(100))).toBe(false);
    }
  });
});
