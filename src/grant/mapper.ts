// The grantee's side: map other domains' grants into our address space through hv, batched.
// A mapping of several refs is one contiguous view, as a multi-page ring needs.
import { GNTMAP_device_map, GNTMAP_host_map, GNTMAP_readonly, GNTST, gntstName, type GrantRef } from '../abi/grant.js';
import type { HypercallClient } from '../hypercall/client.js';
import { MAX_FDS_PER_MESSAGE, safeClose } from '../hypercall/channel.js';
import type { GntCopyOp } from '../hypercall/protocol.js';
import { native } from '../native/index.js';
import { CopyRing } from './copy-ring.js';

export class GrantError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'GrantError';
  }
  get statusName(): string {
    return gntstName(this.status);
  }
}

export interface GrantMapping {
  readonly bytes: Uint8Array;
  readonly handles: number[];
  readonly readonly: boolean;
  /**
   * Mapped with `deviceMap`: where this domain's devices reach each page (Xen's dev_bus_addr), in
   * ref order. Absent when hv has no IOMMU to put them in, as Xen without one returns none.
   */
  readonly busAddrs?: readonly number[];
}

export interface MapOptions {
  readonly?: boolean;
  /** GNTMAP_device_map as well: the pages get IOMMU entries (read-only for a read-only map) */
  deviceMap?: boolean;
}

export class GrantMapper {
  constructor(private readonly hc: HypercallClient) {}

  /** Maps `refs` granted by `dom` as one contiguous view. All or nothing. */
  async map(dom: number, refs: GrantRef[], opts: MapOptions & { flags?: number } = {}): Promise<GrantMapping> {
    if (refs.length === 0 || refs.length > MAX_FDS_PER_MESSAGE) throw new RangeError(`map: 1..${MAX_FDS_PER_MESSAGE} refs at a time`);
    const ro = opts.readonly ?? false;
    const flags = (opts.flags ?? GNTMAP_host_map) | (ro ? GNTMAP_readonly : 0) | (opts.deviceMap ? GNTMAP_device_map : 0);
    const { result, fds } = await this.hc.call('gnttab_map', { ops: refs.map((ref) => ({ dom, ref, flags })) });
    const bad = result.results.findIndex((r) => r.status !== GNTST.okay);
    if (bad >= 0) {
      for (const f of fds) safeClose(f);
      const okHandles = result.results.filter((r) => r.status === GNTST.okay).map((r) => r.handle);
      if (okHandles.length > 0) await this.hc.call('gnttab_unmap', { handles: okHandles });
      const st = result.results[bad].status;
      throw new GrantError(st, `map of dom${dom} ref ${refs[bad]} failed: GNTST_${gntstName(st)}`);
    }
    const ordered = result.results.map((r) => fds[r.fdIndex]);
    try {
      const buf = native.mmapFrames(ordered, !ro);
      const m: { bytes: Uint8Array; handles: number[]; readonly: boolean; busAddrs?: number[] } = {
        bytes: new Uint8Array(buf), handles: result.results.map((r) => r.handle), readonly: ro,
      };
      if (result.results.every((r) => isBusAddr(r.devBusAddr))) m.busAddrs = result.results.map((r) => r.devBusAddr as number);
      return m;
    } finally {
      for (const f of fds) safeClose(f);
    }
  }

  async unmap(m: GrantMapping): Promise<void> {
    if (native.isMapped(m.bytes.buffer as ArrayBuffer)) native.munmap(m.bytes.buffer as ArrayBuffer);
    const { result } = await this.hc.call('gnttab_unmap', { handles: m.handles });
    const bad = result.statuses.find((s) => s !== GNTST.okay);
    if (bad !== undefined) throw new GrantError(bad, `unmap failed: GNTST_${gntstName(bad)}`);
  }

  async copy(ops: GntCopyOp[]): Promise<number[]> {
    const { result } = await this.hc.call('gnttab_copy', { ops });
    return result.statuses;
  }

  /** The data path's way to copy: a ring in memory shared with hv (gnttab_copy_ring). */
  openCopyRing(): Promise<CopyRing> {
    return CopyRing.open(this.hc);
  }
}

/** A page address a device can be handed: whole pages, below 2^53. */
function isBusAddr(a: number | undefined): boolean {
  return typeof a === 'number' && Number.isSafeInteger(a) && a >= 0 && a % 4096 === 0;
}

/** hv maps at most this many refs per hypercall (one descriptor each) */
export const MAP_BATCH = 64;
