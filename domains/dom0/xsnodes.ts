// The xenstore layout libxl writes for a domain and its split devices, with libxl's
// permissions: a domain's home is n0,r<domid>; a frontend device dir is n<F>,r<B>; a backend
// device dir is n<B>,r<F>. Driver domains and frontends find their work here, so these keys are
// the contract between the toolstack and every backend.
import { isXenstoreError, type XsOps } from '../../src/xenstore/client.js';
import type { DiskSpec } from '../../src/config/disk-spec.js';
import type { VifSpec } from '../../src/config/vif-spec.js';
import { XenbusState } from '../../src/abi/xenbus.js';

export const dompath = (domid: number) => `/local/domain/${domid}`;

/** Subdirectories a domain may write in its own home, as libxl creates them. */
const OWN_DIRS = ['device', 'data', 'error', 'drivers', 'feature', 'attr', 'control'];

export async function writeDomainNodes(tx: XsOps, domid: number, name: string, memoryMiB: number, role: string): Promise<void> {
  const home = dompath(domid);
  await tx.mkdir(home);
  await tx.setPerms(home, `n0,r${domid}`);
  // Explicit perms on each key: after a restart under the same domid the old nodes would keep
  // the permissions xenstored stripped when it released the domain.
  for (const [k, v] of [['name', name], ['domid', String(domid)], ['memory/target', String(memoryMiB * 1024)], ['ringside/role', role]]) {
    await tx.write(`${home}/${k}`, v);
    await tx.setPerms(`${home}/${k}`, `n0,r${domid}`);
  }
  for (const k of ['memory', 'ringside']) await tx.setPerms(`${home}/${k}`, `n0,r${domid}`);
  for (const d of OWN_DIRS) {
    await tx.mkdir(`${home}/${d}`);
    await tx.setPerms(`${home}/${d}`, `n${domid}`);
  }
}

export interface DevicePaths {
  frontend: string;
  backend: string;
}

export function vbdPaths(frontendId: number, backendId: number, devid: number): DevicePaths {
  return { frontend: `${dompath(frontendId)}/device/vbd/${devid}`, backend: `${dompath(backendId)}/backend/vbd/${frontendId}/${devid}` };
}

export function vifPaths(frontendId: number, backendId: number, devid: number): DevicePaths {
  return { frontend: `${dompath(frontendId)}/device/vif/${devid}`, backend: `${dompath(backendId)}/backend/vif/${frontendId}/${devid}` };
}

async function writeDir(tx: XsOps, dir: string, perms: string, kv: Record<string, string>): Promise<void> {
  await tx.mkdir(dir);
  await tx.setPerms(dir, perms);
  for (const [k, v] of Object.entries(kv)) await tx.write(`${dir}/${k}`, v);
}

/** Which ends of a device to (re)write: both at creation, one end when that domain restarts. */
export type Ends = { backend: boolean; frontend: boolean };
export const BOTH: Ends = { backend: true, frontend: true };

/**
 * Writes a device end from scratch. A restarted domain's old nodes were handed to dom0 when
 * xenstored released it (XSA-322), so its end is removed and written anew rather than patched.
 */
async function writeEnd(tx: XsOps, dir: string, perms: string, kv: Record<string, string>): Promise<void> {
  await tx.rm(dir).catch((e: unknown) => {
    if (!isXenstoreError(e, 'ENOENT')) throw e;
  });
  await writeDir(tx, dir, perms, kv);
}

/**
 * Re-applies a device end's permissions to every node below it. xenstored drops a released
 * domid from every permission list (XSA-322), so when a domain comes back under the same domid
 * the surviving other end must let it read again.
 */
export async function restorePerms(tx: XsOps, dir: string, perms: string, depth = 0): Promise<void> {
  let kids: string[];
  try {
    kids = await tx.directory(dir);
  } catch (e) {
    if (isXenstoreError(e, 'ENOENT')) return;
    throw e;
  }
  await tx.setPerms(dir, perms);
  if (depth < 3) for (const k of kids) await restorePerms(tx, `${dir}/${k}`, perms, depth + 1);
}

