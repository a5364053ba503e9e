// What blkback needs from its domain: grant mapping and event channels. A Domain provides these
// (dom.mapper, dom.evtchn); tests may provide in-process stand-ins with the same semantics.
import type { GrantMapping, MapOptions } from '../grant/mapper.js';

export interface BlkbackMapper {
  map(dom: number, refs: number[], opts?: MapOptions): Promise<GrantMapping>;
  unmap(m: GrantMapping): Promise<void>;
}

export interface BlkbackEvtchn {
  bindInterdomain(remoteDom: number, remotePort: number): Promise<number>;
  on(port: number, handler: () => void): void;
  notify(port: number): void;
  close(port: number): Promise<void>;
}

export interface BlkbackEnv {
  mapper: BlkbackMapper;
  evtchn: BlkbackEvtchn;
  log: (line: string) => void;
}

/** hv maps at most this many refs per hypercall (one descriptor each) */
export const MAP_BATCH = 64;
