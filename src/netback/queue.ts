// One xenvif queue: a tx ring (guest -> switch) and an rx ring (switch -> guest) with their event
// channels. The queue stages work into the round's copy batches; netback runs the batches and
// calls back to finish. Shared memory is read only through BackRing (one copy per request).
import { DOMID_SELF, GNTCOPY_dest_gref, GNTCOPY_source_gref, gntstName } from '../abi/grant.js';
import {
  NETIF_RSP_NULL, NETRXF_extra_info, NETRXF_more_data, XEN_NETIF_GSO_TYPE_NONE, XEN_NETIF_GSO_TYPE_TCPV4,
  netifExtraInfo, netifRxRequest, netifRxResponse, netifTxResponse, newNetifRxRequest,
} from '../abi/netif.js';
import { SRING_W_REQ_EVENT, XEN_PAGE_SIZE } from '../abi/sring.js';
import type { BackRing } from '../ring/back.js';
import { RingFaultError } from '../ring/sring.js';
import type { GrantMapping } from '../grant/mapper.js';
import { finishChecksum, newL4Info, parseL4 } from '../packet/headers.js';
import { rxFlagsFromMeta } from '../packet/meta.js';
import type { TxPacket } from '../netif/txparse.js';
import type { SwitchFrame } from '../netswitch/frame.js';
import type { Backlog } from './backlog.js';
import type { CopyBatch } from './copybatch.js';
import type { Vif } from './vif.js';

const PAGE_MASK = XEN_PAGE_SIZE - 1;
const rxReq = newNetifRxRequest();
const l4 = newL4Info();

export class XenvifQueue {
  /** tx: parse stopped at a packet whose slots were not all pushed; how many slots were there */
  txIncomplete = -1;
  txTouched = false;
  rxTouched = false;
  /** rx path declared stalled: frames are dropped until the guest posts buffers again */
  stalled = false;
  lastRxProgress: number;

  // rx slots consumed in this round, in ring order
  rxN = 0;
  private readonly rxIds: Uint16Array;
  private readonly rxLens: Int32Array;
  private readonly rxFlags: Uint16Array;
  private readonly rxGso: Uint32Array; // 0: a data slot; else gsoType << 16 | gsoSize for an extra slot
  private readonly rxOpFrom: Int32Array;
  private readonly rxOpTo: Int32Array;
  private backlogStaged = 0;

  constructor(
    readonly vif: Vif,
    readonly index: number,
    readonly tx: BackRing,
    readonly rx: BackRing,
    readonly txMap: GrantMapping,
    readonly rxMap: GrantMapping,
    readonly portTx: number,
    readonly portRx: number,
    readonly backlog: Backlog,
    readonly backlogGfn: number,
    now: number,
  ) {
    const n = rx.size;
    this.rxIds = new Uint16Array(n);
    this.rxLens = new Int32Array(n);
    this.rxFlags = new Uint16Array(n);
    this.rxGso = new Uint32Array(n);
    this.rxOpFrom = new Int32Array(n);
    this.rxOpTo = new Int32Array(n);
    this.rxWords = new Int32Array(rxMap.bytes.buffer, rxMap.bytes.byteOffset, 4);
    this.txWords = new Int32Array(txMap.bytes.buffer, txMap.bytes.byteOffset, 4);
    this.lastRxProgress = now;
  }

  private readonly rxWords: Int32Array;
  private readonly txWords: Int32Array;

  get split(): boolean {
    return this.portTx !== this.portRx;
  }

  /** free rx requests the guest has posted; a bogus req_prod cuts the vif off */
  rxSpace(): number {
    try {
      return this.rx.unconsumedRequests();
    } catch (e) {
      this.vif.fatal(e instanceof RingFaultError ? `rx ring: ${e.message}` : String(e));
      return 0;
    }
  }

  txAvail(): number {
    try {
      return this.tx.unconsumedRequests();
    } catch (e) {
      this.vif.fatal(e instanceof RingFaultError ? `tx ring: ${e.message}` : String(e));
      return 0;
    }
  }