/**
 * The directories above a device end. Set explicitly because xenstored strips a released
 * domain from every permission list: a restarted driver domain must be able to read its
 * backend/<type>/<frontend> again, a restarted guest its device/<type>.
 */
async function writeParents(tx: XsOps, fe: number, be: number, type: 'vbd' | 'vif', ends: Ends): Promise<void> {
  if (ends.backend) {
    for (const p of [`${dompath(be)}/backend`, `${dompath(be)}/backend/${type}`, `${dompath(be)}/backend/${type}/${fe}`]) {
      await tx.mkdir(p);
      await tx.setPerms(p, `n0,r${be}`);
    }
  }
  if (ends.frontend) {
    await tx.mkdir(`${dompath(fe)}/device/${type}`);
    await tx.setPerms(`${dompath(fe)}/device/${type}`, `n${fe}`);
  }
}

/**
 * `extra`: ringside's own backend keys beside libxl's (a VM's disk: its vhost-user transport,
 * socket and queues).
 */
export async function writeVbd(tx: XsOps, fe: number, be: number, disk: DiskSpec, ends: Ends = BOTH, extra: Record<string, string> = {}): Promise<DevicePaths> {
  const p = vbdPaths(fe, be, disk.devid);
  await writeParents(tx, fe, be, 'vbd', ends);
  if (ends.backend) await writeEnd(tx, p.backend, `n${be},r${fe}`, {
    frontend: p.frontend,
    'frontend-id': String(fe),
    online: '1',
    state: String(XenbusState.Initialising),
    params: disk.target,
    type: 'qdisk',
    mode: disk.access,
    'device-type': 'disk',
    removable: '0',
    bootable: '1',
    dev: disk.vdev,
    'discard-enable': disk.discard ? '1' : '0',
    ...extra,
  });
  if (ends.frontend) await writeEnd(tx, p.frontend, `n${fe},r${be}`, {
    backend: p.backend,
    'backend-id': String(be),
    state: String(XenbusState.Initialising),
    'virtual-device': String(disk.devid),
    'device-type': 'disk',
  });
  return p;
}

export async function writeVif(tx: XsOps, fe: number, be: number, vif: VifSpec, ends: Ends = BOTH, extra: Record<string, string> = {}): Promise<DevicePaths> {
  const p = vifPaths(fe, be, vif.devid);
  await writeParents(tx, fe, be, 'vif', ends);
  const backend: Record<string, string> = {
    frontend: p.frontend,
    'frontend-id': String(fe),
    online: '1',
    state: String(XenbusState.Initialising),
    mac: vif.mac,
    handle: String(vif.devid),
    type: 'vif',
    mtu: String(vif.mtu),
  };
  if (vif.rate) backend.rate = `${vif.rate.bytesPerInterval},${vif.rate.intervalUsec}`;
  if (vif.ip) backend.ip = `${vif.ip.address}`;
  Object.assign(backend, extra);
  if (ends.backend) await writeEnd(tx, p.backend, `n${be},r${fe}`, backend);
  const frontend: Record<string, string> = {
    backend: p.backend,
    'backend-id': String(be),
    state: String(XenbusState.Initialising),
    handle: String(vif.devid),
    mac: vif.mac,
    mtu: String(vif.mtu),
    'multi-queue-num-queues': String(vif.queues),
  };
  // Where the guest puts its TAP: ringside's own keys, beside libxl's.
  if (vif.ip) frontend['ringside/ip'] = vif.ip.cidr;
  if (vif.netns) frontend['ringside/netns'] = vif.netns;
  if (ends.frontend) await writeEnd(tx, p.frontend, `n${fe},r${be}`, frontend);
  return p;
}
