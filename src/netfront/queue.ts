// One netfront queue: its tx and rx rings, event channel(s), and a full set of pre-granted rx
// buffers (one page per ring slot, so rx request id = slot index and a buffer never moves).
// The backend is not trusted either: every response is copied once and checked.
import { VIRTIO_NET_HDR_SIZE } from '../abi/virtio.js';
import {
  NETIF_RSP_NULL, NETIF_RX_RING, NETIF_TX_RING, NETRXF_extra_info, NETRXF_more_data, NETTXF_extra_info, NETTXF_more_data,
  XEN_NETIF_EXTRA_FLAG_MORE, XEN_NETIF_EXTRA_TYPE_GSO, XEN_NETIF_GSO_TYPE_NONE, XEN_NETIF_GSO_TYPE_TCPV4, XEN_NETIF_GSO_TYPE_TCPV6,
  netifExtraInfo, netifRxRequest, netifRxResponse, netifTxRequest, netifTxResponse, newNetifExtraInfo, newNetifRxResponse, newNetifTxResponse,
} from '../abi/netif.js';
import { XEN_PAGE_SIZE } from '../abi/sring.js';
import { FrontRing } from '../ring/front.js';
import { RingFaultError } from '../ring/sring.js';
import type { FrontendServices } from '../domain/services.js';
import { clearMeta, metaFromRxFlags, newPacketMeta, txFlagsFromMeta, type PacketMeta } from '../packet/meta.js';
import { FATAL_SKB_SLOTS } from '../netif/txparse.js';

/** largest frame netif carries */
export const MAX_FRAME = 0xffff;
/** rx assembly: room for a vnet header in front of the largest frame */
export const RX_ASM_SIZE = VIRTIO_NET_HDR_SIZE + MAX_FRAME;

const rxRsp = newNetifRxResponse();
const txRsp = newNetifTxResponse();
const extra = newNetifExtraInfo();

export interface FrontQueueHost {
  env: FrontendServices;
  backendDomid: number;
  /** a frame arrived: buf[off, off+len) with VIRTIO_NET_HDR_SIZE free bytes before off */
  deliver(buf: Uint8Array, off: number, len: number, meta: PacketMeta, queue: number): void;
  /** tx slots whose buffer is now free */
  txDone(bufIndex: number): void;
  fault(reason: string): void;
  stats: NetfrontStats;
}

export interface NetfrontStats {
  txPackets: number;
  txBytes: number;
  txErrors: number;
  txDropped: number;
  rxPackets: number;
  rxBytes: number;
  rxErrors: number;
  /** GSO frames sent and received whole */
  txGso: number;
  rxGso: number;
}

export class NetfrontQueue {
  tx!: FrontRing;
  rx!: FrontRing;
  portTx = 0;
  portRx = 0;
  readonly txGfn: number;
  readonly rxGfn: number;
  txRef = 0;
  rxRef = 0;
  /** per tx ring slot: the tx buffer its request belongs to, or -1 */
  readonly txOwner: Int32Array;
  readonly rxGfns: Int32Array;
  readonly rxRefs: Int32Array;
  private readonly rxPages: Uint8Array[] = [];
  private readonly asm = new Uint8Array(RX_ASM_SIZE);
  private readonly meta = newPacketMeta();
  dead = false;

  constructor(
    readonly host: FrontQueueHost,
    readonly index: number,
    private readonly split: boolean,
  ) {
    const { frames } = host.env;
    this.txGfn = frames.alloc();
    this.rxGfn = frames.alloc();
    const slots = 256;
    this.txOwner = new Int32Array(slots).fill(-1);
    this.rxGfns = new Int32Array(slots);
    this.rxRefs = new Int32Array(slots);
    for (let i = 0; i < slots; i++) {
      this.rxGfns[i] = frames.alloc();
      this.rxPages.push(frames.view(this.rxGfns[i]));
    }
  }

