// A vbd whose frontend is a real VM: the same medium as a Xen-ABI guest's vbd, served as a
// vhost-user-blk device on the socket dom0 named (the XenBus side is VhostUserEnd's).
import type { BlockDevice } from '../../src/blkdev/device.js';
import type { XenstoreClient } from '../../src/xenstore/client.js';
import { XenbusDevice } from '../../src/xenbus/device.js';
import { VhostUserEnd } from '../../src/vhost-user/xenbus-end.js';
import { MAX_VBD_QUEUES as MAX_QUEUES, QUEUES_KEY } from '../../src/vhost-user/xenstore-keys.js';
import { VirtioBlk } from '../../src/virtio/blk.js';
import type { OpenMedium } from './vbd-xenbus.js';

export class VhostUserVbd {
  private device: BlockDevice | null = null;

  private constructor(private readonly end: VhostUserEnd) {}

  static async start(xs: XenstoreClient, path: string, open: OpenMedium, log: (l: string) => void): Promise<VhostUserVbd> {
    const xb = await XenbusDevice.backend(xs, path);
    const v = new VhostUserVbd(new VhostUserEnd(xb, `vhost-user vbd ${xb.other.domid}/${xb.path.split('/').pop()}`, log));
    await v.init(open, log);
    return v;
  }

  private async init(open: OpenMedium, log: (l: string) => void): Promise<void> {
    const { xb, name } = this.end;
    const params = await xb.read('params');
    const mode = (await xb.tryRead('mode')) ?? 'w';
    if (mode !== 'r' && mode !== 'w') return this.end.fatal(`${xb.path}/mode = ${JSON.stringify(mode)}: expected r or w`);
    const socket = await this.end.socketPath();
    if ('error' in socket) return this.end.fatal(socket.error);
    const queuesText = (await xb.tryRead(QUEUES_KEY)) ?? '1';
    const queues = /^\d{1,2}$/.test(queuesText) ? Number(queuesText) : 0;
    if (queues < 1 || queues > MAX_QUEUES) return this.end.fatal(`${xb.path}/${QUEUES_KEY} = ${JSON.stringify(queuesText.slice(0, 20))}: expected 1..${MAX_QUEUES}`);
    const vdev = (await xb.tryRead('dev')) ?? '';
    try {
      this.device = await open(params, mode === 'r');
    } catch (e) {
      return this.end.fatal(`cannot open ${params}: ${(e as Error).message}`);
    }
    const blk = new VirtioBlk({ name, device: this.device, readonly: mode === 'r', queues, serial: vdev });
    try {
      await this.end.listen(socket.path, blk, { sectors: String(Math.floor(this.device.size / 512)), 'sector-size': String(this.device.sectorSize) });
    } catch (e) {
      return this.end.fatal(`cannot listen on ${socket.path}: ${(e as Error).message}`);
    }
    log(`${name}: serving ${params}${mode === 'r' ? ' read-only' : ''} over vhost-user on ${socket.path} (${queues} queue${queues > 1 ? 's' : ''})`);
  }

  async close(): Promise<void> {
    await this.end.close('the vbd was removed');
    await this.device?.close().catch(() => undefined);
  }
}
