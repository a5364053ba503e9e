// The backend's half of netif feature negotiation as pure functions over xenstore values, so the
// XenBus glue only reads keys and writes keys. Every value read here was written by the guest:
// parsed strictly, bounded, and refused with a reason that names the key.
import { DOMID_MAX } from '../abi/grant.js';
import { parseMac } from '../packet/mac.js';
import {
  NETBACK_MAX_QUEUES, type NetifBackendFeatures, type NetifFrontendFeatures, type NetifQueueParams, type NetifRate,
  type VifConnectParams,
} from '../netif/params.js';

/** reads one key relative to the frontend's device directory (e.g. "queue-1/tx-ring-ref"); undefined if absent */
export type NodeReader = (key: string) => string | undefined;

export type Negotiated<T> = { ok: true; value: T } | { ok: false; error: string };

/** The keys netback publishes in its backend directory before going to InitWait. */
export function backendFeatureNodes(f: NetifBackendFeatures): [string, string][] {
  const b = (v: boolean) => (v ? '1' : '0');
  return [
    ['feature-sg', b(f.sg)],
    ['feature-gso-tcpv4', b(f.gsoTcpv4)],
    ['feature-gso-tcpv6', b(f.gsoTcpv6)],
    ['feature-ipv6-csum-offload', b(f.ipv6CsumOffload)],
    ['feature-rx-copy', '1'],
    ['feature-rx-flip', '0'],
    ['feature-multicast-control', '0'],
    ['feature-split-event-channels', b(f.splitEventChannels)],
    ['multi-queue-max-queues', String(f.maxQueues)],
    ['feature-ctrl-ring', '0'],
  ];
}

function uintNode(read: NodeReader, key: string, max: number, required: true): number | string;
function uintNode(read: NodeReader, key: string, max: number, required: false): number | undefined | string;
function uintNode(read: NodeReader, key: string, max: number, required: boolean): number | undefined | string {
  const v = read(key);
  if (v === undefined) return required ? `missing ${key}` : undefined;
  if (!/^(0|[1-9][0-9]{0,9})$/.test(v) || Number(v) > max) return `${key} = ${JSON.stringify(v.slice(0, 24))} is not a number from 0 to ${max}`;
  return Number(v);
}

function flag(read: NodeReader, key: string): boolean {
  const v = read(key);
  // Linux reads these with %d and treats anything non-zero as on; we accept only the digits.
  return v !== undefined && /^[0-9]{1,3}$/.test(v) && Number(v) !== 0;
}

/**
 * Reads what the frontend wrote when it went to Initialised/Connected and checks it against what
 * we offered: queue count (0 or more than offered is refused, CVE-2026-45890), ring refs and
 * event channels per queue, request-rx-copy (page flipping is not supported), features.
 */
