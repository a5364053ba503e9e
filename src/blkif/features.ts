// What the two ends of a vbd tell each other through xenstore (the XenBus nodes documented in
// xen/include/public/io/blkif.h), as typed values. The XenBus glue moves these records through
// xenstore with the helpers below; the ring code only ever sees the parsed, range-checked form, so a
// hostile peer's strings stop here.
import { BLKIF_MAX_SEGMENTS_PER_REQUEST, VDISK_READONLY, XEN_IO_PROTO_ABI_X86_64 } from '../abi/blkif.js';
import { MAX_RING_PAGE_ORDER } from '../abi/sring.js';

/** Linux blkback's cap, and what our frontend asks for: 256 segments = 1 MiB per request. */
export const BLKBACK_MAX_INDIRECT_SEGMENTS = 256;
/** Linux blkback's default max_persistent_grants per ring. */
export const BLKBACK_MAX_PERSISTENT_GRANTS = 1056;
export const BLKIF_MAX_QUEUES = 16;

export interface DiscardFeature {
  /** bytes; discards should be multiples of this */
  granularity: number;
  /** bytes; offset of the first granule */
  alignment: number;
  secure: boolean;
}

/** Written by the backend before InitWait. */
export interface BlkbackFeatures {
  flushCache: boolean;
  barrier: boolean;
  discard: DiscardFeature | null;
  persistent: boolean;
  /** 0: no indirect descriptors */
  maxIndirectSegments: number;
  maxRingPageOrder: number;
  maxQueues: number;
}

/** One queue's ring and event channel as the frontend publishes them. */
export interface BlkfrontQueueInfo {
  ringRefs: number[];
  eventChannel: number;
}

/** Written by the frontend before Initialised. */
export interface BlkfrontConnectInfo {
  ringPageOrder: number;
  queues: BlkfrontQueueInfo[];
  protocol: string;
  persistent: boolean;
}

/** Written by the backend before Connected. */
export interface BlkbackConnectInfo {
  /** in 512-byte units, whatever the sector size */
  sectors: number;
  sectorSize: number;
  physicalSectorSize: number;
  /** VDISK_* flags */
  info: number;
}

export class BlkifNegotiationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BlkifNegotiationError';
  }
}

/** xenstore keys the backend writes in its directory for the features */
export function blkbackFeatureKeys(f: BlkbackFeatures): Record<string, string> {
  const k: Record<string, string> = {
    'feature-flush-cache': f.flushCache ? '1' : '0',
    'feature-barrier': f.barrier ? '1' : '0',
    'feature-persistent': f.persistent ? '1' : '0',
    'feature-discard': f.discard ? '1' : '0',
    'max-ring-page-order': String(f.maxRingPageOrder),
    'multi-queue-max-queues': String(f.maxQueues),
  };
  if (f.maxIndirectSegments > 0) k['feature-max-indirect-segments'] = String(f.maxIndirectSegments);
  if (f.discard) {
    k['discard-granularity'] = String(f.discard.granularity);
    k['discard-alignment'] = String(f.discard.alignment);
    k['discard-secure'] = f.discard.secure ? '1' : '0';
  }
  return k;
}

export function blkbackConnectKeys(c: BlkbackConnectInfo): Record<string, string> {
  return {
    sectors: String(c.sectors),
    'sector-size': String(c.sectorSize),
    'physical-sector-size': String(c.physicalSectorSize),
    info: String(c.info),
  };
}

type Read = (key: string) => string | null | undefined;

/** A decimal u32/u53 from a peer, or `dflt` when absent; anything else is refused. */
function num(read: Read, key: string, dflt: number, max: number): number {
  const v = read(key);
  if (v === null || v === undefined || v === '') return dflt;
  if (!/^[0-9]{1,16}$/.test(v)) throw new BlkifNegotiationError(`${key} = ${JSON.stringify(v.slice(0, 32))} is not a number`);
  const n = Number(v);
  if (n > max) throw new BlkifNegotiationError(`${key} = ${n} exceeds ${max}`);
  return n;
}
const flag = (read: Read, key: string) => num(read, key, 0, 0xffffffff) !== 0;

/** The frontend's view of the backend's features. Unknown or absent keys mean "not offered". */
export function parseBlkbackFeatures(read: Read): BlkbackFeatures {
  const discard = flag(read, 'feature-discard');
  return {
    flushCache: flag(read, 'feature-flush-cache'),
    barrier: flag(read, 'feature-barrier'),
    persistent: flag(read, 'feature-persistent'),
    discard: discard
      ? {
          granularity: num(read, 'discard-granularity', 512, 0xffffffff),
          alignment: num(read, 'discard-alignment', 0, 0xffffffff),
          secure: flag(read, 'discard-secure'),
        }
      : null,
    maxIndirectSegments: num(read, 'feature-max-indirect-segments', 0, 0xffffffff),
    maxRingPageOrder: num(read, 'max-ring-page-order', 0, 0xffffffff),
    maxQueues: Math.max(1, num(read, 'multi-queue-max-queues', 1, 0xffffffff)),
  };
}