  /** Grants (again) everything to the backend, initialises fresh rings, allocates event channels, posts rx buffers. */
  async init(grant: boolean): Promise<void> {
    const { frames, grants, evtchn } = this.host.env;
    const dom = this.host.backendDomid;
    if (grant) {
      this.txRef = grants.grantAccess(dom, this.txGfn, false);
      this.rxRef = grants.grantAccess(dom, this.rxGfn, false);
      for (let i = 0; i < this.rxGfns.length; i++) this.rxRefs[i] = grants.grantAccess(dom, this.rxGfns[i], false);
    }
    const txv = frames.view(this.txGfn);
    const rxv = frames.view(this.rxGfn);
    this.tx = FrontRing.init(txv.buffer as ArrayBuffer, NETIF_TX_RING, { byteOffset: txv.byteOffset, byteLength: XEN_PAGE_SIZE });
    this.rx = FrontRing.init(rxv.buffer as ArrayBuffer, NETIF_RX_RING, { byteOffset: rxv.byteOffset, byteLength: XEN_PAGE_SIZE });
    if (this.tx.size !== this.txOwner.length || this.rx.size !== this.rxGfns.length) throw new Error('netif rings must have 256 slots');
    this.txOwner.fill(-1);
    this.portTx = await evtchn.allocUnbound(dom);
    this.portRx = this.split ? await evtchn.allocUnbound(dom) : this.portTx;
    evtchn.on(this.portTx, () => this.onEvent());
    if (this.split) evtchn.on(this.portRx, () => this.pollRx());
    const v = this.rx.view;
    for (let i = 0; i < this.rx.size; i++) {
      const idx = this.rx.reqProdPvt;
      netifRxRequest.write(v, this.rx.produceRequest(), idx & this.rx.mask, this.rxRefs[idx & this.rx.mask]);
    }
    this.rx.pushRequests();
    this.dead = false;
  }

  /** Ends event channels (for a reconnect or shutdown). Grants stay unless `revoke`. */
  async shutdown(revoke: boolean): Promise<boolean> {
    this.dead = true;
    const { grants, evtchn } = this.host.env;
    await evtchn.close(this.portTx).catch(() => {});
    if (this.split) await evtchn.close(this.portRx).catch(() => {});
    if (!revoke) return true;
    let ok = grants.endAccess(this.txRef) && grants.endAccess(this.rxRef);
    for (let i = 0; i < this.rxRefs.length; i++) ok = grants.endAccess(this.rxRefs[i]) && ok;
    return ok;
  }

  freeSlots(): number {
    return this.dead ? 0 : this.tx.freeRequests();
  }

  /**
   * Queues one frame that sits in a tx buffer: `refs[p]` grants page p of the buffer, the frame
   * starts `off` bytes into it. One slot per page touched, plus one for a GSO extra.
   */
  send(bufIndex: number, refs: Int32Array, off: number, len: number, meta: PacketMeta): boolean {
    const gso = meta.gsoType !== XEN_NETIF_GSO_TYPE_NONE;
    const firstPage = off >>> 12;
    const lastPage = (off + len - 1) >>> 12;
    const need = lastPage - firstPage + 1 + (gso ? 1 : 0);
    if (this.dead || this.tx.freeRequests() < need) return false;
    const ring = this.tx;
    const v = ring.view;
    let pos = off;
    const end = off + len;
    let first = true;
    while (pos < end) {
      const inPage = pos & (XEN_PAGE_SIZE - 1);
      const chunk = Math.min(end - pos, XEN_PAGE_SIZE - inPage);
      const id = ring.reqProdPvt & ring.mask;
      const slotOff = ring.produceRequest();
      const more = pos + chunk < end ? NETTXF_more_data : 0;
      this.txOwner[id] = bufIndex;
      if (first) {
        netifTxRequest.write(v, slotOff, refs[pos >>> 12], inPage, txFlagsFromMeta(meta) | more | (gso ? NETTXF_extra_info : 0), id, len);
        if (gso) netifExtraInfo.writeGso(v, ring.produceRequest(), 0, meta.gsoSize, meta.gsoType, 0);
        first = false;
      } else {
        netifTxRequest.write(v, slotOff, refs[pos >>> 12], inPage, more, id, chunk);
      }
      pos += chunk;
    }
    if (ring.pushRequestsAndCheckNotify()) this.host.env.evtchn.notify(this.portTx);
    return true;
  }

  private onEvent(): void {
    this.pollTx();
    if (!this.split) this.pollRx();
  }

  /** Frees tx buffers whose slots the backend answered. */
  pollTx(): void {
    if (this.dead) return;
    const ring = this.tx;
    const st = this.host.stats;
    try {
      do {
        let n = ring.unconsumedResponses();
        while (n-- > 0) {
          netifTxResponse.read(ring.consumeResponse(), 0, txRsp);
          if (txRsp.status === NETIF_RSP_NULL) continue;
          const id = txRsp.id;
          const owner = id < this.txOwner.length ? this.txOwner[id] : -1;
          if (owner < 0) {
            this.fault(`tx response for id ${id}, which has no request outstanding`);
            return;
          }
          this.txOwner[id] = -1;
          if (txRsp.status !== 0) st.txErrors++;
          this.host.txDone(owner);
        }
      } while (ring.finalCheckForResponses());
    } catch (e) {
      this.fault(e instanceof RingFaultError ? `tx ring: ${e.message}` : String(e));
    }
  }

