// Taking one packet off a netif tx ring: the first request, its extra-info slots, then the
// fragments chained with more_data. Each slot is copied out of shared memory once (BackRing) and
// checked before anything is done with it. Verdicts follow what a well-behaved frontend can
// never produce: such a packet cuts the vif off ('fatal'); a packet a frontend may legally send
// but we will not forward is answered with an error ('drop').
import {
  NETTXF_extra_info, NETTXF_more_data, XEN_NETIF_EXTRA_FLAG_MORE, XEN_NETIF_EXTRA_TYPE_GSO,
  XEN_NETIF_EXTRA_TYPE_HASH, XEN_NETIF_EXTRA_TYPE_MAX, XEN_NETIF_EXTRA_TYPE_MCAST_ADD, XEN_NETIF_EXTRA_TYPE_MCAST_DEL,
  XEN_NETIF_GSO_TYPE_TCPV4, XEN_NETIF_GSO_TYPE_TCPV6, XEN_NETIF_NR_SLOTS_MIN,
  netifExtraInfo, netifTxRequest, newNetifExtraInfo, newNetifTxRequest,
} from '../abi/netif.js';
import { XEN_PAGE_SIZE } from '../abi/sring.js';
import type { BackRing } from '../ring/back.js';
import { clearMeta, metaFromTxFlags, newPacketMeta, type GsoType } from '../packet/meta.js';

/** Linux netback's fatal_skb_slots: more slots than this in one packet is an attack */
export const FATAL_SKB_SLOTS = 20;
/** the most a frontend may rely on (XEN_NETIF_NR_SLOTS_MIN); between this and fatal we drop */
export const MAX_SKB_SLOTS = XEN_NETIF_NR_SLOTS_MIN;
/** extra-info slots one packet may chain: one of each type at most */
export const MAX_EXTRAS = XEN_NETIF_EXTRA_TYPE_MAX - 1;
export const ETH_MIN_FRAME = 14;

export interface TxSlot {
  gref: number;
  offset: number;
  /** bytes of packet data in this slot (for the first slot: what is left after the fragments) */
  size: number;
  id: number;
}

export type TxVerdict = 'ok' | 'incomplete' | 'drop' | 'fatal';

export class TxPacket {
  /** data slots in ring order: slots[0] is the first request */
  readonly slots: TxSlot[] = [];
  nSlots = 0;
  /** extra-info slots that followed the first request (each answered with NETIF_RSP_NULL) */
  extraCount = 0;
  /** total packet length (the first request's size) */
  size = 0;
  readonly meta = newPacketMeta();
  /** a multicast-control message: answered, never forwarded */
  controlOnly = false;
  /** why the verdict was drop or fatal */
  reason = '';

  constructor() {
    for (let i = 0; i < FATAL_SKB_SLOTS + 1; i++) this.slots.push({ gref: 0, offset: 0, size: 0, id: 0 });
  }

  /** ring slots the packet used: what its responses must cover */
  get ringSlots(): number {
    return this.nSlots + this.extraCount;
  }
}

export interface TxParseFeatures {
  gsoTcpv4: boolean;
  gsoTcpv6: boolean;
}

const req = newNetifTxRequest();
const extra = newNetifExtraInfo();

/**
 * Parses the packet at ring.reqCons. On 'incomplete' (the frontend has not pushed all of its
 * slots yet) req_cons is put back and nothing is consumed. On every other verdict the packet's
 * slots are consumed and `pkt` describes them, so the caller can answer each one. `avail` is
 * ring.unconsumedRequests(), already checked for PROD_OVERFLOW.
 */
