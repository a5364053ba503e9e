// A vif whose frontend is a real VM: a virtio-net device served over vhost-user on the socket dom0
// named (the XenBus side is VhostUserEnd's), plugged into the same switch as netback's vifs and the
// uplink. Its MAC is the vif's `mac`, enforced like a netback vif's (the switch drops and counts
// other source addresses).
import type { LocalPort, Netback } from '../../src/netback/netback.js';
import { macKey, parseMacBytes } from '../../src/packet/mac.js';
import type { PacketMeta } from '../../src/packet/meta.js';
import { SoftwareGso } from '../../src/packet/segment.js';
import { newPacketMeta } from '../../src/packet/meta.js';
import { Backlog } from '../../src/netback/backlog.js';
import { newPortStats, type SwitchFrame } from '../../src/netswitch/frame.js';
import type { UplinkSink } from '../../src/netswitch/uplink.js';
import { VhostUserEnd } from '../../src/vhost-user/xenbus-end.js';
import { VirtioNet } from '../../src/virtio/net.js';
import { XenbusDevice } from '../../src/xenbus/device.js';
import type { XenstoreClient } from '../../src/xenstore/client.js';

/** As netback's per-queue rx backlog: frames wait here while the guest has no buffer posted, within bounds (XSA-392). */
const BACKLOG_BYTES = 32 * 4096;
const BACKLOG_FRAMES = 256;
/** netback's rx drain timeout (Linux's rx_drain_timeout_msecs): a frame that waited longer goes */
const BACKLOG_DRAIN_MS = 10_000;

/** The switch's view of the VM: frames it pulls from the guest, frames it hands to the guest. */
class VmPort implements LocalPort {
  readonly stats = newPortStats();
  readonly mac: number;
  drops = 0;
  /** for what the guest did not ack: GSO frames from other ports are cut, blank checksums filled in, here */
  private readonly gso: SoftwareGso;
  private readonly plain = newPacketMeta();
  private readonly backlog = new Backlog(new Uint8Array(BACKLOG_BYTES), 0, BACKLOG_BYTES, BACKLOG_FRAMES);
  private readonly held: SwitchFrame = { mem: new Uint8Array(0), off: 0, len: 0, meta: newPacketMeta() };
  /** a frame (or GSO segment) for the guest: behind the backlog, into its buffers, or kept while it has none */
  private readonly emit = (mem: Uint8Array, off: number, len: number, meta: PacketMeta): boolean => {
    if (this.backlog.count === 0) {
      const r = this.dev.receive(mem, off, len, meta);
      if (r !== 'no-buffer') return r === 'delivered';
    }
    const h = this.held;
    h.mem = mem;
    h.off = off;
    h.len = len;
    h.meta = meta;
    return this.backlog.push(h, performance.now());
  };

  constructor(
    readonly portName: string,
    macBytes: Uint8Array,
    mtu: number,
    private readonly dev: VirtioNet,
  ) {
    this.mac = macKey(macBytes, 0);
    this.gso = new SoftwareGso(mtu + 14);
  }

  /** what SoftwareGso hands on: segments and checksummed frames (plain), or a small frame as it was */
  private readonly emitCut = (mem: Uint8Array, off: number, len: number, meta: PacketMeta): boolean => this.emit(mem, off, len, this.dev.takes(meta) ? meta : this.plain);

  deliver(f: SwitchFrame): void {
    const ok = this.dev.takes(f.meta) ? this.emit(f.mem, f.off, f.len, f.meta) : this.gso.process(f.mem, f.off, f.len, f.meta, this.emitCut);
    if (!ok) this.drops++;
  }

  receive(sink: UplinkSink, max: number): number {
    this.drain();
    return this.dev.pullTx(sink, max);
  }

  hasWork(): boolean {
    return this.dev.hasTxWork() || (this.backlog.count > 0 && this.dev.hasRxBuffer());
  }

  /** Backlog frames into the buffers the guest has posted since, oldest first. */
  private drain(): void {
    const b = this.backlog;
    const now = performance.now();
    while (b.count > 0 && b.ageOfHead(now) >= BACKLOG_DRAIN_MS) {
      b.pop();
      this.drops++;
    }
    while (b.count > 0) {
      const f = b.peek(0)!;
      const r = this.dev.receive(f.mem, f.off, f.len, f.meta);
      if (r === 'no-buffer') return;
      if (r === 'dropped') this.drops++;
      b.pop();
    }
  }
}

export class VhostUserVif {
  private port: VmPort | null = null;

  private constructor(
    private readonly netback: Netback,
    private readonly end: VhostUserEnd,
  ) {}

  static async start(netback: Netback, xs: XenstoreClient, path: string, log: (l: string) => void): Promise<VhostUserVif> {
    const xb = await XenbusDevice.backend(xs, path);
    const v = new VhostUserVif(netback, new VhostUserEnd(xb, `vhost-user vif${xb.other.domid}.${xb.path.split('/').pop()}`, log));
    await v.init(log);
    return v;
  }

  private async init(log: (l: string) => void): Promise<void> {
    const { xb, name } = this.end;
    const macText = (await xb.tryRead('mac')) ?? '';
    let mac: Uint8Array;
    try {
      mac = parseMacBytes(macText);
    } catch (e) {
      return this.end.fatal(`${xb.path}/mac: ${(e as Error).message}`);
    }
    if ((mac[0] & 1) !== 0) return this.end.fatal(`${xb.path}/mac ${macText} is a multicast address`);
    const mtuText = (await xb.tryRead('mtu')) ?? '1500';
    const mtu = /^\d{2,4}$/.test(mtuText) ? Number(mtuText) : 0;
    if (mtu < 68 || mtu > 9000) return this.end.fatal(`${xb.path}/mtu = ${JSON.stringify(mtuText.slice(0, 20))}: expected 68..9000`);
    const socket = await this.end.socketPath();
    if ('error' in socket) return this.end.fatal(socket.error);
    const dev = new VirtioNet({ name, mac, mtu, txReady: () => this.netback.kick(), rxReady: () => this.netback.kick() });
    const port = new VmPort(name, mac, mtu, dev);
    try {
      this.netback.addLocalPort(port);
    } catch (e) {
      return this.end.fatal((e as Error).message);
    }
    this.port = port;
    try {
      await this.end.listen(socket.path, dev, { 'hotplug-status': 'connected' });
    } catch (e) {
      return this.fail(`cannot listen on ${socket.path}: ${(e as Error).message}`);
    }
    log(`${name}: mac ${macText}, mtu ${mtu}, serving virtio-net over vhost-user on ${socket.path}`);
  }

  /** Off the switch, then VhostUserEnd's fatal. */
  private async fail(reason: string): Promise<void> {
    this.unplug();
    await this.end.fatal(reason);
  }

  private unplug(): void {
    if (this.port) this.netback.removeLocalPort(this.port);
    this.port = null;
  }

  async close(): Promise<void> {
    this.unplug();
    await this.end.close('the vif was removed');
  }
}