export function parseFrontendNodes(read: NodeReader, offered: NetifBackendFeatures): Negotiated<{ queues: NetifQueueParams[]; features: NetifFrontendFeatures }> {
  const fail = (error: string) => ({ ok: false as const, error });
  let nq = 1;
  const q = uintNode(read, 'multi-queue-num-queues', 0xffffffff, false);
  if (typeof q === 'string') return fail(q);
  if (q !== undefined) {
    if (q === 0) return fail('multi-queue-num-queues = 0: a vif needs at least one queue');
    if (q > offered.maxQueues) return fail(`multi-queue-num-queues = ${q} exceeds multi-queue-max-queues = ${offered.maxQueues}`);
    nq = q;
  }
  const rxCopy = read('request-rx-copy');
  if (rxCopy === undefined || !flag(read, 'request-rx-copy')) return fail(`request-rx-copy = ${rxCopy === undefined ? '(missing)' : JSON.stringify(rxCopy.slice(0, 8))}: only rx-copy is supported (no page flipping)`);
  const queues: NetifQueueParams[] = [];
  for (let i = 0; i < nq; i++) {
    const dir = nq === 1 ? '' : `queue-${i}/`;
    const tx = uintNode(read, `${dir}tx-ring-ref`, 0xffffffff, true);
    if (typeof tx === 'string') return fail(tx);
    const rx = uintNode(read, `${dir}rx-ring-ref`, 0xffffffff, true);
    if (typeof rx === 'string') return fail(rx);
    const single = uintNode(read, `${dir}event-channel`, 0xffffffff, false);
    if (typeof single === 'string') return fail(single);
    let evtTx: number;
    let evtRx: number;
    if (single !== undefined) {
      evtTx = evtRx = single;
    } else {
      if (!offered.splitEventChannels) return fail(`missing ${dir}event-channel (split event channels were not offered)`);
      const t = uintNode(read, `${dir}event-channel-tx`, 0xffffffff, true);
      if (typeof t === 'string') return fail(t);
      const r = uintNode(read, `${dir}event-channel-rx`, 0xffffffff, true);
      if (typeof r === 'string') return fail(r);
      evtTx = t;
      evtRx = r;
    }
    if (evtTx === 0 || evtRx === 0) return fail(`${dir}event channel port 0 is never valid`);
    queues.push({ txRingRef: tx, rxRingRef: rx, evtchnTx: evtTx, evtchnRx: evtRx });
  }
  const features: NetifFrontendFeatures = {
    sg: flag(read, 'feature-sg') && offered.sg,
    gsoTcpv4: flag(read, 'feature-gso-tcpv4') && offered.gsoTcpv4,
    gsoTcpv6: flag(read, 'feature-gso-tcpv6') && offered.gsoTcpv6,
    rxNotify: flag(read, 'feature-rx-notify'),
    csumOffload: !flag(read, 'feature-no-csum-offload'),
    ipv6CsumOffload: flag(read, 'feature-ipv6-csum-offload'),
  };
  // GSO frames span pages: a frontend without scatter-gather cannot receive them.
  if (!features.sg) {
    features.gsoTcpv4 = false;
    features.gsoTcpv6 = false;
  }
  return { ok: true, value: { queues, features } };
}

/** netback's `rate` node as the toolstack writes it: "BYTES,USEC"; absent or empty = unlimited */
export function parseRateNode(v: string | undefined): Negotiated<NetifRate | null> {
  if (v === undefined || v === '') return { ok: true, value: null };
  const m = /^([1-9][0-9]{0,15}),([1-9][0-9]{0,9})$/.exec(v);
  if (!m || Number(m[2]) > 0xffffffff) return { ok: false, error: `rate = ${JSON.stringify(v.slice(0, 40))} is not BYTES,USEC` };
  return { ok: true, value: { bytesPerInterval: Number(m[1]), intervalUsec: Number(m[2]) } };
}

export function parseMacNode(v: string | undefined): Negotiated<string> {
  if (v === undefined) return { ok: false, error: 'missing mac' };
  const mac = parseMac(v);
  return typeof mac === 'string' ? { ok: true, value: mac } : { ok: false, error: `mac node: ${mac.error}` };
}

/**
 * Everything needed to connect a vif from its frontend's and its own backend directory: the
 * XenBus glue calls this once the frontend is Connected (and hotplug-status is "connected").
 */
export function vifParamsFromNodes(
  frontendDomid: number, devid: number, readFront: NodeReader, readBack: NodeReader, offered: NetifBackendFeatures,
): Negotiated<VifConnectParams> {
  if (!Number.isInteger(frontendDomid) || frontendDomid < 0 || frontendDomid > DOMID_MAX) return { ok: false, error: `bad frontend domid ${frontendDomid}` };
  const fr = parseFrontendNodes(readFront, offered);
  if (!fr.ok) return fr;
  const mac = parseMacNode(readBack('mac'));
  if (!mac.ok) return mac;
  const rate = parseRateNode(readBack('rate'));
  if (!rate.ok) return rate;
  return {
    ok: true,
    value: { frontendDomid, name: `vif${frontendDomid}.${devid}`, mac: mac.value, queues: fr.value.queues, features: fr.value.features, rate: rate.value },
  };
}

export { NETBACK_MAX_QUEUES };
