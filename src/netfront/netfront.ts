// netfront: a guest's network interface over netif rings. Frames go out from a pool of tx
// buffers granted once (a buffer is 17 contiguous pages, so a reader can put a vnet header and a
// 64 KiB frame straight into granted memory), and come in through per-queue rx buffers granted
// once. Frames of one flow stay on one queue.
import { VIRTIO_NET_HDR_SIZE } from '../abi/virtio.js';
import { XEN_PAGE_SIZE } from '../abi/sring.js';
import { XEN_NETIF_GSO_TYPE_NONE } from '../abi/netif.js';
import type { FrontendServices } from '../domain/services.js';
import { newL4Info, parseL4 } from '../packet/headers.js';
import { copyMeta, newPacketMeta, type PacketMeta } from '../packet/meta.js';
import {
  DEFAULT_BACKEND_FEATURES, type NetifBackendFeatures, type NetifFrontendFeatures, type NetifQueueParams,
} from '../netif/params.js';
import { MAX_FRAME, NetfrontQueue, type FrontQueueHost, type NetfrontStats } from './queue.js';

/** pages per tx buffer: a vnet header plus the largest frame */
export const TX_BUF_PAGES = Math.ceil((VIRTIO_NET_HDR_SIZE + MAX_FRAME) / XEN_PAGE_SIZE);

export interface NetfrontOptions {
  backendDomid: number;
  mac: string;
  /** queues wanted; clamped to what the backend offers */
  queues?: number;
  /** what the backend advertised (its feature-* keys); default: everything netback offers */
  backend?: NetifBackendFeatures;
  /** tx buffers (each TX_BUF_PAGES pages), default 32 */
  txBuffers?: number;
  /** ask for GSO / scatter-gather (default yes, when offered) */
  sg?: boolean;
  gso?: boolean;
}

export interface NetfrontConnectInfo {
  backendDomid: number;
  mac: string;
  queues: NetifQueueParams[];
  features: NetifFrontendFeatures;
  /** what netfront will use: sending GSO or multi-page frames needs the backend's feature */
  txSg: boolean;
  txGsoTcpv4: boolean;
  txGsoTcpv6: boolean;
}

export interface TxBuffer {
  readonly index: number;
  /** TX_BUF_PAGES pages of granted memory */
  readonly bytes: Uint8Array;
}

export type FrameHandler = (buf: Uint8Array, off: number, len: number, meta: PacketMeta, queue: number) => void;

const l4 = newL4Info();

export class Netfront implements FrontQueueHost {
  readonly stats: NetfrontStats = { txPackets: 0, txBytes: 0, txErrors: 0, txDropped: 0, rxPackets: 0, rxBytes: 0, rxErrors: 0, txGso: 0, rxGso: 0 };
  backendDomid: number;
  readonly queues: NetfrontQueue[] = [];
  private readonly txBufs: TxBuffer[] = [];
  private readonly txRefs: Int32Array[] = [];
  private readonly txPending: Int32Array;
  private readonly freeTx: number[] = [];
  private readonly txGfns: number[] = [];
  private handler: FrameHandler = () => {};
  private spaceWaiters: (() => void)[] = [];
  private faultHandlers: ((reason: string) => void)[] = [];
  private readonly info: NetfrontConnectInfo;
  faultReason: string | null = null;
  private readonly scratchMeta = newPacketMeta();

  private constructor(readonly env: FrontendServices, private readonly opts: NetfrontOptions) {
    this.backendDomid = opts.backendDomid;
    const be = opts.backend ?? DEFAULT_BACKEND_FEATURES;
    const nq = Math.max(1, Math.min(opts.queues ?? 1, be.maxQueues));
    const sg = (opts.sg ?? true) && be.sg;
    const gso = (opts.gso ?? true) && sg;
    for (let i = 0; i < nq; i++) this.queues.push(new NetfrontQueue(this, i, be.splitEventChannels));
    const nb = opts.txBuffers ?? 32;
    this.txPending = new Int32Array(nb);
    for (let b = 0; b < nb; b++) {
      const gfn = env.frames.allocContiguous(TX_BUF_PAGES);
      this.txGfns.push(gfn);
      this.txBufs.push({ index: b, bytes: env.frames.view(gfn, TX_BUF_PAGES) });
      this.txRefs.push(new Int32Array(TX_BUF_PAGES));
    }
    this.info = {
      backendDomid: opts.backendDomid,
      mac: opts.mac,
      queues: [],
      features: { sg, gsoTcpv4: gso, gsoTcpv6: gso, rxNotify: true, csumOffload: true, ipv6CsumOffload: true },
      txSg: sg,
      txGsoTcpv4: gso && be.gsoTcpv4,
      txGsoTcpv6: gso && be.gsoTcpv6,
    };
  }

  /** Allocates, grants and initialises everything; the result says what to tell the backend. */
  static async create(env: FrontendServices, opts: NetfrontOptions): Promise<Netfront> {
    const nf = new Netfront(env, opts);
    await nf.setup(true);
    return nf;
  }

  private async setup(grant: boolean): Promise<void> {
    const { grants } = this.env;
    if (grant) {
      for (let b = 0; b < this.txBufs.length; b++) {
        for (let p = 0; p < TX_BUF_PAGES; p++) this.txRefs[b][p] = grants.grantAccess(this.backendDomid, this.txGfns[b] + p, true);
      }
    }
    this.freeTx.length = 0;
    for (let b = this.txBufs.length - 1; b >= 0; b--) this.freeTx.push(b);
    this.txPending.fill(0);
    for (const q of this.queues) await q.init(grant);
    this.info.backendDomid = this.backendDomid;
    this.info.queues = this.queues.map((q) => ({ txRingRef: q.txRef, rxRingRef: q.rxRef, evtchnTx: q.portTx, evtchnRx: q.portRx }));
    this.faultReason = null;
  }

