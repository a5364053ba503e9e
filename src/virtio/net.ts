// virtio-net on one queue pair. The switch pulls what the guest transmits (pullTx copies each frame
// straight into the switch's staging memory, in the switch's own round), and `receive` puts a frame
// into the next buffer the guest posted. Offloads as Xen's netif carries them: partial checksums
// both ways (CSUM, GUEST_CSUM) and TCP segmentation both ways (HOST_TSO4/6, GUEST_TSO4/6), the
// virtio-net header mapped to and from the switch's PacketMeta. No MRG_RXBUF: every frame is whole
// in one chain (Linux's "big packets" receive path when it takes TSO, "small buffers" otherwise).
import {
  VIRTIO_F_VERSION_1,
  VIRTIO_NET_CFG_MAC,
  VIRTIO_NET_CFG_MAX_PAIRS,
  VIRTIO_NET_CFG_MTU,
  VIRTIO_NET_CFG_STATUS,
  VIRTIO_NET_CONFIG_SIZE,
  VIRTIO_NET_F_CSUM,
  VIRTIO_NET_F_GUEST_CSUM,
  VIRTIO_NET_F_GUEST_TSO4,
  VIRTIO_NET_F_GUEST_TSO6,
  VIRTIO_NET_F_HOST_TSO4,
  VIRTIO_NET_F_HOST_TSO6,
  VIRTIO_NET_F_MAC,
  VIRTIO_NET_F_MTU,
  VIRTIO_NET_F_STATUS,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_NONE,
  VIRTIO_NET_HDR_NUM_BUFFERS,
  VIRTIO_NET_HDR_SIZE,
  VIRTIO_NET_RXQ,
  VIRTIO_NET_S_LINK_UP,
  VIRTIO_NET_TXQ,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC,
  bit,
} from '../abi/virtio.js';
import type { GuestMemory } from './guest-memory.js';
import { formatMac } from '../packet/mac.js';
import { clearMeta, newPacketMeta, type PacketMeta } from '../packet/meta.js';
import { XEN_NETIF_GSO_TYPE_NONE, XEN_NETIF_GSO_TYPE_TCPV4 } from '../abi/netif.js';
import { newL4Info } from '../packet/headers.js';
import { readVnetHdr, writeVnetHdr } from '../packet/vnet.js';
import { DescChain, type SplitQueue, VirtqueueError } from './virtqueue.js';
import type { VirtioDevice, VirtioQueueHost } from './device.js';

/** the largest frame we pass either way without GSO: MTU 9000 plus its Ethernet header and a VLAN tag */
export const MAX_FRAME = 9000 + 18;
/** the largest GSO frame: 64 KiB of IP packet, its Ethernet header and a VLAN tag (Linux's limit) */
export const MAX_GSO_FRAME = 65535 + 18;

const OFFLOADS = [VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6];

export interface VirtioNetOptions {
  name: string;
  mac: Uint8Array;
  mtu: number;
  /** the guest kicked its transmit queue: the switch should pull (pullTx) */
  txReady(): void;
  /** the guest posted receive buffers: frames that waited for them can go in */
  rxReady?(): void;
}

/** What receive() did with a frame: the caller keeps a no-buffer frame for later, and counts a drop. */
export type RxOutcome = 'delivered' | 'no-buffer' | 'dropped';

/** Where pullTx puts frames: the switch's staging memory (netback's UplinkSink). */
export interface TxSink {
  readonly mem: Uint8Array;
  /** absolute offset of room for `max` bytes, or -1 when there is no room this round */
  reserve(max: number): number;
  commit(off: number, len: number, meta: PacketMeta): void;
}

export interface VirtioNetStats {
  txFrames: number;
  rxFrames: number;
  /** frames not delivered: no queue running, offloads the guest did not ack, a buffer too small (a frame with no buffer posted is the caller's to keep, not counted) */
  rxDropped: number;
  /** frames the guest sent that were empty, too large, or whose header asked for what it had not negotiated */
  txDropped: number;
}

interface Running {
  q: SplitQueue;
  mem: GuestMemory;
  host: VirtioQueueHost;
  chain: DescChain;
}

