// The domain services netback and netfront use, as structural types: a booted Domain provides
// them (FramePool, GrantTable, GrantMapper, EventChannels), and unit tests provide an in-process
// stand-in, so the cores run the same code in both.
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
  endAccess(ref: number): boolean;
}

export interface MappedGrant {
  readonly bytes: Uint8Array;
  readonly handles: number[];
  readonly readonly: boolean;
}

export interface MapService {
  map(dom: number, refs: number[], opts?: { readonly?: boolean }): Promise<MappedGrant>;
  unmap(m: MappedGrant): Promise<void>;
  copy(ops: GntCopyOp[]): Promise<number[]>;
}

export interface EvtchnService {
  allocUnbound(remoteDom: number): Promise<number>;
  bindInterdomain(remoteDom: number, remotePort: number): Promise<number>;
  on(port: number, handler: () => void): void;
  notify(port: number): void;
  close(port: number): Promise<void>;
}

export type Logger = (line: string) => void;

export interface NetbackEnv {
  frames: FrameService;
  mapper: MapService;
  evtchn: EvtchnService;
  log: Logger;
}

export interface NetfrontEnv {
  frames: FrameService;
  grants: GrantService;
  evtchn: EvtchnService;
  log: Logger;
}
