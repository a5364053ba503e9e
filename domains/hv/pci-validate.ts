// platform_init and pci_assign arguments, checked field by field: dom0 is trusted to be the
// toolstack but not to be bug-free, and a bad hardware list must be refused with a reason rather
// than half-built.
import { isAbsolute } from 'node:path';
import { formatBdf, parseBdf, type Bdf } from '../../src/config/bdf.js';
import type { HostConfig, HostDevice, HostDeviceType, NicWire, ResetMethod } from '../../src/config/host.js';
import type { AssignRequest } from '../../iommu/platform/platform.js';
import { ArgError, list, obj, uint } from './validate.js';

const TYPES: readonly HostDeviceType[] = ['host-bridge', 'root-port', 'pci-bridge', 'nvme', 'nic'];
const RESETS: readonly ResetMethod[] = ['flr', 'pm', 'bus'];
export const MAX_PLATFORM_DEVICES = 1024;
const MAX_MEDIUM = 2 ** 44;

export function bdfArg(o: Record<string, unknown>, key: string): Bdf {
  const v = o[key];
  if (typeof v !== 'string' || v.length > 16) throw new ArgError(`${key} must be a PCI address string like 0000:01:00.0`);
  const b = parseBdf(v);
  if (typeof b === 'string') throw new ArgError(`${key}: ${b}`);
  return b;
}

function bool(o: Record<string, unknown>, key: string, dflt?: boolean): boolean {
  const v = o[key];
  if (v === undefined && dflt !== undefined) return dflt;
  if (typeof v !== 'boolean') throw new ArgError(`${key} must be true or false`);
  return v;
}

export function parsePlatformInit(a: Record<string, unknown>): HostConfig {
  const io = obj(a.iommu, 'iommu');
  const aw = uint(io, 'addressWidth', 48);
  if (aw !== 39 && aw !== 48) throw new ArgError(`iommu.addressWidth must be 39 or 48, got ${aw}`);
  const iommu = { enabled: bool(io, 'enabled'), addressWidth: aw as 39 | 48, cachingMode: bool(io, 'cachingMode') };
  const raw = a.devices === undefined || (Array.isArray(a.devices) && a.devices.length === 0) ? [] : list(a, 'devices', MAX_PLATFORM_DEVICES);
  const devices = raw.map((d, i) => device(obj(d, `devices[${i}]`), i));
  const byKey = new Map<string, HostDevice>();
  for (const d of devices) {
    const k = formatBdf(d.bdf);
    if (byKey.has(k)) throw new ArgError(`devices: ${k} is listed twice`);
    byKey.set(k, d);
  }
  for (const d of devices) {
    const k = formatBdf(d.bdf);
    if (d.parent) {
      const p = byKey.get(formatBdf(d.parent));
      if (!p || (p.type !== 'root-port' && p.type !== 'pci-bridge')) throw new ArgError(`devices: parent of ${k} is not a bridge in the list`);
    }
    if (d.wire?.kind === 'cable') {
      const p = byKey.get(formatBdf(d.wire.peer));
      if (!p || p.type !== 'nic' || p === d || p.wire?.kind !== 'cable' || formatBdf(p.wire.peer) !== k) throw new ArgError(`devices: cable of ${k} does not end at a NIC cabled back to it`);
    }
  }
  // a parent chain that loops would make the topology walk forever
  for (const d of devices) {
    const seen = new Set<string>();
    for (let b: Bdf | undefined = d.parent; b; b = byKey.get(formatBdf(b))?.parent) {
      if (seen.has(formatBdf(b))) throw new ArgError(`devices: parent chain of ${formatBdf(d.bdf)} loops`);
      seen.add(formatBdf(b));
    }
  }
  return { file: 'platform_init', name: 'platform_init', iommu, devices, cpuMask: [], peers: [] };
}