export function parseBlkbackConnect(read: Read): BlkbackConnectInfo {
  const sectors = num(read, 'sectors', -1, Number.MAX_SAFE_INTEGER);
  if (sectors < 0) throw new BlkifNegotiationError('backend wrote no sectors');
  const sectorSize = num(read, 'sector-size', 512, 1 << 20);
  if (sectorSize < 512 || (sectorSize & (sectorSize - 1)) !== 0) throw new BlkifNegotiationError(`sector-size ${sectorSize} is not a power of two >= 512`);
  const physicalSectorSize = num(read, 'physical-sector-size', sectorSize, 1 << 20);
  return { sectors, sectorSize, physicalSectorSize, info: num(read, 'info', 0, 0xffffffff) };
}

/** xenstore keys the frontend writes (queue keys under queue-N/ when there is more than one). */
export function blkfrontConnectKeys(c: BlkfrontConnectInfo): Record<string, string> {
  const k: Record<string, string> = {
    protocol: c.protocol,
    'feature-persistent': c.persistent ? '1' : '0',
  };
  if (c.ringPageOrder > 0) k['ring-page-order'] = String(c.ringPageOrder);
  if (c.queues.length > 1) k['multi-queue-num-queues'] = String(c.queues.length);
  c.queues.forEach((q, i) => {
    const pre = c.queues.length > 1 ? `queue-${i}/` : '';
    if (c.ringPageOrder === 0) k[`${pre}ring-ref`] = String(q.ringRefs[0]);
    else q.ringRefs.forEach((r, j) => (k[`${pre}ring-ref${j}`] = String(r)));
    k[`${pre}event-channel`] = String(q.eventChannel);
  });
  return k;
}

/**
 * The backend's view of what the frontend published, checked against what the backend offered.
 * Everything here came from a domain we do not trust.
 */
export function parseBlkfrontConnect(read: Read, offered: BlkbackFeatures): BlkfrontConnectInfo {
  const protocol = read('protocol') ?? '';
  if (protocol !== '' && protocol !== XEN_IO_PROTO_ABI_X86_64) {
    throw new BlkifNegotiationError(`protocol ${JSON.stringify(protocol.slice(0, 32))} is not supported (only ${XEN_IO_PROTO_ABI_X86_64})`);
  }
  const ringPageOrder = num(read, 'ring-page-order', 0, 0xffffffff);
  if (ringPageOrder > offered.maxRingPageOrder) throw new BlkifNegotiationError(`ring-page-order ${ringPageOrder} exceeds max-ring-page-order ${offered.maxRingPageOrder}`);
  const nq = num(read, 'multi-queue-num-queues', 1, 0xffffffff);
  if (nq < 1 || nq > offered.maxQueues) throw new BlkifNegotiationError(`multi-queue-num-queues ${nq} outside 1..${offered.maxQueues}`);
  const queues: BlkfrontQueueInfo[] = [];
  for (let i = 0; i < nq; i++) {
    const pre = nq > 1 ? `queue-${i}/` : '';
    const ringRefs: number[] = [];
    if (ringPageOrder === 0) {
      const r = num(read, `${pre}ring-ref`, -1, 0xffffffff);
      if (r < 0) throw new BlkifNegotiationError(`${pre}ring-ref missing`);
      ringRefs.push(r);
    } else {
      for (let j = 0; j < 1 << ringPageOrder; j++) {
        const r = num(read, `${pre}ring-ref${j}`, -1, 0xffffffff);
        if (r < 0) throw new BlkifNegotiationError(`${pre}ring-ref${j} missing`);
        ringRefs.push(r);
      }
    }
    const ev = num(read, `${pre}event-channel`, -1, 0xffffffff);
    if (ev < 0) throw new BlkifNegotiationError(`${pre}event-channel missing`);
    queues.push({ ringRefs, eventChannel: ev });
  }
  return { ringPageOrder, queues, protocol: protocol || XEN_IO_PROTO_ABI_X86_64, persistent: offered.persistent && flag(read, 'feature-persistent') };
}

/** Checks a connect record that did not come through xenstore (bootArgs, tests) the same way. */
export function checkBlkfrontConnect(c: BlkfrontConnectInfo, offered: BlkbackFeatures): BlkfrontConnectInfo {
  return parseBlkfrontConnect((key) => blkfrontConnectKeys(c)[key], offered);
}

export function defaultBlkbackFeatures(readonly: boolean, discard: DiscardFeature | null): BlkbackFeatures {
  return {
    flushCache: !readonly,
    barrier: !readonly,
    discard: readonly ? null : discard,
    persistent: true,
    maxIndirectSegments: BLKBACK_MAX_INDIRECT_SEGMENTS,
    maxRingPageOrder: MAX_RING_PAGE_ORDER,
    maxQueues: 4,
  };
}

export const isReadonlyInfo = (info: number) => (info & VDISK_READONLY) !== 0;
export const MAX_DIRECT_SEGMENTS = BLKIF_MAX_SEGMENTS_PER_REQUEST;