export function parseTxPacket(ring: BackRing, avail: number, pkt: TxPacket, f: TxParseFeatures): TxVerdict {
  const start = ring.reqCons;
  pkt.nSlots = 0;
  pkt.extraCount = 0;
  pkt.controlOnly = false;
  pkt.reason = '';
  clearMeta(pkt.meta);
  if (avail < 1) return 'incomplete';
  let used = 1;
  netifTxRequest.read(ring.consumeRequest(), 0, req);
  const first = pkt.slots[0];
  first.gref = req.gref;
  first.offset = req.offset;
  first.size = req.size;
  first.id = req.id;
  pkt.nSlots = 1;
  pkt.size = req.size;
  metaFromTxFlags(req.flags, pkt.meta);
  let more = (req.flags & NETTXF_more_data) !== 0;
  let verdict = 'ok' as TxVerdict;
  const fail = (v: 'drop' | 'fatal', why: string) => {
    if (verdict !== 'fatal') {
      verdict = v;
      pkt.reason = why;
    }
  };

  if ((req.flags & NETTXF_extra_info) !== 0) {
    for (;;) {
      if (used >= avail) {
        ring.reqCons = start;
        return 'incomplete';
      }
      used++;
      netifExtraInfo.read(ring.consumeRequest(), 0, extra);
      pkt.extraCount++;
      if (pkt.extraCount > MAX_EXTRAS) {
        fail('fatal', `more than ${MAX_EXTRAS} extra-info slots`);
        break;
      }
      if (extra.type === XEN_NETIF_EXTRA_TYPE_GSO) {
        if (extra.gsoType !== XEN_NETIF_GSO_TYPE_TCPV4 && extra.gsoType !== XEN_NETIF_GSO_TYPE_TCPV6) fail('fatal', `bad GSO type ${extra.gsoType}`);
        else if ((extra.gsoType === XEN_NETIF_GSO_TYPE_TCPV4 && !f.gsoTcpv4) || (extra.gsoType === XEN_NETIF_GSO_TYPE_TCPV6 && !f.gsoTcpv6))
          fail('fatal', `GSO type ${extra.gsoType} was not negotiated`);
        else if (extra.gsoSize === 0) fail('fatal', 'GSO size is zero');
        else {
          pkt.meta.gsoType = extra.gsoType as GsoType;
          pkt.meta.gsoSize = extra.gsoSize;
        }
      } else if (extra.type === XEN_NETIF_EXTRA_TYPE_MCAST_ADD || extra.type === XEN_NETIF_EXTRA_TYPE_MCAST_DEL) {
        pkt.controlOnly = true;
      } else if (extra.type !== XEN_NETIF_EXTRA_TYPE_HASH) {
        fail('fatal', `bad extra-info type ${extra.type}`);
      }
      if ((extra.flags & XEN_NETIF_EXTRA_FLAG_MORE) === 0) break;
    }
    if (verdict === 'fatal') return 'fatal';
  }

  let rest = 0;
  while (more) {
    if (pkt.nSlots >= FATAL_SKB_SLOTS) {
      // Consume nothing more: the vif is cut off, the ring is abandoned.
      fail('fatal', `packet uses more than ${FATAL_SKB_SLOTS} slots`);
      return 'fatal';
    }
    if (used >= avail) {
      ring.reqCons = start;
      return 'incomplete';
    }
    used++;
    netifTxRequest.read(ring.consumeRequest(), 0, req);
    const s = pkt.slots[pkt.nSlots++];
    s.gref = req.gref;
    s.offset = req.offset;
    s.size = req.size;
    s.id = req.id;
    more = (req.flags & NETTXF_more_data) !== 0;
    if (req.size === 0) fail('fatal', `zero-length fragment in slot ${pkt.nSlots - 1}`);
    else if (req.offset + req.size > XEN_PAGE_SIZE) fail('fatal', `fragment crosses its page: offset ${req.offset} + size ${req.size}`);
    rest += req.size;
  }
  if (verdict === 'fatal') return verdict;
  if (first.size === 0) fail('fatal', 'zero-length packet');
  else if (rest > first.size) fail('fatal', `fragments carry ${rest} bytes, more than the packet size ${first.size} in the first slot`);
  else {
    first.size -= rest;
    if (first.size === 0 && pkt.nSlots > 1) fail('fatal', 'zero-length first fragment');
    else if (first.offset + first.size > XEN_PAGE_SIZE) fail('fatal', `first slot crosses its page: offset ${first.offset} + size ${first.size}`);
  }
  if (verdict !== 'ok') return verdict;
  if (pkt.nSlots > MAX_SKB_SLOTS) fail('drop', `packet uses ${pkt.nSlots} slots (max ${MAX_SKB_SLOTS})`);
  else if (pkt.size < ETH_MIN_FRAME && !pkt.controlOnly) fail('drop', `runt frame of ${pkt.size} bytes`);
  return verdict;
}
