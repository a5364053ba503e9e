// A vif whose frontend is a real VM: a virtio-net device served over vhost-user on the socket dom0
// named, plugged into the same switch as netback's vifs and the uplink. Its MAC is the vif's
// `mac`, enforced like a netback vif's (the switch drops and counts other source addresses). The
// backend's state is InitWait while it listens, Connected once the guest's driver starts a queue.
import { rmSync } from 'node:fs';
import { XenbusState } from '../../src/abi/xenbus.js';
import type { LocalPort, Netback } from '../../src/netback/netback.js';
import { macKey, parseMacBytes } from '../../src/netif/headers.js';
import type { PacketMeta } from '../../src/netif/meta.js';
import { SoftwareGso } from '../../src/netif/segment.js';
import { newPortStats, type SwitchFrame } from '../../src/netswitch/frame.js';
import type { UplinkSink } from '../../src/netswitch/uplink.js';
import { VhostUserServer } from '../../src/vhost-user/server.js';
import { SOCKET_KEY } from '../../src/vhost-user/xenstore-keys.js';
import { VirtioNet } from '../../src/virtio/net.js';
import { XenbusDevice } from '../../src/xenbus/device.js';
import { Serial } from '../../src/xenbus/session.js';
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
  private server: VhostUserServer | null = null;
  private port: VmPort | null = null;
  private readonly serial: Serial;
  private closed = false;

  private constructor(
    private readonly netback: Netback,
    private readonly xb: XenbusDevice,
    private readonly log: (l: string) => void,
  ) {
    this.serial = new Serial((e) => this.log(`${this.name}: ${e.message}`));
  }

  get name(): string {
    return `vhost-user vif${this.xb.other.domid}.${this.xb.path.split('/').pop()}`;
  }

  static async start(netback: Netback, xs: XenstoreClient, path: string, log: (l: string) => void): Promise<VhostUserVif> {
    const v = new VhostUserVif(netback, await XenbusDevice.backend(xs, path), log);
    await v.init();
    return v;
  }

  private async init(): Promise<void> {
    const macText = (await this.xb.tryRead('mac')) ?? '';
    let mac: Uint8Array;
    try {
      mac = parseMacBytes(macText);
    } catch (e) {
      return this.fatal(`${this.xb.path}/mac: ${(e as Error).message}`);
    }
    if ((mac[0] & 1) !== 0) return this.fatal(`${this.xb.path}/mac ${macText} is a multicast address`);
    const mtuText = (await this.xb.tryRead('mtu')) ?? '1500';
    const mtu = /^\d{2,4}$/.test(mtuText) ? Number(mtuText) : 0;
    if (mtu < 68 || mtu > 9000) return this.fatal(`${this.xb.path}/mtu = ${JSON.stringify(mtuText.slice(0, 20))}: expected 68..9000`);
    const socket = await this.xb.tryRead(SOCKET_KEY);
    if (socket === undefined || !socket.startsWith('/') || Buffer.byteLength(socket) > 107)
      return this.fatal(`${this.xb.path}/${SOCKET_KEY} = ${JSON.stringify(socket?.slice(0, 120))}: expected an absolute socket path of at most 107 bytes`);
    const dev = new VirtioNet({ name: this.name, mac, mtu, txReady: () => this.netback.kick() });
    const port = new VmPort(this.name, mac, mtu, dev);
    try {
      this.netback.addLocalPort(port);
    } catch (e) {
      return this.fatal((e as Error).message);
    }
    this.port = port;
    try {
      // a socket left by our previous instance: the directory is ours alone
      rmSync(socket, { force: true });
      this.server = new VhostUserServer(socket, dev, {
        log: this.log,
        queueStarted: () => this.serial.run(() => this.setState(XenbusState.Connected)),
        disconnected: () => this.serial.run(() => this.setState(XenbusState.InitWait)),
      });
    } catch (e) {
      return this.fatal(`cannot listen on ${socket}: ${(e as Error).message}`);
    }
    await this.xb.writeKeys({ 'hotplug-status': 'connected', state: XenbusState.InitWait });
    this.log(`${this.name}: mac ${macText}, mtu ${mtu}, serving virtio-net over vhost-user on ${socket}`);
  }

  private async setState(s: XenbusState): Promise<void> {
    if (this.closed) return;
    if ((await this.xb.state()) !== s) await this.xb.switchState(s);
  }

  private async fatal(reason: string): Promise<void> {
    this.log(`${this.name}: ${reason}`);
    if (this.port) this.netback.removeLocalPort(this.port);
    this.port = null;
    await this.server?.close(reason).catch(() => undefined);
    await this.xb.writeKeys({ error: reason.slice(0, 1024), state: XenbusState.Closing }).catch(() => undefined);
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.serial.idle();
    if (this.port) this.netback.removeLocalPort(this.port);
    await this.server?.close('the vif was removed');
    await this.xb.close();
  }
}
