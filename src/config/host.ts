// host.cfg: the platform's hardware list (the emulated PCI topology and IOMMU), in xl.cfg syntax:
//   iommu = "vtd"            # or "none"
//   iommu_aw = 48            # 39 (3-level) or 48 (4-level) address width
//   iommu_caching_mode = 0
//   devices = [ "bdf=00:01.0, type=root-port", "bdf=01:00.0, type=nvme, parent=00:01.0, medium=disk0.img" ]
//   cpu_mask = [ "aes" ]     # CPU features this host does not offer VMs (pose as an older CPU)
//   peers = [ "/var/lib/ringside-b" ]  # hosts VMs migrate between: cpu = "baseline" levels across them
// The topology is checked here so the PCI platform and group computation can trust it.

import { formatBdf, type Bdf } from './bdf.js';
import { isAbsolute, resolve } from 'node:path';
import { CPU_NAME } from './domain.js';
import { ConfigError, quote, type ErrorWhere } from './errors.js';
import { CfgReader } from './fields.js';
import { BRIDGE_TYPES, parseHostDevice, type HostDevice, type ParsedHostDevice } from './hostdev.js';
import type { XlCfg } from './xlcfg.js';

export type { HostDevice, HostDeviceType, NicWire, RmrrRegion, ResetMethod } from './hostdev.js';

export interface HostConfig {
  file: string;
  /** the host's name (`host = "a"`): what migrations and `ringside list` call it */
  name: string;
  iommu: { enabled: boolean; addressWidth: 39 | 48; cachingMode: boolean };
  devices: HostDevice[];
  /** QEMU feature names VMs here may not use, whatever the CPU has */
  cpuMask: string[];
  /** the other hosts of this one's migration pool, by state directory */
  peers: string[];
}

export const HOST_KEYS = ['host', 'iommu', 'iommu_aw', 'iommu_caching_mode', 'devices', 'cpu_mask', 'peers'] as const;
export const MAX_PEERS = 16;
/** 256 buses x 32 slots x 8 functions is the architectural limit; this is plenty for a test platform. */
export const MAX_HOST_DEVICES = 1024;

export const DEFAULT_HOST_NAME = 'localhost';

/** The platform when a system has no host.cfg: an IOMMU and no devices. */
export function emptyHost(file = ''): HostConfig {
  return { file, name: DEFAULT_HOST_NAME, iommu: { enabled: true, addressWidth: 48, cachingMode: false }, devices: [], cpuMask: [], peers: [] };
}

export function parseHost(cfg: XlCfg): HostConfig {
  const r = new CfgReader(cfg);
  r.rejectUnknown(HOST_KEYS, 'host.cfg');
  const name = r.string('host', 'a') ?? DEFAULT_HOST_NAME;
  if (!/^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$/.test(name)) r.fail('host', `${JSON.stringify(name)} is not a host name`, 'use 1-63 letters, digits, . and - (a hostname label), e.g. host = "a"');
  const kind = r.oneOf('iommu', ['vtd', 'none'] as const) ?? 'vtd';
  const aw = r.int('iommu_aw', { min: 39, max: 48, what: 'an address width of 39 or 48 bits', example: 48 }) ?? 48;
  if (aw !== 39 && aw !== 48) r.fail('iommu_aw', `${aw} is not a supported address width`, 'write iommu_aw = 39 (3-level tables) or iommu_aw = 48 (4-level tables)');
  const cachingMode = r.flag('iommu_caching_mode') ?? false;
  if (kind === 'none' && (r.has('iommu_aw') || r.has('iommu_caching_mode'))) {
    r.fail(r.has('iommu_aw') ? 'iommu_aw' : 'iommu_caching_mode', 'has no effect with iommu = "none"', 'remove it, or set iommu = "vtd"');
  }

  const parsed = r
    .stringList('devices', 'bdf=00:01.0, type=root-port', MAX_HOST_DEVICES)
    .map((it) => parseHostDevice(it.value, it.where, cfg.dir));
  checkTopology(parsed);
  const cpuMask = r.stringList('cpu_mask', 'aes', 512).map((it) => {
    if (!CPU_NAME.test(it.value)) throw new ConfigError(it.where, `${quote(it.value.slice(0, 80))} is not a CPU feature name`, 'use QEMU\'s feature names (qemu-system-x86_64 -cpu help lists them), e.g. "aes"');
    return it.value;
  });
  const peers = r.stringList('peers', '/var/lib/ringside-b', MAX_PEERS).map((it) => {
    if (!isAbsolute(it.value) || it.value.includes('\0')) throw new ConfigError(it.where, `${quote(it.value.slice(0, 200))} is not an absolute state directory`, "name each peer host by the state directory its 'ringside up --state DIR' uses");
    return resolve(it.value);
  });
  return {
    file: cfg.file,
    name,
    iommu: { enabled: kind === 'vtd', addressWidth: aw as 39 | 48, cachingMode },
    devices: parsed.map((p) => p.dev),
    cpuMask,
    peers,
  };
}

const key = formatBdf;
const slotKey = (b: Bdf) => `${b.domain}:${b.bus}:${b.dev}`;
const busKey = (b: Bdf) => `${b.domain}:${b.bus}`;
const busName = (b: Bdf) => formatBdf(b).slice(0, 7);

