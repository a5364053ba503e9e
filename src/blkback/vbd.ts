// A virtual block device as the backend serves it: one medium, the features offered for it, and
// once a frontend connected, one BlkbackQueue per queue it asked for. The XenBus glue calls
// features() before InitWait, connect() when the frontend is Initialised, and publishes what
// connect() returns before switching to Connected. No xenstore in here.
import { BLKIF_RING, VDISK_READONLY } from '../abi/blkif.js';
import { ringBytes } from '../abi/sring.js';
import { BackRing } from '../ring/back.js';
import type { GrantMapping } from '../grant/mapper.js';
import type { BlockDevice } from '../blkdev/device.js';
import {
  BLKBACK_MAX_PERSISTENT_GRANTS, checkBlkfrontConnect, defaultBlkbackFeatures,
  type BlkbackConnectInfo, type BlkbackFeatures, type BlkfrontConnectInfo,
} from '../blkif/features.js';
import type { BlkbackServices } from '../domain/services.js';
import { BlkbackQueue, type BlkbackQueueStats } from './queue.js';

export interface BlkbackVbdOptions {
  /** for log lines, e.g. "vbd 3/51712" */
  name: string;
  device: BlockDevice;
  /** xenstore mode = r */
  readonly?: boolean;
  /** override what is offered (tests, config); defaults follow Linux blkback */
  features?: Partial<BlkbackFeatures>;
  maxPersistentGrants?: number;
}

export class BlkbackVbd {
  readonly features: BlkbackFeatures;
  readonly readonly: boolean;
  readonly sectors: number;
  /** why the vbd stopped serving (a ring fault), or null */
  halted: string | null = null;
  private queues: BlkbackQueue[] = [];
  private rings: GrantMapping[] = [];
  private ports: number[] = [];
  private haltListeners: ((reason: string) => void)[] = [];
  private frontendDomid = -1;
  /** the medium was lost with requests outstanding (see BlockDevice.onLost) */
  private lost: string | null = null;

  constructor(
    private readonly env: BlkbackServices,
    private readonly opts: BlkbackVbdOptions,
  ) {
    const dev = opts.device;
    this.readonly = (opts.readonly ?? false) || dev.readonly;
    const discard = dev.discardSupport ? { ...dev.discardSupport } : null;
    this.features = { ...defaultBlkbackFeatures(this.readonly, discard), ...opts.features };
    if (this.readonly) this.features = { ...this.features, flushCache: false, barrier: false, discard: null };
    this.sectors = Math.floor(dev.size / 512);
    dev.onLost?.((why) => this.deviceLost(why));
  }

  get connected(): boolean {
    return this.queues.length > 0;
  }

  /** What the backend writes before Connected. */
  connectInfo(): BlkbackConnectInfo {
    return {
      sectors: this.sectors,
      sectorSize: this.opts.device.sectorSize,
      physicalSectorSize: this.opts.device.physicalSectorSize,
      info: this.readonly ? VDISK_READONLY : 0,
    };
  }

  onHalt(listener: (reason: string) => void): void {
    this.haltListeners.push(listener);
  }

  /**
   * Maps the frontend's rings, binds its event channels and starts serving. `front` is checked
   * against what we offered (a frontend asking for more is refused, nothing is mapped).
   */
  async connect(frontendDomid: number, front: BlkfrontConnectInfo): Promise<BlkbackConnectInfo> {
    if (this.connected) throw new Error(`${this.opts.name}: already connected to dom${this.frontendDomid}`);
    const info = checkBlkfrontConnect(front, this.features);
    if (this.lost !== null) throw new Error(`${this.opts.name}: its device was lost (${this.lost}); open it again`);
    this.frontendDomid = frontendDomid;
    this.halted = null;
    try {
      for (let q = 0; q < info.queues.length; q++) {
        const qi = info.queues[q];
        const m = await this.env.mapper.map(frontendDomid, qi.ringRefs, { readonly: false });
        this.rings.push(m);
        const ring = BackRing.attach(m.bytes.buffer as ArrayBuffer, BLKIF_RING, { byteOffset: m.bytes.byteOffset, byteLength: ringBytes(info.ringPageOrder) });
        const port = await this.env.evtchn.bindInterdomain(frontendDomid, qi.eventChannel);
        this.ports.push(port);
        const queue = new BlkbackQueue(this.env, ring, port, this.opts.device, {
          name: info.queues.length > 1 ? `${this.opts.name} q${q}` : this.opts.name,
          frontendDomid,
          sectors: this.sectors,
          readonly: this.readonly,
          features: this.features,
          persistent: info.persistent,
          maxPersistentGrants: this.opts.maxPersistentGrants ?? BLKBACK_MAX_PERSISTENT_GRANTS,
        }, (reason) => this.halt(reason));
        this.queues.push(queue);
        this.env.evtchn.on(port, () => queue.onEvent());
      }
    } catch (e) {
      await this.disconnect();
      throw e;
    }
    this.env.log(
      `blkback ${this.opts.name}: connected to dom${frontendDomid}: ${info.queues.length} queue(s), ring order ${info.ringPageOrder}, ` +
        `persistent ${info.persistent ? 'yes' : 'no'}, ${this.sectors} sectors${this.readonly ? ', read-only' : ''}`,
    );
    // Requests may already be waiting: the frontend can push before it hears from us.
    for (const q of this.queues) q.service();
    return this.connectInfo();
  }

  /** The medium may still write pages of outstanding requests: the vbd is broken for good. */
  private deviceLost(why: string): void {
    this.lost = why;
    const reason = `device lost: ${why}`;
    for (const q of this.queues) q.deviceLost(reason);
    this.halt(reason);
  }

  /** Stops every queue of this vbd (and only this vbd) with a logged reason. */
  halt(reason: string): void {
    if (this.halted !== null) return;
    this.halted = reason;
    this.env.log(`blkback ${this.opts.name}: ring halted, dom${this.frontendDomid} cut off: ${reason}`);
    for (const q of this.queues) q.halt(reason);
    for (const l of this.haltListeners) l(reason);
  }

  /** Teardown (Closing): finish in-flight I/O, unmap everything, close the event channels. */
  async disconnect(): Promise<void> {
    const queues = this.queues.splice(0);
    for (const q of queues) await q.close();
    for (const p of this.ports.splice(0)) await this.env.evtchn.close(p).catch(() => undefined);
    for (const m of this.rings.splice(0)) await this.env.mapper.unmap(m).catch(() => undefined);
  }

  stats(): BlkbackQueueStats[] {
    return this.queues.map((q) => ({ ...q.stats }));
  }
}