function device(o: Record<string, unknown>, i: number): HostDevice {
  const at = `devices[${i}]`;
  const type = o.type;
  if (typeof type !== 'string' || !(TYPES as readonly string[]).includes(type)) throw new ArgError(`${at}.type must be one of ${TYPES.join(', ')}`);
  const rmrr = (Array.isArray(o.rmrr) ? o.rmrr : []).slice(0, 17).map((r, j) => {
    const x = obj(r, `${at}.rmrr[${j}]`);
    const start = uint(x, 'start', Number.MAX_SAFE_INTEGER);
    const end = uint(x, 'end', Number.MAX_SAFE_INTEGER);
    if (end < start || start % 4096 !== 0 || (end + 1) % 4096 !== 0) throw new ArgError(`${at}.rmrr[${j}] must be a page-aligned range with end >= start`);
    return { start: BigInt(start), end: BigInt(end), relaxable: bool(x, 'relaxable') };
  });
  if (Array.isArray(o.rmrr) && o.rmrr.length > 16) throw new ArgError(`${at}.rmrr holds at most 16 regions`);
  const resets = Array.isArray(o.resetMethods) ? o.resetMethods : [];
  for (const r of resets) if (!(RESETS as readonly unknown[]).includes(r)) throw new ArgError(`${at}.resetMethods may hold only flr, pm, bus`);
  const dev: HostDevice = {
    bdf: bdfArg(o, 'bdf'),
    type: type as HostDeviceType,
    acs: bool(o, 'acs'),
    multifunction: bool(o, 'multifunction'),
    vendor: uint(o, 'vendor', 0xffff),
    device: uint(o, 'device', 0xffff),
    classCode: uint(o, 'classCode', 0xffffff),
    rmrr,
    resetMethods: [...new Set(resets as ResetMethod[])],
    line: 0,
  };
  if (o.parent !== undefined) dev.parent = bdfArg(o, 'parent');
  if (type === 'nvme') {
    const m = o.medium;
    if (typeof m !== 'string' || !isAbsolute(m) || m.length > 4096 || m.includes('\0')) throw new ArgError(`${at}.medium must be an absolute path`);
    dev.medium = m;
    if (o.sizeBytes !== undefined) dev.sizeBytes = uint(o, 'sizeBytes', MAX_MEDIUM);
  }
  if (type === 'nic') {
    dev.wire = wire(obj(o.wire ?? { kind: 'none' }, `${at}.wire`), at);
    // the toolstack picks every NIC's address (host.cfg's mac=, or one derived from the BDF)
    if (typeof o.mac !== 'string' || !/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(o.mac)) throw new ArgError(`${at}.mac must be a lowercase MAC like 00:16:3e:00:00:01 (dom0 gives every NIC one)`);
    dev.mac = o.mac;
    if (o.offloads !== undefined) {
      if (typeof o.offloads !== 'boolean') throw new ArgError(`${at}.offloads must be true or false`);
      dev.offloads = o.offloads;
    }
  }
  return dev;
}

function wire(o: Record<string, unknown>, at: string): NicWire {
  if (o.kind === 'none') return { kind: 'none' };
  if (o.kind === 'tap') {
    if (typeof o.name !== 'string' || !/^[A-Za-z0-9_.-]{1,15}$/.test(o.name)) throw new ArgError(`${at}.wire.name must be an interface name of 1-15 characters`);
    return { kind: 'tap', name: o.name };
  }
  if (o.kind === 'cable') return { kind: 'cable', peer: bdfArg(o, 'peer') };
  throw new ArgError(`${at}.wire.kind must be none, tap or cable`);
}

export function parseAssign(a: Record<string, unknown>): AssignRequest[] {
  return list(a, 'devices', 64).map((d, i) => {
    const o = obj(d, `devices[${i}]`);
    const r: AssignRequest = { bdf: bdfArg(o, 'bdf') };
    if (o.allFunctions !== undefined) r.allFunctions = bool(o, 'allFunctions');
    if (o.permissive !== undefined) r.permissive = bool(o, 'permissive');
    if (o.seize !== undefined) r.seize = bool(o, 'seize');
    if (o.rdmPolicy !== undefined) {
      if (o.rdmPolicy !== 'strict' && o.rdmPolicy !== 'relaxed') throw new ArgError(`devices[${i}].rdmPolicy must be strict or relaxed`);
      r.rdmPolicy = o.rdmPolicy;
    }
    return r;
  });
}