export class VirtioNet implements VirtioDevice {
  readonly name: string;
  readonly numQueues = 2;
  /** QEMU's virtio-net model holds the config space itself (MAC, status, MTU come from its -device) */
  readonly servesConfig = false;
  readonly features: bigint;
  readonly stats: VirtioNetStats = { txFrames: 0, rxFrames: 0, rxDropped: 0, txDropped: 0 };
  private readonly queues: (Running | null)[] = [null, null];
  /** what travels with a VM's frame: nothing offloaded, checksums complete */
  private readonly plain: PacketMeta = newPacketMeta();
  /** a RARP frame the frontend asked us to send for the VM (SEND_RARP), until the switch pulls it */
  private announcement: Uint8Array | null = null;
  // the offloads the driver acked, read on every frame
  private csum = false;
  private guestCsum = false;
  private hostTso4 = false;
  private hostTso6 = false;
  private guestTso4 = false;
  private guestTso6 = false;
  /** room the switch reserves for each frame pulled: a GSO frame once the driver may send them */
  private txMax = MAX_FRAME;
  /** the header of the frame being pulled (gathered from its chain), and what it says */
  private readonly txHdr = new Uint8Array(VIRTIO_NET_HDR_SIZE);
  private readonly txMeta: PacketMeta = newPacketMeta();
  /** the header written in front of a received frame */
  private readonly rxHdr = new Uint8Array(VIRTIO_NET_HDR_SIZE);
  private readonly l4 = newL4Info();

