// The frontend's half of netif negotiation as pure functions: what netfront writes under its
// device directory (in one transaction, before going Connected), and how it reads the backend's
// offer. The backend's values are not trusted: unknown or malformed means "not offered".
import { NETBACK_MAX_QUEUES, type NetifBackendFeatures } from '../netif/params.js';
import type { NetfrontConnectInfo } from './netfront.js';

export type NodeReader = (key: string) => string | undefined;

function on(read: NodeReader, key: string): boolean {
  const v = read(key);
  return v !== undefined && /^[0-9]{1,3}$/.test(v) && Number(v) !== 0;
}

/** What the backend offers (read from its directory once it is in InitWait). */
export function parseBackendNodes(read: NodeReader): NetifBackendFeatures {
  const mq = read('multi-queue-max-queues');
  const maxQueues = mq !== undefined && /^[1-9][0-9]{0,2}$/.test(mq) ? Math.min(Number(mq), NETBACK_MAX_QUEUES) : 1;
  return {
    sg: on(read, 'feature-sg'),
    gsoTcpv4: on(read, 'feature-gso-tcpv4'),
    gsoTcpv6: on(read, 'feature-gso-tcpv6'),
    ipv6CsumOffload: on(read, 'feature-ipv6-csum-offload'),
    splitEventChannels: on(read, 'feature-split-event-channels'),
    maxQueues,
  };
}

/**
 * The keys (relative to device/vif/N) netfront writes: ring refs and event channels at the top
 * level for one queue or under queue-N/ for several (as Linux does), then the features.
 */
export function frontendNodes(info: NetfrontConnectInfo): [string, string][] {
  const out: [string, string][] = [];
  const multi = info.queues.length > 1;
  if (multi) out.push(['multi-queue-num-queues', String(info.queues.length)]);
  info.queues.forEach((q, i) => {
    const dir = multi ? `queue-${i}/` : '';
    out.push([`${dir}tx-ring-ref`, String(q.txRingRef)], [`${dir}rx-ring-ref`, String(q.rxRingRef)]);
    if (q.evtchnTx === q.evtchnRx) out.push([`${dir}event-channel`, String(q.evtchnTx)]);
    else out.push([`${dir}event-channel-tx`, String(q.evtchnTx)], [`${dir}event-channel-rx`, String(q.evtchnRx)]);
  });
  const b = (v: boolean) => (v ? '1' : '0');
  const f = info.features;
  out.push(
    ['request-rx-copy', '1'],
    ['feature-rx-notify', b(f.rxNotify)],
    ['feature-sg', b(f.sg)],
    ['feature-gso-tcpv4', b(f.gsoTcpv4)],
    ['feature-gso-tcpv6', b(f.gsoTcpv6)],
    ['feature-no-csum-offload', b(!f.csumOffload)],
    ['feature-ipv6-csum-offload', b(f.ipv6CsumOffload)],
  );
  return out;
}
