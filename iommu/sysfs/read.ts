// Reading a Linux host's PCI and IOMMU state from sysfs under a root directory (`/` on a real host,
// a fixture tree in tests). Links are read, never followed outside the tree: driver and
// iommu_group are identified by the last component of their link target, as udev and libvirt do.

import { existsSync, lstatSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { basename, join } from 'node:path';

export interface SysfsDevice {
  bdf: string;
  vendor: number | null;
  device: number | null;
  classCode: number | null;
  /** Config byte 0x0E: 0 endpoint, 1 bridge, 2 CardBus; bit 7 multifunction. Null if unreadable. */
  headerType: number | null;
  /** Bound driver, null when unbound. */
  driver: string | null;
  driverOverride: string | null;
  group: number | null;
  /** Methods from reset_method; null when the file is absent (no method, or a kernel before 5.15). */
  resetMethods: string[] | null;
  /** PF of an SR-IOV virtual function. */
  physfn: string | null;
}

export interface ReservedRegion {
  start: bigint;
  end: bigint;
  type: string;
}

export interface SysfsGroup {
  id: number;
  devices: string[];
  type: string | null;
  reserved: ReservedRegion[];
}

export function devicesDir(root: string): string {
  return join(root, 'sys', 'bus', 'pci', 'devices');
}

export function groupsDir(root: string): string {
  return join(root, 'sys', 'kernel', 'iommu_groups');
}

function readText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

function readHex(path: string): number | null {
  const t = readText(path);
  if (t === null) return null;
  const m = /^\s*(?:0x)?([0-9a-fA-F]+)\s*$/.exec(t);
  return m ? parseInt(m[1], 16) : null;
}

function linkName(path: string): string | null {
  try {
    if (!lstatSync(path).isSymbolicLink()) return null;
    return basename(readlinkSync(path));
  } catch {
    return null;
  }
}

export function listDevices(root: string): string[] {
  try {
    return readdirSync(devicesDir(root)).filter((n) => /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/.test(n)).sort();
  } catch {
    return [];
  }
}

export function readDevice(root: string, bdf: string): SysfsDevice | null {
  const dir = join(devicesDir(root), bdf);
  if (!existsSync(dir)) return null;
  let headerType: number | null = null;
  try {
    const cfg = readFileSync(join(dir, 'config'));
    if (cfg.length > 0x0e) headerType = cfg[0x0e];
  } catch {
    headerType = null;
  }
  const override = readText(join(dir, 'driver_override'))?.trim() ?? null;
  const group = linkName(join(dir, 'iommu_group'));
  const reset = readText(join(dir, 'reset_method'));
  return {
    bdf,
    vendor: readHex(join(dir, 'vendor')),
    device: readHex(join(dir, 'device')),
    classCode: readHex(join(dir, 'class')),
    headerType,
    driver: linkName(join(dir, 'driver')),
    driverOverride: override === null || override === '(null)' || override === '' ? null : override,
    group: group !== null && /^\d+$/.test(group) ? Number(group) : null,
    resetMethods: reset === null ? null : reset.split(/\s+/).filter((s) => s !== ''),
    physfn: linkName(join(dir, 'physfn')),
  };
}

/** True when the kernel created any IOMMU group: the IOMMU is on. */
export function iommuEnabled(root: string): boolean {
  try {
    return readdirSync(groupsDir(root)).some((n) => /^\d+$/.test(n));
  } catch {
    return false;
  }
}

export function readGroup(root: string, id: number): SysfsGroup | null {
  const dir = join(groupsDir(root), String(id));
  if (!existsSync(dir)) return null;
  let devices: string[] = [];
  try {
    devices = readdirSync(join(dir, 'devices')).sort();
  } catch {
    devices = [];
  }
  const reserved: ReservedRegion[] = [];
  for (const line of (readText(join(dir, 'reserved_regions')) ?? '').split('\n')) {
    const m = /^\s*0x([0-9a-fA-F]+)\s+0x([0-9a-fA-F]+)\s+(\S+)\s*$/.exec(line);
    if (m) reserved.push({ start: BigInt(`0x${m[1]}`), end: BigInt(`0x${m[2]}`), type: m[3] });
  }
  return { id, devices, type: readText(join(dir, 'type'))?.trim() ?? null, reserved };
}

export function isBridgeDevice(d: SysfsDevice): boolean {
  if (d.headerType !== null) return (d.headerType & 0x7f) === 1 || (d.headerType & 0x7f) === 2;
  return d.classCode !== null && d.classCode >> 8 === 0x0604;
}
