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
  /** one directory per VM: its console and QMP sockets */
  vm: string;
  /** one directory per blk driver domain serving VMs: its vhost-user sockets */
  vhost: string;
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
    vm: join(d, 'vm'),
    vhost: join(d, 'vhost'),
  };
}

export const vmDir = (s: StatePaths, vm: string) => join(s.vm, vm);
export const vmConsoleSocket = (s: StatePaths, vm: string) => join(s.vm, vm, 'console.sock');
export const vmQmpSocket = (s: StatePaths, vm: string) => join(s.vm, vm, 'qmp.sock');
export const vhostDir = (s: StatePaths, backend: string) => join(s.vhost, backend);
export const vhostSocket = (s: StatePaths, backend: string, vm: string, vdev: string) => join(s.vhost, backend, `${vm}-${vdev}.sock`);