function checkTopology(list: ParsedHostDevice[]): void {
  const byBdf = new Map<string, ParsedHostDevice>();
  for (const p of list) {
    const prev = byBdf.get(key(p.dev.bdf));
    if (prev) fail(p, `BDF ${key(p.dev.bdf)} is already used (line ${prev.where.line})`, 'give every device its own bus:device.function');
    byBdf.set(key(p.dev.bdf), p);
  }

  // Parents: must be bridges, same segment, and no loops.
  for (const p of list) {
    const parent = p.dev.parent;
    if (!parent) continue;
    if (p.dev.type === 'root-port' || p.dev.type === 'host-bridge') {
      fail(p, `a ${p.dev.type} sits on the root complex and has no parent`, 'remove parent=');
    }
    const up = byBdf.get(key(parent));
    if (!up) fail(p, `parent ${key(parent)} is not a device in this file`, `add a root-port or pci-bridge at ${key(parent)}, or fix parent=`);
    const upDev = (up as ParsedHostDevice).dev;
    if (!BRIDGE_TYPES.includes(upDev.type)) fail(p, `parent ${key(parent)} is a ${upDev.type}, not a root-port or pci-bridge`, 'devices hang below bridges');
    if (parent.domain !== p.dev.bdf.domain) fail(p, `parent ${key(parent)} is in another PCI segment`, 'a bridge and its children share the segment (DDDD)');
  }
  for (const p of list) {
    const seen = new Set<string>([key(p.dev.bdf)]);
    for (let b = p.dev.parent; b; b = byBdf.get(key(b))?.dev.parent) {
      if (seen.has(key(b))) fail(p, `parent chain of ${key(p.dev.bdf)} loops back to ${key(b)}`, 'bridges must form a tree');
      seen.add(key(b));
    }
  }

  // Buses: everything below one bridge is on that bridge's secondary bus, which nothing else uses.
  const secondaryOf = new Map<string, ParsedHostDevice>(); // bus -> bridge that owns it
  for (const p of list) {
    if (!p.dev.parent) continue;
    const bridge = byBdf.get(key(p.dev.parent)) as ParsedHostDevice;
    const bus = busKey(p.dev.bdf);
    if (bus === busKey(bridge.dev.bdf)) {
      fail(p, `${key(p.dev.bdf)} is on bus ${busName(p.dev.bdf)}, the same bus as its parent bridge ${key(bridge.dev.bdf)}`, 'a device behind a bridge is on the bridge\'s own secondary bus, e.g. 01:00.0 behind 00:01.0');
    }
    const owner = secondaryOf.get(bus);
    if (owner && owner !== bridge) {
      fail(p, `bus ${busName(p.dev.bdf)} is already below ${key(owner.dev.bdf)} (line ${owner.where.line}), but parent= says ${key(bridge.dev.bdf)}`, 'give each bridge its own bus number for its children');
    }
    secondaryOf.set(bus, bridge);
  }
  for (const p of list) {
    const owner = secondaryOf.get(busKey(p.dev.bdf));
    if (!p.dev.parent && owner) {
      fail(p, `${key(p.dev.bdf)} has no parent but bus ${busName(p.dev.bdf)} is below bridge ${key(owner.dev.bdf)}`, `add parent=${key(owner.dev.bdf).slice(5)}`);
    }
  }

  // Multifunction: a slot with several functions needs function 0 and the multifunction bit on each.
  const slots = new Map<string, ParsedHostDevice[]>();
  for (const p of list) slots.set(slotKey(p.dev.bdf), [...(slots.get(slotKey(p.dev.bdf)) ?? []), p]);
  for (const fns of slots.values()) {
    const f0 = fns.find((p) => p.dev.bdf.fn === 0);
    if (!f0) fail(fns[0], `function ${fns[0].dev.bdf.fn} exists but function 0 of the slot does not`, 'PCI enumeration starts at function 0: add it or renumber');
    if (fns.length === 1) continue;
    for (const p of fns) {
      if (p.multifunctionExplicit && !p.dev.multifunction) {
        fail(p, `slot has ${fns.length} functions but multifunction=0`, 'remove multifunction=0 (it is implied)');
      }
      p.dev.multifunction = true;
    }
  }

  // Wires: cables are symmetric between two NICs; TAP names and MACs are unique.
  const taps = new Map<string, ParsedHostDevice>();
  const macs = new Map<string, ParsedHostDevice>();
  const media = new Map<string, ParsedHostDevice>();
  for (const p of list) {
    const w = p.dev.wire;
    if (w?.kind === 'cable') {
      const peer = byBdf.get(key(w.peer));
      if (!peer) fail(p, `cable peer ${key(w.peer)} is not a device in this file`, 'add that NIC or fix wire=cable:');
      const pd = (peer as ParsedHostDevice).dev;
      if (pd === p.dev) fail(p, 'a NIC cannot be cabled to itself', 'name another NIC in wire=cable:');
      if (pd.type !== 'nic') fail(p, `cable peer ${key(w.peer)} is a ${pd.type}, not a nic`, 'cables connect two NICs');
      if (pd.wire?.kind !== 'cable' || key(pd.wire.peer) !== key(p.dev.bdf)) {
        fail(p, `cable to ${key(w.peer)} is one-sided`, `add wire=cable:${key(p.dev.bdf).slice(5)} to ${key(w.peer)} (line ${(peer as ParsedHostDevice).where.line})`);
      }
    }
    if (w?.kind === 'tap') uniq(taps, w.name, p, `TAP ${w.name}`);
    if (p.dev.mac) uniq(macs, p.dev.mac, p, `MAC ${p.dev.mac}`);
    if (p.dev.medium) uniq(media, p.dev.medium, p, `medium ${p.dev.medium}`);
  }
}

function uniq(seen: Map<string, ParsedHostDevice>, k: string, p: ParsedHostDevice, what: string): void {
  const prev = seen.get(k);
  if (prev) fail(p, `${what} is already used by ${key(prev.dev.bdf)} (line ${prev.where.line})`, 'each device needs its own');
  seen.set(k, p);
}

function fail(p: ParsedHostDevice, problem: string, hint?: string): never {
  const w: ErrorWhere = p.where;
  throw new ConfigError(w, problem, hint);
}
