// What a backend or frontend needs from the domain it runs in, written once: its I/O frames, its
// grant table, grant mapping and copying through hv, and event channels. A booted Domain
// (runtime.ts) provides all of them; the unit tests of the rings' ends pass in-process stand-ins
// with Xen's semantics. Each end names the part it uses, so a stand-in need not fake the rest.
import type { GrantMapping, MapOptions } from '../grant/mapper.js';
import type { GntCopyOp } from '../hypercall/protocol.js';

export interface FrameService {
  /** all of this domain's I/O frames, frame gfn at byte gfn * 4096 */
  readonly memory: Uint8Array;
  alloc(): number;
  allocContiguous(n: number): number;
  release(gfn: number): void;
  view(gfn: number, pages?: number): Uint8Array;
}

export interface GrantService {
  grantAccess(domid: number, gfn: number, readonly: boolean): number;
  /** false while the other end still maps the grant */
  endAccess(ref: number): boolean;
}

export interface MapService {
  map(dom: number, refs: number[], opts?: MapOptions): Promise<GrantMapping>;
  unmap(m: GrantMapping): Promise<void>;
  copy(ops: GntCopyOp[]): Promise<number[]>;
  /** a grant-copy ring shared with hv, where the domain has one (a stand-in may not) */
  openCopyRing?(): Promise<CopyRingPort>;
}

/** Batches of GNTTABOP_copy in shared memory (src/grant/copy-ring.ts): slots in, statuses out. */
export interface CopyRingPort {
  readonly capacity: number;
  set(i: number, srcRef: number, srcDom: number, srcOff: number, dstRef: number, dstDom: number, dstOff: number, len: number, flags: number): void;
  status(i: number): number;
  run(n: number): Promise<void>;
}

export interface EvtchnService {
  allocUnbound(remoteDom: number): Promise<number>;
  bindInterdomain(remoteDom: number, remotePort: number): Promise<number>;
  on(port: number, handler: () => void): void;
  notify(port: number): void;
  close(port: number): Promise<void>;
}

export type Logger = (line: string) => void;

export interface DomainServices {
  frames: FrameService;
  grants: GrantService;
  mapper: MapService;
  evtchn: EvtchnService;
  log: Logger;
}

/** netback copies between its frames and the guest's grants. */
export type NetbackServices = Pick<DomainServices, 'frames' | 'mapper' | 'evtchn' | 'log'>;
/** blkback maps the guest's grants (persistently or per request) and never copies. */
export type BlkbackServices = { mapper: Pick<MapService, 'map' | 'unmap'>; evtchn: Omit<EvtchnService, 'allocUnbound'>; log: Logger };
/** A frontend grants its own frames and allocates the ports its backend binds. */
export type FrontendServices = { frames: FrameService; grants: GrantService; evtchn: Omit<EvtchnService, 'bindInterdomain'>; log: Logger };
