// A running system's state directory: its sockets, pid file and log. Shared by the CLI and the
// control domain so both agree on every path.
import { join, resolve } from 'node:path';

export interface StatePaths {
  dir: string;
  control: string;
  xenstored: string;
  xenstoreDomains: string;
  nbd: string;
  log: string;
  hvPid: string;
}

export function statePaths(dir: string): StatePaths {
  const d = resolve(dir);
  return {
    dir: d,
    control: join(d, 'control.sock'),
    xenstored: join(d, 'xenstored.sock'),
    xenstoreDomains: join(d, 'xs'),
    nbd: join(d, 'nbd'),
    log: join(d, 'ringside.log'),
    hvPid: join(d, 'hv.pid'),
  };
}
