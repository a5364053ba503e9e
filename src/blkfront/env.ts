// What blkfront needs from its domain: its grant table, its I/O frames and event channels. A
// Domain provides them (dom.grants, dom.frames, dom.evtchn); tests may pass stand-ins.

export interface BlkfrontGrants {
  grantAccess(domid: number, gfn: number, readonly: boolean): number;
  /** false while the backend still maps the grant */
  endAccess(ref: number): boolean;
}

export interface BlkfrontFrames {
  alloc(): number;
  allocContiguous(n: number): number;
  view(gfn: number, pages?: number): Uint8Array;
  release(gfn: number): void;
}

export interface BlkfrontEvtchn {
  allocUnbound(remoteDom: number): Promise<number>;
  on(port: number, handler: () => void): void;
  notify(port: number): void;
  close(port: number): Promise<void>;
}

export interface BlkfrontEnv {
  grants: BlkfrontGrants;
  frames: BlkfrontFrames;
  evtchn: BlkfrontEvtchn;
  log: (line: string) => void;
}
