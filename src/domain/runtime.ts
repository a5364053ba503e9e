// What every domain process starts with: its hypercall channel (fd 3), its boot information,
// its grant table, its I/O frames, and event channels. Domain entry points call Domain.boot().
import { unpack } from 'msgpackr';
import { HypercallClient } from '../hypercall/client.js';
import { MAX_FDS_PER_MESSAGE, safeClose } from '../hypercall/channel.js';
import type { BootInfo } from '../hypercall/protocol.js';
import { GrantTable } from '../grant/table.js';
import { GrantMapper } from '../grant/mapper.js';
import { EventChannels } from '../evtchn/channels.js';
import { FramePool } from '../memory/frames.js';
import { native } from '../native/index.js';

export const HYPERCALL_FD = 3;

export class Domain {
  private constructor(
    readonly hc: HypercallClient,
    readonly info: BootInfo,
    readonly grants: GrantTable,
    readonly frames: FramePool,
  ) {
    this.mapper = new GrantMapper(hc);
    this.evtchn = new EventChannels(hc);
  }

  readonly mapper: GrantMapper;
  readonly evtchn: EventChannels;

  get domid(): number {
    return this.info.domid;
  }
  get name(): string {
    return this.info.name;
  }

  /** Decodes the toolstack's boot arguments (hv carries them as opaque bytes). */
  bootArgs<T>(): T {
    return (this.info.bootArgs.length > 0 ? unpack(this.info.bootArgs) : {}) as T;
  }

  /**
   * Boots from the hypercall channel on `fd`. A domain process dies with hv (PDEATHSIG) and
   * exits when hv closes its channel, so no domain outlives the platform.
   */
  static async boot(fd = HYPERCALL_FD, opts: { exitOnHvLoss?: boolean } = {}): Promise<Domain> {
    if (fd === HYPERCALL_FD) {
      native.setParentDeathSignal(9);
      // Another domain of the same uid, its capabilities dropped, must not read us via /proc.
      native.setUndumpable();
    }
    const hc = new HypercallClient(fd);
    hc.ref();
    if (opts.exitOnHvLoss ?? fd === HYPERCALL_FD) {
      hc.onClosed((r) => {
        process.stderr.write(`hypercall channel lost (${r.kind === 'eof' ? 'hv closed it' : r.message}): exiting\n`);
        process.exit(1);
      });
    }
    const { result: info, fds: gfds } = await hc.call('boot_info', {});
    const grants = new GrantTable(gfds[0], info.grantFrames);
    safeClose(gfds[0]);
    const frameFds: number[] = [];
    for (let start = 0; start < info.ioFrames; start += MAX_FDS_PER_MESSAGE) {
      const count = Math.min(MAX_FDS_PER_MESSAGE, info.ioFrames - start);
      const { fds } = await hc.call('memory_frames', { start, count });
      frameFds.push(...fds);
    }
    const frames = new FramePool(frameFds);
    for (const f of frameFds) safeClose(f);
    return new Domain(hc, info, grants, frames);
  }
}
