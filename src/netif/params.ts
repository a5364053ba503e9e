// What a netfront and a netback agree on, as plain values: the XenBus layer reads or writes
// these from xenstore (src/netback/negotiate.ts, src/netfront/nodes.ts), the cores take them as
// arguments, so both cores run and are tested without a xenstore.

/** Linux netback's max_queues default: the most queues we offer */
export const NETBACK_MAX_QUEUES = 8;

export interface NetifQueueParams {
  txRingRef: number;
  rxRingRef: number;
  /** event channel for tx (and rx too unless split) in the frontend's port space */
  evtchnTx: number;
  /** equal to evtchnTx when the channels are not split */
  evtchnRx: number;
}

/** what the frontend asked for (its feature-* keys) */
export interface NetifFrontendFeatures {
  sg: boolean;
  gsoTcpv4: boolean;
  gsoTcpv6: boolean;
  /** frontend notifies when it posts rx buffers (feature-rx-notify) */
  rxNotify: boolean;
  /** !feature-no-csum-offload: the frontend takes blank IPv4 checksums */
  csumOffload: boolean;
  ipv6CsumOffload: boolean;
}

/** what the backend offers (its feature-* keys) */
export interface NetifBackendFeatures {
  sg: boolean;
  gsoTcpv4: boolean;
  gsoTcpv6: boolean;
  ipv6CsumOffload: boolean;
  splitEventChannels: boolean;
  maxQueues: number;
}

export const DEFAULT_BACKEND_FEATURES: Readonly<NetifBackendFeatures> = Object.freeze({
  sg: true,
  gsoTcpv4: true,
  gsoTcpv6: true,
  ipv6CsumOffload: true,
  splitEventChannels: true,
  maxQueues: NETBACK_MAX_QUEUES,
});

/** netback's `rate` node: credit bytes per interval */
export interface NetifRate {
  bytesPerInterval: number;
  intervalUsec: number;
}

/** everything a netback needs to connect one vif */
export interface VifConnectParams {
  frontendDomid: number;
  /** backend-side name, e.g. vif5.0 */
  name: string;
  /** the vif's MAC (`mac` node): frames sourced from any other address are dropped */
  mac: string;
  queues: NetifQueueParams[];
  features: NetifFrontendFeatures;
  rate: NetifRate | null;
}

export const DEFAULT_FRONTEND_FEATURES: Readonly<NetifFrontendFeatures> = Object.freeze({
  sg: true,
  gsoTcpv4: true,
  gsoTcpv6: true,
  rxNotify: true,
  csumOffload: true,
  ipv6CsumOffload: true,
});
