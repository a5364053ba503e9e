// A vbd whose frontend is a real VM: the same medium as a Xen-ABI guest's vbd, served as a
// vhost-user-blk device on the socket dom0 named. The backend's xenstore state says where it is:
// InitWait while it listens with nobody connected, Connected once the VM's driver has started a
// queue, back to InitWait when the frontend goes (QEMU's reconnect= finds the socket again).
import { rmSync } from 'node:fs';
import { XenbusState } from '../../src/abi/xenbus.js';
import type { BlockDevice } from '../../src/blkdev/device.js';
import type { XenstoreClient } from '../../src/xenstore/client.js';
import { XenbusDevice } from '../../src/xenbus/device.js';
import { Serial } from '../../src/xenbus/session.js';
import { VhostUserServer } from '../../src/vhost-user/server.js';
import { VirtioBlk } from '../../src/virtio/blk.js';
import type { OpenMedium } from './vbd.js';
import { MAX_VBD_QUEUES as MAX_QUEUES, QUEUES_KEY, SOCKET_KEY } from '../../src/vhost-user/xenstore-keys.js';


export class VhostUserVbd {
  private server: VhostUserServer | null = null;
  private device: BlockDevice | null = null;
  private readonly serial: Serial;
  private closed = false;

  private constructor(
    private readonly xb: XenbusDevice,
    private readonly log: (l: string) => void,
  ) {
    this.serial = new Serial((e) => this.log(`${this.name}: ${e.message}`));
  }

  get name(): string {
    return `vhost-user vbd ${this.xb.other.domid}/${this.xb.path.split('/').pop()}`;
  }

  static async start(xs: XenstoreClient, path: string, open: OpenMedium, log: (l: string) => void): Promise<VhostUserVbd> {
    const v = new VhostUserVbd(await XenbusDevice.backend(xs, path), log);
    await v.init(open);
    return v;
  }

  private async init(open: OpenMedium): Promise<void> {
    const params = await this.xb.read('params');
    const mode = (await this.xb.tryRead('mode')) ?? 'w';
    if (mode !== 'r' && mode !== 'w') return this.fatal(`${this.xb.path}/mode = ${JSON.stringify(mode)}: expected r or w`);
    const socket = await this.xb.tryRead(SOCKET_KEY);
    if (socket === undefined || !socket.startsWith('/') || socket.length > 107)
      return this.fatal(`${this.xb.path}/${SOCKET_KEY} = ${JSON.stringify(socket?.slice(0, 120))}: expected an absolute socket path of at most 107 bytes`);
    const queuesText = (await this.xb.tryRead(QUEUES_KEY)) ?? '1';
    const queues = /^\d{1,2}$/.test(queuesText) ? Number(queuesText) : 0;
    if (queues < 1 || queues > MAX_QUEUES) return this.fatal(`${this.xb.path}/${QUEUES_KEY} = ${JSON.stringify(queuesText.slice(0, 20))}: expected 1..${MAX_QUEUES}`);
    const vdev = (await this.xb.tryRead('dev')) ?? '';
    try {
      this.device = await open(params, mode === 'r');
    } catch (e) {
      return this.fatal(`cannot open ${params}: ${(e as Error).message}`);
    }
    const blk = new VirtioBlk({ name: this.name, device: this.device, readonly: mode === 'r', queues, serial: vdev });
    try {
      // a socket left by our previous instance: the directory is ours alone (dom0 made it for us)
      rmSync(socket, { force: true });
      this.server = new VhostUserServer(socket, blk, {
        log: this.log,
        queueStarted: () => this.serial.run(() => this.setState(XenbusState.Connected)),
        disconnected: () => this.serial.run(() => this.setState(XenbusState.InitWait)),
      });
    } catch (e) {
      return this.fatal(`cannot listen on ${socket}: ${(e as Error).message}`);
    }
    await this.xb.writeKeys({ sectors: String(Math.floor(this.device.size / 512)), 'sector-size': String(this.device.sectorSize), state: XenbusState.InitWait });
    this.log(`${this.name}: serving ${params}${mode === 'r' ? ' read-only' : ''} over vhost-user on ${socket} (${queues} queue${queues > 1 ? 's' : ''})`);
  }

  private async setState(s: XenbusState): Promise<void> {
    if (this.closed) return;
    if ((await this.xb.state()) !== s) await this.xb.switchState(s);
  }

  /** Tells dom0 why in `error` and closes this device only. */
  private async fatal(reason: string): Promise<void> {
    this.log(`${this.name}: ${reason}`);
    await this.server?.close(reason).catch(() => undefined);
    await this.xb.writeKeys({ error: reason.slice(0, 1024), state: XenbusState.Closing }).catch(() => undefined);
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.serial.idle();
    await this.server?.close('the vbd was removed');
    await this.xb.close();
    await this.device?.close().catch(() => undefined);
  }
}