  /** Answers every slot of a tx packet: data slots with `status`, extra slots with NULL. */
  respondTx(pkt: TxPacket, status: number): void {
    const ring = this.tx;
    const v = ring.view;
    netifTxResponse.write(v, ring.produceResponse(), pkt.slots[0].id, status);
    for (let i = 0; i < pkt.extraCount; i++) netifTxResponse.write(v, ring.produceResponse(), 0, NETIF_RSP_NULL);
    for (let i = 1; i < pkt.nSlots; i++) netifTxResponse.write(v, ring.produceResponse(), pkt.slots[i].id, status);
    this.txTouched = true;
  }

  /** After an incomplete packet: wake us when the frontend pushes past what we saw. */
  armTxPastIncomplete(): boolean {
    Atomics.store(this.txWords, SRING_W_REQ_EVENT, (this.tx.reqCons + this.txIncomplete + 1) | 0);
    return this.txAvail() > this.txIncomplete;
  }

  // ---- rx (switch -> guest) ----

  /** ring slots a frame needs in the guest's rx ring, or 0 if the guest cannot take it at all */
  rxSlotsFor(f: SwitchFrame): number {
    const feats = this.vif.features;
    let n = Math.ceil(f.len / XEN_PAGE_SIZE);
    if (n > 1 && !feats.sg) return 0;
    if (f.meta.gsoType !== XEN_NETIF_GSO_TYPE_NONE) {
      if (!(f.meta.gsoType === XEN_NETIF_GSO_TYPE_TCPV4 ? feats.gsoTcpv4 : feats.gsoTcpv6)) return 0;
      n++;
    }
    return n;
  }

  /** A frame from the switch: into the guest's buffers this round, into the backlog, or dropped. */
  deliver(f: SwitchFrame, rxOps: CopyBatch, now: number): void {
    const vs = this.vif.vstats;
    const need = this.rxSlotsFor(f);
    if (need === 0 || need > this.rx.size) {
      vs.rxUnsupportedDrops++;
      return;
    }
    if (f.meta.csumBlank && f.meta.gsoType === XEN_NETIF_GSO_TYPE_NONE && !this.takesBlankCsum(f)) {
      // The guest wants complete checksums: finish it here, once, for every receiver.
      if (!finishChecksum(f.mem, f.off, f.len, l4.csumStart, l4.csumOffset)) {
        vs.rxUnsupportedDrops++;
        return;
      }
      f.meta.csumBlank = false;
      f.meta.dataValidated = true;
    }
    if (this.stalled) {
      if (this.rxSpace() < need) {
        vs.rxStallDrops++;
        return;
      }
      this.stalled = false;
      this.vif.log(`queue ${this.index}: rx ring has buffers again, carrier on`);
    }
    if (this.backlog.count === 0 && this.rxSpace() >= need && rxOps.free >= 2 * need) {
      this.stageRx(f, need, rxOps);
      return;
    }
    if (!this.backlog.push(f, now)) {
      vs.rxQueueDrops++;
      return;
    }
    vs.rxQueued++;
  }

  private takesBlankCsum(f: SwitchFrame): boolean {
    const feats = this.vif.features;
    if (!parseL4(f.mem, f.off, f.len, l4)) return l4.ipVersion === 4 ? feats.csumOffload : l4.ipVersion === 6 ? feats.ipv6CsumOffload : true;
    return l4.ipVersion === 4 ? feats.csumOffload : feats.ipv6CsumOffload;
  }

  /** Moves backlog frames into the guest's buffers while it has posted enough. */
  drainBacklog(rxOps: CopyBatch): void {
    while (this.backlogStaged < this.backlog.count && !this.vif.dead) {
      const f = this.backlog.peek(this.backlogStaged)!;
      const need = this.rxSlotsFor(f);
      if (this.rxSpace() < need || rxOps.free < 2 * need) {
        this.wantRx(need);
        return;
      }
      this.stageRx(f, need, rxOps);
      this.backlogStaged++;
    }
  }

  /** ask the guest to notify once it has posted `need` more buffers than we have used */
  private wantRx(need: number): void {
    Atomics.store(this.rxWords, SRING_W_REQ_EVENT, (this.rx.reqCons + need) | 0);
  }

