// netback's XenBus side for one vif (Linux xen-netback/xenbus.c): offer features at InitWait,
// connect the vif to the switch when the frontend is Connected (and names our instance), cut it
// off with a logged reason when it misbehaves. There is no hotplug script in a ringside driver
// domain: the switch port is ready as soon as the vif connects, so we write hotplug-status
// ourselves, as vif-bridge would.
import { XenbusState } from '../../src/abi/xenbus.js';
import type { Netback } from '../../src/netback/netback.js';
import { backendFeatureNodes, vifParamsFromNodes } from '../../src/netback/negotiate.js';
import type { Vif } from '../../src/netback/vif.js';
import { XenbusDevice } from '../../src/xenbus/device.js';
import { BACKEND_INSTANCE_KEY, INSTANCE_KEY, Serial, instanceMatches, newInstance } from '../../src/xenbus/session.js';
import type { XenstoreClient } from '../../src/xenstore/client.js';

export class VifBackend {
  private vif: Vif | null = null;
  private instance = '';
  private offering = false;
  private closed = false;
  private readonly serial: Serial;
  private readonly devid: number;

  private constructor(
    private readonly netback: Netback,
    private readonly xb: XenbusDevice,
    private readonly log: (l: string) => void,
  ) {
    this.devid = Number(xb.path.split('/').pop());
    this.serial = new Serial((e) => this.log(`netback ${this.name}: ${e.message}`));
  }

  get name(): string {
    return `vif${this.xb.other.domid}.${this.devid}`;
  }

  static async start(netback: Netback, xs: XenstoreClient, path: string, log: (l: string) => void): Promise<VifBackend> {
    const b = new VifBackend(netback, await XenbusDevice.backend(xs, path), log);
    await b.offer(true);
    await b.xb.onOtherState((s) => b.serial.run(() => b.onFrontend(s)));
    return b;
  }

  private async offer(first: boolean): Promise<void> {
    this.instance = newInstance();
    const keys: Record<string, string | number> = first ? Object.fromEntries(backendFeatureNodes(this.netback.features)) : {};
    await this.xb.writeKeys({ ...keys, [INSTANCE_KEY]: this.instance, 'hotplug-status': 'connected', state: XenbusState.InitWait });
    if (!first) await this.xb.xs.rm(`${this.xb.path}/error`).catch(() => undefined);
    this.offering = true;
  }

  private async onFrontend(s: XenbusState): Promise<void> {
    if (this.closed) return;
    if (s === XenbusState.Connected) {
      if (!this.offering) return;
      const front = await this.xb.snapshotOther();
      if (!instanceMatches(front(BACKEND_INSTANCE_KEY), this.instance)) return; // keys for a previous backend
      this.offering = false;
      const back = await this.xb.snapshotSelf();
      const p = vifParamsFromNodes(this.xb.other.domid, this.devid, front, back, this.netback.features);
      if (!p.ok) return this.fatal(p.error);
      try {
        this.vif = await this.netback.connect(p.value);
      } catch (e) {
        return this.fatal(`connect failed: ${(e as Error).message}`);
      }
      this.vif.onCutOff((reason) => this.serial.run(() => this.fatal(reason)));
      await this.xb.switchState(XenbusState.Connected);
      return;
    }
    if (s === XenbusState.Closing || s === XenbusState.Closed) {
      await this.disconnect();
      await this.xb.switchState(s === XenbusState.Closing ? XenbusState.Closing : XenbusState.Closed);
      this.offering = false;
      return;
    }
    if ((s === XenbusState.Initialising || s === XenbusState.Unknown) && !this.offering) {
      // The frontend is starting over (it restarted, or reconnects after we cut it off).
      await this.disconnect();
      await this.offer(false);
    }
  }

  private async disconnect(): Promise<void> {
    const v = this.vif;
    this.vif = null;
    if (v) await this.netback.disconnect(v).catch(() => undefined);
  }

  private async fatal(reason: string): Promise<void> {
    this.offering = false;
    this.log(`netback ${this.name}: cut off: ${reason}`);
    await this.disconnect();
    await this.xb.writeKeys({ error: reason.slice(0, 1024), state: XenbusState.Closing }).catch(() => undefined);
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.serial.idle();
    await this.xb.close();
    await this.disconnect();
  }
}
