// netfront's XenBus side for one vif, plus the TAP interface in the guest's network namespace
// that carries the guest's real traffic. As netfront does, it goes from Initialising straight to
// Connected once the backend is at InitWait; after a backend restart it sets up fresh rings and
// the link comes back by itself.
import { XenbusState } from '../../src/abi/xenbus.js';
import type { Domain } from '../../src/domain/runtime.js';
import { Netfront } from '../../src/netfront/netfront.js';
import { frontendNodes, parseBackendNodes } from '../../src/netfront/nodes.js';
import { TapAdapter } from '../../src/tap/adapter.js';
import { XenbusDevice } from '../../src/xenbus/device.js';
import { BACKEND_INSTANCE_KEY, INSTANCE_KEY, Serial } from '../../src/xenbus/session.js';
import type { XenstoreClient } from '../../src/xenstore/client.js';

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const NETNS_RE = /^[A-Za-z0-9_.-]{1,64}$/;
const CIDR_RE = /^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/;

export class VifFrontend {
  private nf: Netfront | null = null;
  private tap: TapAdapter | null = null;
  private readonly serial: Serial;
  private closed = false;

  private constructor(
    private readonly dom: Domain,
    private readonly xb: XenbusDevice,
    private readonly cfg: { mac: string; netns: string; ip?: string; mtu: number; queues: number; devid: number },
    private readonly log: (l: string) => void,
  ) {
    this.serial = new Serial((e) => this.log(`netfront ${this.name}: ${e.message}`));
  }

  get name(): string {
    return `vif${this.dom.domid}.${this.cfg.devid}`;
  }

  static async start(dom: Domain, xs: XenstoreClient, path: string, log: (l: string) => void): Promise<VifFrontend> {
    const xb = await XenbusDevice.frontend(xs, path);
    const devid = Number(path.split('/').pop());
    const mac = ((await xb.tryRead('mac')) ?? '').toLowerCase();
    if (!MAC_RE.test(mac)) throw new Error(`${path}/mac is not a MAC address`);
    // dom0 names (and has made) the namespace; the fallback is the config's default
    const netns = (await xb.tryRead('ringside/netns')) ?? `rs-${dom.name}`;
    if (!NETNS_RE.test(netns)) throw new Error(`${path}/ringside/netns = ${JSON.stringify(netns.slice(0, 70))} is not a namespace name`);
    const ip = await xb.tryRead('ringside/ip');
    if (ip !== undefined && !CIDR_RE.test(ip)) throw new Error(`${path}/ringside/ip is not ADDRESS/PREFIX`);
    const mtu = Number((await xb.tryRead('mtu')) ?? 1500);
    if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535) throw new Error(`${path}/mtu is not an MTU`);
    const queues = Number((await xb.tryRead('multi-queue-num-queues')) ?? 1);
    const f = new VifFrontend(dom, xb, { mac, netns, ip, mtu, devid, queues: Number.isInteger(queues) && queues >= 1 && queues <= 8 ? queues : 1 }, log);
    await xb.onOtherState((s) => f.serial.run(() => f.onBackend(s)));
    return f;
  }

  private async onBackend(s: XenbusState): Promise<void> {
    if (this.closed) return;
    if (s === XenbusState.InitWait) {
      await this.enter(XenbusState.Initialising);
      const read = await this.xb.snapshotOther();
      const backendDomid = this.xb.other.domid;
      if (this.nf) await this.nf.reconnect(backendDomid);
      else {
        this.nf = await Netfront.create(
          { frames: this.dom.frames, grants: this.dom.grants, evtchn: this.dom.evtchn, log: this.log },
          { backendDomid, mac: this.cfg.mac, queues: this.cfg.queues, backend: parseBackendNodes(read) },
        );
        this.nf.onFault((reason) => this.log(`netfront ${this.name}: backend misbehaved: ${reason}`));
      }
      const keys: Record<string, string> = Object.fromEntries(frontendNodes(this.nf.connectInfo));
      const instance = read(INSTANCE_KEY);
      if (instance !== undefined) keys[BACKEND_INSTANCE_KEY] = instance;
      // The TAP is configured before Connected: Connected tells the toolstack the vif is usable.
      // eth<devid>: several vifs may share the guest's namespace
      this.tap ??= await TapAdapter.create({ netfront: this.nf, netns: this.cfg.netns, ifname: `eth${this.cfg.devid}`, mac: this.cfg.mac, ip: this.cfg.ip, mtu: this.cfg.mtu, tag: this.cfg.devid, log: this.log });
      await this.xb.writeKeys({ ...keys, state: XenbusState.Connected });
      return;
    }
    if (s !== XenbusState.Connected) await this.enter(XenbusState.Initialising);
  }

  private async enter(s: XenbusState): Promise<void> {
    if ((await this.xb.state()) !== s) await this.xb.switchState(s);
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.serial.idle();
    await this.xb.close();
    await this.tap?.close();
    await this.nf?.close();
  }
}
