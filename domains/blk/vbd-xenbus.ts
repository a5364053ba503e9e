// blkback's XenBus side for one vbd, as Linux's xen-blkback/xenbus.c does it: open the medium
// named in `params`, offer features and go InitWait; connect when the frontend is Initialised
// (with our instance nonce); tear down when it closes or the toolstack removes the device. A
// ring fault halts only this vbd: `error` is written and the backend goes Closing.
import { XenbusState } from '../../src/abi/xenbus.js';
import { BlkbackVbd } from '../../src/blkback/vbd.js';
import type { BlockDevice } from '../../src/blkdev/device.js';
import { RawFile } from '../../src/blkdev/raw-file.js';
import { openNvme } from '../../src/drivers/nvme.js';
import { blkbackConnectKeys, blkbackFeatureKeys, parseBlkfrontConnect } from '../../src/blkif/features.js';
import type { Domain } from '../../src/domain/runtime.js';
import { XenbusDevice } from '../../src/xenbus/device.js';
import { BACKEND_INSTANCE_KEY, INSTANCE_KEY, Serial, instanceMatches, newInstance } from '../../src/xenbus/session.js';
import type { XenstoreClient } from '../../src/xenstore/client.js';

export type OpenMedium = (params: string, readonly: boolean) => Promise<BlockDevice>;

/**
 * The medium named in `params`: `pci:DDDD:BB:DD.F` is an NVMe controller passed through to us
 * (the device path: every DMA through the IOMMU); anything else is a raw image we open directly
 * (like Xen's qdisk backend).
 */
export function mediumOpener(dom: Domain): OpenMedium {
  return async (params, readonly) => {
    if (!params.startsWith('pci:')) return RawFile.open(params, { readonly });
    // mode=r is enforced by blkback itself (BlkbackVbd readonly), whatever the medium.
    return openNvme(dom, params.slice(4));
  };
}

export class VbdBackend {
  private vbd: BlkbackVbd | null = null;
  private device: BlockDevice | null = null;
  private instance = '';
  /** true while we sit at InitWait with the current instance, waiting for a frontend */
  private offering = false;
  private closed = false;
  private readonly serial: Serial;

  private constructor(
    private readonly dom: Domain,
    private readonly xb: XenbusDevice,
    private readonly log: (l: string) => void,
  ) {
    this.serial = new Serial((e) => this.log(`blkback ${this.name}: ${e.message}`));
  }

  get name(): string {
    return `vbd ${this.xb.other.domid}/${this.xb.path.split('/').pop()}`;
  }

  static async start(dom: Domain, xs: XenstoreClient, path: string, open: OpenMedium, log: (l: string) => void): Promise<VbdBackend> {
    const xb = await XenbusDevice.backend(xs, path);
    const b = new VbdBackend(dom, xb, log);
    await b.init(open);
    return b;
  }

  private async init(open: OpenMedium): Promise<void> {
    const params = await this.xb.read('params');
    const mode = (await this.xb.tryRead('mode')) ?? 'w';
    if (mode !== 'r' && mode !== 'w') throw new Error(`${this.xb.path}/mode = ${JSON.stringify(mode)}: expected r or w`);
    try {
      this.device = await open(params, mode === 'r');
    } catch (e) {
      await this.fatal(`cannot open ${params}: ${(e as Error).message}`);
      return;
    }
    this.vbd = new BlkbackVbd({ mapper: this.dom.mapper, evtchn: this.dom.evtchn, log: this.log }, { name: this.name, device: this.device, readonly: mode === 'r' });
    this.vbd.onHalt((reason) => this.serial.run(() => this.fatal(reason)));
    this.instance = newInstance();
    await this.xb.writeKeys({ ...blkbackFeatureKeys(this.vbd.features), [INSTANCE_KEY]: this.instance, state: XenbusState.InitWait });
    this.offering = true;
    await this.xb.onOtherState((s) => this.serial.run(() => this.onFrontend(s)));
  }

  private async onFrontend(s: XenbusState): Promise<void> {
    const vbd = this.vbd;
    if (!vbd || this.closed) return;
    this.log(`blkback ${this.name}: frontend is ${XenbusState[s]}${this.offering ? ' (we are offering)' : ''}`);
    switch (s) {
      case XenbusState.Initialised:
      case XenbusState.Connected: {
        if (!this.offering) return;
        const read = await this.xb.snapshotOther();
        if (!instanceMatches(read(BACKEND_INSTANCE_KEY), this.instance)) {
          this.log(`blkback ${this.name}: frontend keys name backend instance ${read(BACKEND_INSTANCE_KEY)}, not ours: waiting for it to start over`);
          return;
        }
        try {
          this.offering = false;
          const info = await vbd.connect(this.xb.other.domid, parseBlkfrontConnect(read, vbd.features));
          await this.xb.writeKeys({ ...blkbackConnectKeys(info), state: XenbusState.Connected });
        } catch (e) {
          await this.fatal(`connect failed: ${(e as Error).message}`);
        }
        return;
      }
      case XenbusState.Closing:
      case XenbusState.Closed:
        this.offering = false;
        await vbd.disconnect();
        await this.xb.switchState(s === XenbusState.Closing ? XenbusState.Closing : XenbusState.Closed);
        return;
      case XenbusState.Initialising:
      case XenbusState.Unknown:
        // The frontend restarted: drop its old rings and offer ourselves again.
        if (!this.offering) {
          await vbd.disconnect();
          this.instance = newInstance();
          await this.xb.writeKeys({ [INSTANCE_KEY]: this.instance, state: XenbusState.InitWait });
          await this.xb.xs.rm(`${this.xb.path}/error`).catch(() => undefined);
          this.offering = true;
        }
        return;
      default:
    }
  }

  /** xenbus_dev_fatal: tell the frontend why in `error`, and close this device only. */
  private async fatal(reason: string): Promise<void> {
    this.offering = false;
    this.log(`blkback ${this.name}: ${reason}`);
    await this.vbd?.disconnect().catch(() => undefined);
    await this.xb.writeKeys({ error: reason.slice(0, 1024), state: XenbusState.Closing }).catch(() => undefined);
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.serial.idle();
    await this.xb.close();
    await this.vbd?.disconnect().catch(() => undefined);
    await this.device?.close().catch(() => undefined);
  }
}