  hasRxWork(): boolean {
    if (this.backlog.count === 0) return false;
    const f = this.backlog.peek(0)!;
    const need = this.rxSlotsFor(f);
    this.wantRx(need);
    return this.rxSpace() >= need;
  }

  private stageRx(f: SwitchFrame, need: number, ops: CopyBatch): void {
    const ring = this.rx;
    const fdom = this.vif.frontendDomid;
    const len = f.len;
    const gso = f.meta.gsoType !== XEN_NETIF_GSO_TYPE_NONE;
    let pos = 0;
    let first = true;
    while (pos < len) {
      netifRxRequest.read(ring.consumeRequest(), 0, rxReq);
      const k = this.rxN++;
      const c = Math.min(XEN_PAGE_SIZE, len - pos);
      this.rxIds[k] = rxReq.id;
      this.rxLens[k] = c;
      this.rxGso[k] = 0;
      this.rxFlags[k] = (first ? rxFlagsFromMeta(f.meta) | (gso ? NETRXF_extra_info : 0) : 0) | (pos + c < len ? NETRXF_more_data : 0);
      this.rxOpFrom[k] = ops.n;
      // the source may straddle two of our frames; the destination is one whole guest page
      let src = f.off + pos;
      let done = 0;
      while (done < c) {
        const part = Math.min(c - done, XEN_PAGE_SIZE - (src & PAGE_MASK));
        ops.add(src >>> 12, DOMID_SELF, src & PAGE_MASK, rxReq.gref, fdom, done, part, GNTCOPY_dest_gref);
        src += part;
        done += part;
      }
      this.rxOpTo[k] = ops.n;
      pos += c;
      if (first && gso) {
        netifRxRequest.read(ring.consumeRequest(), 0, rxReq);
        const e = this.rxN++;
        this.rxIds[e] = rxReq.id;
        this.rxGso[e] = (f.meta.gsoType << 16) | f.meta.gsoSize;
        this.rxOpFrom[e] = this.rxOpTo[e] = ops.n;
      }
      first = false;
    }
    void need;
    this.vif.vstats.rxPackets++;
    this.vif.vstats.rxBytes += len;
    this.rxTouched = true;
  }

  /** After the round's rx copies: answer the guest's rx requests (or cut it off on a bad gref). */
  completeRx(ops: CopyBatch, now: number): boolean {
    const n = this.rxN;
    if (n === 0) return false;
    this.rxN = 0;
    const staged = this.backlogStaged;
    this.backlogStaged = 0;
    if (this.vif.dead) return false;
    for (let k = 0; k < n; k++) {
      const err = ops.firstError(this.rxOpFrom[k], this.rxOpTo[k]);
      if (err !== 0) {
        this.vif.fatal(`grant copy into rx buffer (request id ${this.rxIds[k]}) failed: GNTST_${gntstName(err)}`);
        return false;
      }
    }
    const ring = this.rx;
    const v = ring.view;
    for (let k = 0; k < n; k++) {
      const off = ring.produceResponse();
      const g = this.rxGso[k];
      if (g === 0) netifRxResponse.write(v, off, this.rxIds[k], 0, this.rxFlags[k], this.rxLens[k]);
      else netifExtraInfo.writeGso(v, off, 0, g & 0xffff, g >>> 16, 0);
    }
    for (let i = 0; i < staged; i++) this.backlog.pop();
    this.lastRxProgress = now;
    return ring.pushResponsesAndCheckNotify();
  }

  /** XSA-392: frames that waited too long go; a guest that posts nothing for long is stalled. */
  checkStall(now: number, drainMs: number, stallMs: number): void {
    const b = this.backlog;
    if (b.count === 0 || this.rxN > 0) {
      if (b.count === 0) this.lastRxProgress = now;
      return;
    }
    const vs = this.vif.vstats;
    if (now - this.lastRxProgress >= stallMs) {
      vs.rxStallDrops += b.clear();
      vs.rxStalls++;
      this.stalled = true;
      this.vif.log(`queue ${this.index}: rx stalled: no rx buffers for ${stallMs} ms, carrier off, backlog flushed`);
      return;
    }
    while (b.count > 0 && b.ageOfHead(now) >= drainMs) {
      b.pop();
      vs.rxDrainDrops++;
    }
  }
}