  /** Takes complete frames off the rx ring, hands them up, re-posts their buffers. */
  pollRx(): void {
    if (this.dead) return;
    const ring = this.rx;
    let reposted = 0;
    try {
      do {
        for (;;) {
          const avail = ring.unconsumedResponses();
          if (avail === 0) break;
          const used = this.takeFrame(avail);
          if (used === 0) break;
          if (used < 0) return;
          for (let i = 0; i < used; i++) {
            const idx = ring.reqProdPvt;
            netifRxRequest.write(ring.view, ring.produceRequest(), idx & ring.mask, this.rxRefs[idx & ring.mask]);
          }
          reposted += used;
          if (reposted >= 64) {
            if (ring.pushRequestsAndCheckNotify()) this.host.env.evtchn.notify(this.portRx);
            reposted = 0;
          }
        }
      } while (ring.finalCheckForResponses());
      if (reposted > 0 && ring.pushRequestsAndCheckNotify()) this.host.env.evtchn.notify(this.portRx);
    } catch (e) {
      this.fault(e instanceof RingFaultError ? `rx ring: ${e.message}` : String(e));
    }
  }

  /** One frame: returns slots consumed, 0 if it is not all there yet, -1 after a fault. */
  private takeFrame(avail: number): number {
    const ring = this.rx;
    const start = ring.rspCons;
    const asm = this.asm;
    const meta = clearMeta(this.meta);
    let len = 0;
    let used = 0;
    let error = false;
    let more = true;
    let first = true;
    while (more) {
      if (used >= avail) {
        ring.rspCons = start;
        return 0;
      }
      if (used > FATAL_SKB_SLOTS) return this.fault(`rx frame spans more than ${FATAL_SKB_SLOTS} slots`);
      const idx = ring.rspCons;
      netifRxResponse.read(ring.consumeResponse(), 0, rxRsp);
      used++;
      if (rxRsp.id !== (idx & ring.mask)) return this.fault(`rx response id ${rxRsp.id} in slot ${idx & ring.mask}`);
      more = (rxRsp.flags & NETRXF_more_data) !== 0;
      if (rxRsp.status < 0) {
        error = true;
      } else {
        if (rxRsp.offset + rxRsp.status > XEN_PAGE_SIZE) return this.fault(`rx response offset ${rxRsp.offset} + length ${rxRsp.status} crosses the page`);
        if (VIRTIO_NET_HDR_SIZE + len + rxRsp.status > RX_ASM_SIZE) return this.fault('rx frame longer than 65535 bytes');
        const page = this.rxPages[idx & ring.mask];
        asm.set(page.subarray(rxRsp.offset, rxRsp.offset + rxRsp.status), VIRTIO_NET_HDR_SIZE + len);
        len += rxRsp.status;
      }
      if (first) {
        metaFromRxFlags(rxRsp.flags, meta);
        first = false;
        if ((rxRsp.flags & NETRXF_extra_info) !== 0) {
          for (let k = 0; ; k++) {
            if (used >= avail) {
              ring.rspCons = start;
              return 0;
            }
            if (k >= 4) return this.fault('rx frame with more than 4 extra-info slots');
            netifExtraInfo.read(ring.consumeResponse(), 0, extra);
            used++;
            if (extra.type === XEN_NETIF_EXTRA_TYPE_GSO) {
              if ((extra.gsoType !== XEN_NETIF_GSO_TYPE_TCPV4 && extra.gsoType !== XEN_NETIF_GSO_TYPE_TCPV6) || extra.gsoSize === 0) {
                error = true;
              } else {
                meta.gsoType = extra.gsoType;
                meta.gsoSize = extra.gsoSize;
              }
            }
            if ((extra.flags & XEN_NETIF_EXTRA_FLAG_MORE) === 0) break;
          }
        }
      }
    }
    const st = this.host.stats;
    if (error || len === 0) {
      st.rxErrors++;
      return used;
    }
    st.rxPackets++;
    st.rxBytes += len;
    if (meta.gsoType !== XEN_NETIF_GSO_TYPE_NONE) st.rxGso++;
    this.host.deliver(asm, VIRTIO_NET_HDR_SIZE, len, meta, this.index);
    return used;
  }

  private fault(reason: string): -1 {
    this.dead = true;
    this.host.fault(`queue ${this.index}: ${reason}`);
    return -1;
  }
}
