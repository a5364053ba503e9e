// A vif whose frontend is a real VM: a virtio-net device served over vhost-user on the socket dom0
// named (the XenBus side is VhostUserEnd's), plugged into the same switch as netback's vifs and the
// uplink. Its MAC is the vif's `mac`, enforced like a netback vif's (the switch drops and counts
// other source addresses).
import type { LocalPort, Netback } from '../../src/netback/netback.js';
import { macKey, parseMacBytes } from '../../src/packet/mac.js';
import type { PacketMeta } from '../../src/packet/meta.js';
import { SoftwareGso } from '../../src/packet/segment.js';
import { newPortStats, type SwitchFrame } from '../../src/netswitch/frame.js';
import type { UplinkSink } from '../../src/netswitch/uplink.js';
import { VhostUserEnd } from '../../src/vhost-user/xenbus-end.js';
import { VirtioNet } from '../../src/virtio/net.js';
import { XenbusDevice } from '../../src/xenbus/device.js';
import type { XenstoreClient } from '../../src/xenstore/client.js';

/** The switch's view of the VM: frames it pulls from the guest, frames it hands to the guest. */
class VmPort implements LocalPort {
  readonly stats = newPortStats();
  readonly mac: number;
  drops = 0;
  /** the guest takes no offloads yet: GSO frames from other ports are cut and checksummed here */
  private readonly gso: SoftwareGso;
  private readonly emit = (mem: Uint8Array, off: number, len: number, _meta: PacketMeta): boolean => this.dev.receive(mem, off, len);

  constructor(
    readonly portName: string,
    macBytes: Uint8Array,
    mtu: number,
    private readonly dev: VirtioNet,
  ) {
    this.mac = macKey(macBytes, 0);
    this.gso = new SoftwareGso(mtu + 14);
  }

  deliver(f: SwitchFrame): void {
    if (!this.gso.process(f.mem, f.off, f.len, f.meta, this.emit)) this.drops++;
  }

  receive(sink: UplinkSink, max: number): number {
    return this.dev.pullTx(sink, max);
  }

  hasWork(): boolean {
    return this.dev.hasTxWork();
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
    const dev = new VirtioNet({ name, mac, mtu, txReady: () => this.netback.kick() });
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