  get connectInfo(): NetfrontConnectInfo {
    return this.info;
  }

  onFrame(h: FrameHandler): void {
    this.handler = h;
  }

  /** the backend broke the protocol: the interface is down until reconnect() */
  onFault(h: (reason: string) => void): void {
    this.faultHandlers.push(h);
  }

  /** `cb` runs once, when a tx buffer is free again */
  onTxSpace(cb: () => void): void {
    this.spaceWaiters.push(cb);
  }

  get txFree(): number {
    return this.freeTx.length;
  }

  /** A free tx buffer to fill (e.g. by read() from a TAP), or null when all are in flight. */
  reserveTx(): TxBuffer | null {
    const b = this.freeTx.pop();
    return b === undefined ? null : this.txBufs[b];
  }

  releaseTx(buf: TxBuffer): void {
    this.freeTx.push(buf.index);
  }

  /**
   * Sends the frame at buf.bytes[off, off+len). The buffer is owned by netfront until the
   * backend answers. Returns false (and frees the buffer) if the frame cannot go: too big, GSO
   * the backend did not offer, or the ring is full.
   */
  commitTx(buf: TxBuffer, off: number, len: number, meta: PacketMeta): boolean {
    const i = this.info;
    const ok =
      len >= 14 && len <= MAX_FRAME && off >= 0 && off + len <= buf.bytes.length && this.faultReason === null &&
      (i.txSg || ((off & (XEN_PAGE_SIZE - 1)) + len <= XEN_PAGE_SIZE)) &&
      (meta.gsoType === XEN_NETIF_GSO_TYPE_NONE || (meta.gsoType === 1 ? i.txGsoTcpv4 : i.txGsoTcpv6));
    let q = this.queues[0];
    if (ok && this.queues.length > 1) {
      parseL4(buf.bytes, off, len, l4);
      q = this.queues[l4.hash % this.queues.length];
    }
    if (!ok || !q.send(buf.index, this.txRefs[buf.index], off, len, meta)) {
      this.stats.txDropped++;
      this.freeTx.push(buf.index);
      return false;
    }
    this.txPending[buf.index] = Math.ceil(((off & (XEN_PAGE_SIZE - 1)) + len) / XEN_PAGE_SIZE);
    this.stats.txPackets++;
    this.stats.txBytes += len;
    if (meta.gsoType !== XEN_NETIF_GSO_TYPE_NONE) this.stats.txGso++;
    return true;
  }

  /** Copies and sends one frame; for callers without their own buffer. */
  send(frame: Uint8Array, meta?: PacketMeta): boolean {
    const buf = this.reserveTx();
    if (!buf) {
      this.stats.txDropped++;
      return false;
    }
    buf.bytes.set(frame.subarray(0, MAX_FRAME), VIRTIO_NET_HDR_SIZE);
    const m = meta ? copyMeta(this.scratchMeta, meta) : this.scratchMeta;
    if (!meta) {
      m.csumBlank = false;
      m.dataValidated = false;
      m.gsoType = XEN_NETIF_GSO_TYPE_NONE;
      m.gsoSize = 0;
    }
    return this.commitTx(buf, VIRTIO_NET_HDR_SIZE, Math.min(frame.length, MAX_FRAME), m);
  }

  // FrontQueueHost
  deliver(buf: Uint8Array, off: number, len: number, meta: PacketMeta, queue: number): void {
    this.handler(buf, off, len, meta, queue);
  }

  txDone(b: number): void {
    if (b >= this.txPending.length || this.txPending[b] <= 0) return;
    if (--this.txPending[b] > 0) return;
    this.freeTx.push(b);
    if (this.spaceWaiters.length > 0) {
      const w = this.spaceWaiters;
      this.spaceWaiters = [];
      for (const cb of w) cb();
    }
  }

  fault(reason: string): void {
    if (this.faultReason !== null) return;
    this.faultReason = reason;
    this.env.log(`netfront: backend dom${this.backendDomid} broke the protocol, interface down: ${reason}`);
    for (const q of this.queues) q.dead = true;
    for (const h of this.faultHandlers) h(reason);
  }

  /**
   * After the backend went away (restart, migration to a new driver domain): fresh rings and
   * event channels, every buffer back in our hands. Grants are kept for the same backend domain
   * and re-issued for a new one (which fails while the old one still maps them).
   */
  async reconnect(backendDomid: number = this.backendDomid): Promise<NetfrontConnectInfo> {
    const regrant = backendDomid !== this.backendDomid;
    for (const q of this.queues) {
      if (!(await q.shutdown(regrant))) throw new Error(`netfront: backend dom${this.backendDomid} still maps our rings; cannot move to dom${backendDomid}`);
    }
    if (regrant) for (const refs of this.txRefs) for (const r of refs) this.env.grants.endAccess(r);
    this.backendDomid = backendDomid;
    await this.setup(regrant);
    return this.info;
  }

  async close(): Promise<void> {
    for (const q of this.queues) await q.shutdown(true);
    for (const refs of this.txRefs) for (const r of refs) this.env.grants.endAccess(r);
  }
}
