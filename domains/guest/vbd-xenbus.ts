// blkfront's XenBus side for one vbd, plus the NBD export that puts the disk in front of real
// software. The frontend follows its backend through restarts: whenever the backend (re)appears
// at InitWait it sets up fresh rings, names the backend instance it negotiated with, and replays
// whatever was in flight, so nothing acknowledged is lost.
import { XenbusState } from '../../src/abi/xenbus.js';
import { Blkfront } from '../../src/blkfront/device.js';
import { blkfrontConnectKeys, parseBlkbackConnect, parseBlkbackFeatures } from '../../src/blkif/features.js';
import type { DomainBootArgs } from '../../src/domain/bootargs.js';
import type { Domain } from '../../src/domain/runtime.js';
import { NbdServer } from '../../src/nbd/server.js';
import { XenbusDevice } from '../../src/xenbus/device.js';
import { BACKEND_INSTANCE_KEY, INSTANCE_KEY, Serial } from '../../src/xenbus/session.js';
import type { XenstoreClient } from '../../src/xenstore/client.js';

export class VbdFrontend {
  private nbd: NbdServer | null = null;
  private readonly serial: Serial;
  private closed = false;

  private constructor(
    private readonly xb: XenbusDevice,
    private readonly front: Blkfront,
    private readonly exportPath: string,
    private readonly vdev: string,
    private readonly log: (l: string) => void,
  ) {
    this.serial = new Serial((e) => this.log(`blkfront ${vdev}: ${e.message}`));
  }

  static async start(dom: Domain, xs: XenstoreClient, path: string, args: DomainBootArgs, log: (l: string) => void): Promise<VbdFrontend> {
    const xb = await XenbusDevice.frontend(xs, path);
    const handle = Number(await xb.read('virtual-device'));
    if (!Number.isInteger(handle) || handle <= 0 || handle > 0xffffffff) throw new Error(`${path}/virtual-device is not a vbd number`);
    const dev = (await xb.readOther('dev')) ?? String(handle);
    if (!/^[a-z0-9]{1,16}$/.test(dev)) throw new Error(`backend's dev = ${JSON.stringify(dev.slice(0, 20))} is not a device name`);
    const front = new Blkfront({ grants: dom.grants, frames: dom.frames, evtchn: dom.evtchn, log }, { name: dev, handle });
    // nbdDir is this guest's own export directory (dom0 links <name>-<dev>.sock to it)
    const f = new VbdFrontend(xb, front, `${args.nbdDir}/${dev}.sock`, dev, log);
    front.onFault((reason) => f.serial.run(async () => {
      await f.drop(`backend misbehaved: ${reason}`);
      await f.enter(XenbusState.Closing);
    }));
    await xb.onOtherState((s) => f.serial.run(() => f.onBackend(s)));
    return f;
  }

  private async onBackend(s: XenbusState): Promise<void> {
    if (this.closed) return;
    switch (s) {
      case XenbusState.InitWait: {
        await this.drop('backend (re)started');
        await this.enter(XenbusState.Initialising);
        const read = await this.xb.snapshotOther();
        const info = await this.front.prepare(this.xb.other.domid, parseBlkbackFeatures(read));
        const keys: Record<string, string | number> = { ...blkfrontConnectKeys(info), state: XenbusState.Initialised };
        const instance = read(INSTANCE_KEY);
        if (instance !== undefined) keys[BACKEND_INSTANCE_KEY] = instance;
        await this.xb.writeKeys(keys);
        return;
      }
      case XenbusState.Connected: {
        if (this.front.state !== 'prepared') return;
        this.front.connect(parseBlkbackConnect(await this.xb.snapshotOther()));
        // Export first: Connected tells the toolstack the disk is usable, socket included.
        this.nbd ??= await NbdServer.start({ socketPath: this.exportPath, exports: [{ name: this.vdev, disk: this.front }], log: this.log });
        await this.xb.switchState(XenbusState.Connected);
        return;
      }
      case XenbusState.Closing:
      case XenbusState.Closed:
        await this.drop(`backend ${XenbusState[s]}`);
        await this.enter(XenbusState.Closed);
        return;
      default:
        // Initialising or gone: the backend is being replaced; wait for its InitWait.
        await this.drop(`backend ${XenbusState[s]}`);
        await this.enter(XenbusState.Initialising);
    }
  }

  private async enter(s: XenbusState): Promise<void> {
    if ((await this.xb.state()) !== s) await this.xb.switchState(s);
  }

  /** Releases the rings, keeping unanswered requests for the next backend. */
  private async drop(reason: string): Promise<void> {
    if (this.front.state === 'prepared' || this.front.state === 'connected') await this.front.disconnect(reason);
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.serial.idle();
    await this.nbd?.close();
    await this.xb.close();
    await this.front.close();
  }
}
