// A guest's network interface as the rest of Linux sees it: a TAP device with virtio-net headers
// (GSO frames and blank checksums pass whole) inside the guest's network namespace, pumped
// to and from netfront. A confined guest already lives in that namespace and makes the TAP there
// with the CAP_NET_ADMIN it keeps for it. Run from elsewhere (an unconfined guest, tests, tools)
// the TAP is made where we are and moved in (its descriptor stays valid); either way the same ip(8)
// commands configure it, addressed to the namespace only when we are outside it.
import { VIRTIO_NET_HDR_SIZE } from '../abi/virtio.js';
import { native, type Watcher } from '../native/index.js';
import { newL4Info } from '../packet/headers.js';
import { newPacketMeta } from '../packet/meta.js';
import { readVnetHdr, writeVnetHdr } from '../packet/vnet.js';
import type { Netfront } from '../netfront/netfront.js';
import { inNetns, ip, ipIn, netnsAdd, netnsDel, netnsExists } from './ip.js';
import { checkIfName, checkNetnsName, tempTapName } from './names.js';

export interface TapAdapterOptions {
  netfront: Netfront;
  /** namespace to live in; when we are outside it, created if missing (and then removed on close) */
  netns: string;
  /** the interface's name inside the namespace (default eth0) */
  ifname?: string;
  /** the vif's MAC: the TAP must use it, or netback drops its frames as spoofed */
  mac: string;
  /** ADDRESS/PREFIX, optional */
  ip?: string;
  mtu?: number;
  /** a number that makes the temporary host-side name unique in this process */
  tag?: number;
  log?: (line: string) => void;
}

export interface TapStats {
  /** frames read from the TAP and sent through netfront */
  fromTap: number;
  /** frames written to the TAP */
  toTap: number;
  /** frames the kernel handed us that netif cannot carry, or netfront refused */
  fromTapDrops: number;
  /** frames netfront delivered that the TAP did not take (queue full) or could not be described */
  toTapDrops: number;
}

/** keeps the kernel's GSO frames within netif's 65535 bytes, Ethernet header included */
const GSO_MAX_SIZE = 62000;
const READ_BUDGET = 64;
let tags = 0;

export class TapAdapter {
  readonly stats: TapStats = { fromTap: 0, toTap: 0, fromTapDrops: 0, toTapDrops: 0 };
  private watcher: Watcher | null = null;
  private fd = -1;
  private closed = false;
  private waitingSpace = false;
  private readonly meta = newPacketMeta();
  private readonly l4 = newL4Info();

  private constructor(
    readonly netns: string,
    readonly ifname: string,
    private readonly createdNetns: boolean,
    private readonly nf: Netfront,
  ) {}

  static async create(o: TapAdapterOptions): Promise<TapAdapter> {
    const ns = checkNetnsName(o.netns);
    const ifname = checkIfName(o.ifname ?? 'eth0');
    if (!/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(o.mac)) throw new RangeError(`bad MAC ${JSON.stringify(o.mac.slice(0, 40))}`);
    if (o.ip !== undefined && !/^[0-9.]{7,15}\/[0-9]{1,2}$/.test(o.ip)) throw new RangeError(`bad address ${JSON.stringify(o.ip.slice(0, 40))} (expected A.B.C.D/PREFIX)`);
    const mtu = o.mtu ?? 1500;
    if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65521) throw new RangeError(`bad MTU ${mtu}`);
    const inside = inNetns(ns);
    const created = !inside && !(await netnsExists(ns));
    if (created) await netnsAdd(ns);
    const there = inside ? ip : (args: string[]) => ipIn(ns, args);
    let fd = -1;
    try {
      const tap = native.tapOpen(inside ? ifname : tempTapName(o.tag ?? tags++), { vnetHdr: true });
      fd = tap.fd;
      const info = o.netfront.connectInfo;
      native.tapSetOffload(fd, { csum: true, tso4: info.txGsoTcpv4, tso6: info.txGsoTcpv6 });
      if (!inside) {
        await ip(['link', 'set', 'dev', tap.name, 'netns', ns]);
        await ipIn(ns, ['link', 'set', 'dev', tap.name, 'name', ifname]);
      }
      await there(['link', 'set', 'dev', ifname, 'address', o.mac.toLowerCase(), 'mtu', String(mtu), 'gso_max_size', String(GSO_MAX_SIZE)]);
      if (o.ip) await there(['addr', 'add', o.ip, 'dev', ifname]);
      await there(['link', 'set', 'dev', 'lo', 'up']);
      await there(['link', 'set', 'dev', ifname, 'up']);
    } catch (e) {
      if (fd >= 0) native.close(fd);
      if (created) await netnsDel(ns).catch(() => {});
      throw e;
    }
    const a = new TapAdapter(ns, ifname, created, o.netfront);
    a.fd = fd;
    a.start();
    o.log?.(`tap: ${ifname} in netns ${ns}, mac ${o.mac}${o.ip ? `, ${o.ip}` : ''}, mtu ${mtu}`);
    return a;
  }

  private start(): void {
    this.nf.onFrame((buf, off, len, meta) => {
      if (off < VIRTIO_NET_HDR_SIZE || !writeVnetHdr(buf, off - VIRTIO_NET_HDR_SIZE, meta, buf, off, len, this.l4)) {
        this.stats.toTapDrops++;
        return;
      }
      const w = this.fd >= 0 ? native.writeFd(this.fd, buf.subarray(off - VIRTIO_NET_HDR_SIZE), VIRTIO_NET_HDR_SIZE + len) : null;
      if (w === null) this.stats.toTapDrops++;
      else this.stats.toTap++;
    });
    this.watcher = new native.Watcher(this.fd, 'readable', () => this.pump());
  }

  /** TAP -> netfront: one read per frame, straight into a granted tx buffer. */
  private pump(): void {
    const nf = this.nf;
    const meta = this.meta;
    for (let i = 0; i < READ_BUDGET && !this.closed; i++) {
      const buf = nf.reserveTx();
      if (buf === null) {
        // Every buffer is in flight: stop reading (the kernel queues, then drops) until one is back.
        if (!this.waitingSpace) {
          this.waitingSpace = true;
          this.watcher?.pause();
          nf.onTxSpace(() => {
            this.waitingSpace = false;
            if (!this.closed) this.watcher?.resume();
          });
        }
        return;
      }
      const n = native.readFd(this.fd, buf.bytes);
      if (n === null) {
        nf.releaseTx(buf);
        return;
      }
      if (n < VIRTIO_NET_HDR_SIZE + 14 || n > VIRTIO_NET_HDR_SIZE + 0xffff || readVnetHdr(buf.bytes, 0, meta) !== null) {
        nf.releaseTx(buf);
        this.stats.fromTapDrops++;
        continue;
      }
      if (nf.commitTx(buf, VIRTIO_NET_HDR_SIZE, n - VIRTIO_NET_HDR_SIZE, meta)) this.stats.fromTap++;
      else this.stats.fromTapDrops++;
    }
  }

  /** Closing the descriptor removes the TAP; the namespace goes too if we created it. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.nf.onFrame(() => {});
    this.watcher?.close();
    this.watcher = null;
    if (this.fd >= 0) native.close(this.fd);
    this.fd = -1;
    if (this.createdNetns) await netnsDel(this.netns).catch(() => {});
  }
}