  constructor(private readonly o: VirtioNetOptions) {
    if (o.mac.length !== 6) throw new Error(`${o.name}: a MAC is 6 bytes, not ${o.mac.length}`);
    if (!Number.isInteger(o.mtu) || o.mtu < 68 || o.mtu > 9000) throw new Error(`${o.name}: MTU ${o.mtu} is outside 68..9000`);
    this.name = o.name;
    this.features =
      bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_RING_F_EVENT_IDX) | bit(VIRTIO_RING_F_INDIRECT_DESC) | bit(VIRTIO_NET_F_MAC) | bit(VIRTIO_NET_F_STATUS) | bit(VIRTIO_NET_F_MTU) |
      OFFLOADS.reduce((a, b) => a | bit(b), 0n);
  }

  setFeatures(acked: bigint): void {
    const has = (b: number) => (acked & bit(b)) !== 0n;
    this.csum = has(VIRTIO_NET_F_CSUM);
    this.guestCsum = has(VIRTIO_NET_F_GUEST_CSUM);
    // TSO rests on the checksum offload (virtio 5.1.3.1): without it a TSO bit is not honoured
    this.hostTso4 = this.csum && has(VIRTIO_NET_F_HOST_TSO4);
    this.hostTso6 = this.csum && has(VIRTIO_NET_F_HOST_TSO6);
    this.guestTso4 = this.guestCsum && has(VIRTIO_NET_F_GUEST_TSO4);
    this.guestTso6 = this.guestCsum && has(VIRTIO_NET_F_GUEST_TSO6);
    this.txMax = this.hostTso4 || this.hostTso6 ? MAX_GSO_FRAME : MAX_FRAME;
  }

  /** Whether the guest takes `meta`'s frame as it is (its offloads acked), or it must be segmented and checksummed first. */
  takes(meta: PacketMeta): boolean {
    if (meta.gsoType !== XEN_NETIF_GSO_TYPE_NONE) return meta.gsoType === XEN_NETIF_GSO_TYPE_TCPV4 ? this.guestTso4 : this.guestTso6;
    return !meta.csumBlank || this.guestCsum;
  }

  config(): Uint8Array {
    const b = new Uint8Array(VIRTIO_NET_CONFIG_SIZE);
    const v = new DataView(b.buffer);
    b.set(this.o.mac, VIRTIO_NET_CFG_MAC);
    v.setUint16(VIRTIO_NET_CFG_STATUS, VIRTIO_NET_S_LINK_UP, true);
    v.setUint16(VIRTIO_NET_CFG_MAX_PAIRS, 1, true);
    v.setUint16(VIRTIO_NET_CFG_MTU, this.o.mtu, true);
    return b;
  }

  startQueue(index: number, q: SplitQueue, mem: GuestMemory, host: VirtioQueueHost): void {
    if (index !== VIRTIO_NET_RXQ && index !== VIRTIO_NET_TXQ) throw new VirtqueueError(`virtio-net has queues 0 (rx) and 1 (tx), not ${index}`);
    if (this.queues[index]) throw new Error(`${this.name}: queue ${index} is already running`);
    // Nothing is held across calls, so heads in flight when a backend died were either answered
    // or are simply taken again from the avail ring.
    this.queues[index] = { q, mem, host, chain: new DescChain(Math.min(q.size, 64)) };
    if (index === VIRTIO_NET_TXQ) this.o.txReady();
  }

  stopQueue(index: number): Promise<number> {
    const r = this.queues[index];
    this.queues[index] = null;
    return Promise.resolve(r ? r.q.lastAvail : -1);
  }

  get inFlight(): number {
    return 0;
  }

  kick(index: number): void {
    if (index === VIRTIO_NET_TXQ && this.queues[VIRTIO_NET_TXQ]) this.o.txReady();
    else if (index === VIRTIO_NET_RXQ && this.queues[VIRTIO_NET_RXQ]) this.o.rxReady?.();
  }

  /**
   * SEND_RARP after a migration: a broadcast RARP from the VM's MAC, so every switch on the
   * segment learns at once where it is now. Only the vif's own MAC may be announced: a frontend
   * that names another would be pulling someone else's traffic to itself. Returns why it was
   * refused, or null.
   */
  announce(mac: Uint8Array): string | null {
    if (!mac.every((b, i) => b === this.o.mac[i])) return `SEND_RARP names ${formatMac(mac)}, not the vif's MAC ${formatMac(this.o.mac)}: refused`;
    this.announcement = rarpAnnouncement(mac);
    this.o.txReady();
    return null;
  }

  /** Whether the guest has frames waiting to be pulled. */
  hasTxWork(): boolean {
    if (this.announcement) return true;
    const r = this.queues[VIRTIO_NET_TXQ];
    if (!r) return false;
    try {
      return r.q.pending() > 0;
    } catch (e) {
      this.stopTx(r, e as Error);
      return false;
    }
  }

  /**
   * Moves up to `max` frames the guest sent into `sink`, answering each chain; returns how many
   * frames went in. When the queue is drained it asks the guest for a kick (EVENT_IDX) first.
   */
  pullTx(sink: TxSink, max: number): number {
    let moved = 0;
    const a = this.announcement;
    if (a && max > 0) {
      const off = sink.reserve(a.length);
      if (off >= 0) {
        sink.mem.set(a, off);
        sink.commit(off, a.length, this.plain);
        this.announcement = null;
        moved++;
      }
    }
    const r = this.queues[VIRTIO_NET_TXQ];
    if (!r) return moved;
    let answered = 0;
    try {
      for (;;) {
        while (moved < max) {
          const off = sink.reserve(this.txMax);
          if (off < 0) break;
          if (!r.q.pop(r.chain)) break;
          const c = r.chain;
          if (c.readable !== c.count) throw new VirtqueueError(`tx chain at head ${c.head} has device-writable buffers`);
          const total = this.gather(r, c, sink.mem, off);
          const len = total - VIRTIO_NET_HDR_SIZE;
          if (len < 14 || !this.readTxHeader(len)) this.stats.txDropped++;
          else {
            this.stats.txFrames++;
            sink.commit(off, len, this.txMeta);
            moved++;
          }
          r.host.began(c.head);
          r.host.completing(c.head);
          r.q.push(c, 0);
          r.host.completed(c.head, r.q.usedIdx);
          answered++;
        }
        if (moved >= max || r.q.pending() > 0 || !r.q.armKick()) break;
      }
      if (answered > 0 && r.q.needsInterrupt()) r.host.interrupt();
    } catch (e) {
      this.stopTx(r, e as Error);
    }
    return moved;
  }

  private stopTx(r: Running, e: Error): void {
    this.queues[VIRTIO_NET_TXQ] = null;
    r.host.fault(e.message);
  }

  /**
   * The pulled frame's header into txMeta; false when it asks for what the driver did not ack
   * (NEEDS_CSUM without CSUM, a GSO type without its HOST_TSO, a GSO frame without NEEDS_CSUM) or
   * the frame is too large for what it is.
   */
  private readTxHeader(len: number): boolean {
    const m = this.txMeta;
    const h = this.txHdr;
    if ((h[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM) === 0 && h[1] === VIRTIO_NET_HDR_GSO_NONE) {
      clearMeta(m);
      return len <= MAX_FRAME;
    }
    if (!this.csum || readVnetHdr(h, 0, m) !== null) return false;
    if (m.gsoType === XEN_NETIF_GSO_TYPE_NONE) return len <= MAX_FRAME;
    return m.csumBlank && (m.gsoType === XEN_NETIF_GSO_TYPE_TCPV4 ? this.hostTso4 : this.hostTso6) && len <= MAX_GSO_FRAME;
  }

  /** Copies the chain's header to txHdr and its readable bytes past it to mem[off..]; returns the chain's byte count. */
  private gather(r: Running, c: DescChain, mem: Uint8Array, off: number): number {
    let total = 0;
    let out = 0;
    const max = this.txMax;
    this.txHdr.fill(0);
    for (let i = 0; i < c.readable; i++) {
      const l = c.len[i];
      const from = Math.max(0, VIRTIO_NET_HDR_SIZE - total);
      if (from > 0) {
        const h = r.mem.view(c.addr[i], Math.min(l, from));
        if (!h) throw new VirtqueueError(`buffer ${i} of head ${c.head} left guest memory`);
        this.txHdr.set(h, total);
      }
      total += l;
      if (from >= l) continue;
      const n = Math.min(l - from, max - out);
      if (n <= 0) continue; // oversized: the caller counts it from the total
      const v = r.mem.view(c.addr[i] + from, n);
      if (!v) throw new VirtqueueError(`buffer ${i} of head ${c.head} left guest memory`);
      mem.set(v, off + out);
      out += n;
    }
    return total;
  }

  /** Whether the guest has a receive buffer posted (a stopped queue has none). */
  hasRxBuffer(): boolean {
    const r = this.queues[VIRTIO_NET_RXQ];
    if (!r) return false;
    try {
      return r.q.pending() > 0;
    } catch (e) {
      this.stopRx(r, e as Error);
      return false;
    }
  }

  /**
   * Puts one frame into the guest's next receive buffer. With none posted it asks the guest for a
   * kick (rxReady follows) and says 'no-buffer', counting nothing: the caller may keep the frame.
   * A frame the guest does not take as it is (see takes) is the caller's to segment or checksum first.
   */
  receive(mem: Uint8Array, off: number, len: number, meta: PacketMeta = this.plain): RxOutcome {
    const r = this.queues[VIRTIO_NET_RXQ];
    if (!r || !this.takes(meta)) {
      this.stats.rxDropped++;
      return 'dropped';
    }
    try {
      // armKick says whether buffers came while it armed: then take one after all
      if (!r.q.pop(r.chain) && !(r.q.armKick() && r.q.pop(r.chain))) return 'no-buffer';
      const c = r.chain;
      if (c.readable !== 0) throw new VirtqueueError(`rx chain at head ${c.head} has driver-readable buffers`);
      let room = 0;
      for (let i = 0; i < c.count; i++) room += c.len[i];
      let written = 0;
      // the header only once there is a buffer: a no-buffer frame is tried again from the backlog
      if (room < VIRTIO_NET_HDR_SIZE + len || !this.rxHeader(mem, off, len, meta)) this.stats.rxDropped++;
      else {
        written = this.scatter(r, c, mem, off, len);
        this.stats.rxFrames++;
      }
      r.host.began(c.head);
      r.host.completing(c.head);
      r.q.push(c, written);
      r.host.completed(c.head, r.q.usedIdx);
      if (r.q.needsInterrupt()) r.host.interrupt();
      return written > 0 ? 'delivered' : 'dropped';
    } catch (e) {
      this.stopRx(r, e as Error);
      return 'dropped';
    }
  }

  private stopRx(r: Running, e: Error): void {
    this.queues[VIRTIO_NET_RXQ] = null;
    r.host.fault(e.message);
  }

  /** rxHdr for the frame: what the guest acked may travel (a partial checksum, GSO), else zeros; false if it cannot be described. */
  private rxHeader(mem: Uint8Array, off: number, len: number, meta: PacketMeta): boolean {
    const h = this.rxHdr;
    if (this.guestCsum && (meta.csumBlank || meta.dataValidated || meta.gsoType !== XEN_NETIF_GSO_TYPE_NONE)) {
      if (!writeVnetHdr(h, 0, meta, mem, off, len, this.l4)) return false;
    } else h.fill(0);
    // one buffer per frame without MRG_RXBUF
    h[VIRTIO_NET_HDR_NUM_BUFFERS] = 1;
    h[VIRTIO_NET_HDR_NUM_BUFFERS + 1] = 0;
    return true;
  }

  /** rxHdr and the frame, across the chain's buffers. */
  private scatter(r: Running, c: DescChain, frame: Uint8Array, base: number, len: number): number {
    let src = -VIRTIO_NET_HDR_SIZE; // negative: still writing the header
    for (let i = 0; i < c.count && src < len; i++) {
      const n = Math.min(c.len[i], len - src);
      const v = r.mem.view(c.addr[i], n);
      if (!v) throw new VirtqueueError(`buffer ${i} of head ${c.head} left guest memory`);
      let at = 0;
      while (src < 0 && at < n) {
        v[at] = this.rxHdr[VIRTIO_NET_HDR_SIZE + src];
        at++;
        src++;
      }
      if (at < n) {
        v.set(frame.subarray(base + src, base + src + (n - at)), at);
        src += n - at;
      }
    }
    return VIRTIO_NET_HDR_SIZE + len;
  }
}

/** RFC 903 reverse request (what QEMU's own announce sends): who am I, from `mac`, to everyone. */
function rarpAnnouncement(mac: Uint8Array): Uint8Array {
  const f = new Uint8Array(60); // the Ethernet minimum, zero-padded
  const v = new DataView(f.buffer);
  f.fill(0xff, 0, 6);
  f.set(mac, 6);
  v.setUint16(12, ETH_P_RARP);
  v.setUint16(14, 1); // hardware: Ethernet
  v.setUint16(16, 0x0800); // protocol: IPv4
  f[18] = 6;
  f[19] = 4;
  v.setUint16(20, RARP_OP_REQUEST_REVERSE);
  f.set(mac, 22); // sender hardware address; sender IP stays 0
  f.set(mac, 32); // target hardware address; target IP stays 0
  return f;
}

const ETH_P_RARP = 0x8035;
const RARP_OP_REQUEST_REVERSE = 3;
