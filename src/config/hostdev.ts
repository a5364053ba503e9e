// One entry of host.cfg's `devices = [...]`: an emulated PCI function of the platform, e.g.
//   'bdf=01:00.0, type=nvme, parent=00:01.0, medium=disk0.img, size=64M'
//   'bdf=03:00.0, type=nic, wire=cable:04:00.0, rmrr=0xe0000-0xeffff:relaxable, reset=flr'
// Only what one entry can know is checked here; topology rules live in host.ts.

import { isAbsolute, resolve } from 'node:path';
import { parseBdf, type Bdf } from './bdf.js';
import { quote, unknownHint, type ErrorWhere } from './errors.js';
import { parseMac } from '../packet/mac.js';
import { SeenOptions, checkIfName, specFail, splitSpec } from './spec.js';
import { parseSize } from './units.js';

export type HostDeviceType = 'host-bridge' | 'root-port' | 'pci-bridge' | 'nvme' | 'nic';
export interface RmrrRegion {
  start: bigint;
  end: bigint;
  relaxable: boolean;
}
export type NicWire = { kind: 'none' } | { kind: 'tap'; name: string } | { kind: 'cable'; peer: Bdf };
export type ResetMethod = 'flr' | 'pm' | 'bus';
export interface HostDevice {
  bdf: Bdf;
  type: HostDeviceType;
  /** Upstream bridge / root port; absent = on the root complex. */
  parent?: Bdf;
  acs: boolean;
  multifunction: boolean;
  vendor: number;
  device: number;
  classCode: number;
  /** nvme: raw image path, resolved against the file's directory. */
  medium?: string;
  /** nvme: size to create the medium with if it does not exist. */
  sizeBytes?: number;
  wire?: NicWire;
  mac?: string;
  /** nic: offer checksum offload and TSO where the wire can carry them (default); false: none */
  offloads?: boolean;
  rmrr: RmrrRegion[];
  resetMethods: ResetMethod[];
  line: number;
}

export const DEVICE_TYPES: readonly HostDeviceType[] = ['host-bridge', 'root-port', 'pci-bridge', 'nvme', 'nic'];
export const BRIDGE_TYPES: readonly HostDeviceType[] = ['root-port', 'pci-bridge'];

// Identities of the devices QEMU models for the same roles, so guest-visible IDs look familiar.
const DEFAULTS: Record<HostDeviceType, { vendor: number; device: number; classCode: number; acs: boolean; reset: ResetMethod[] }> = {
  'host-bridge': { vendor: 0x8086, device: 0x29c0, classCode: 0x060000, acs: false, reset: [] },
  'root-port': { vendor: 0x1b36, device: 0x000c, classCode: 0x060400, acs: true, reset: [] },
  'pci-bridge': { vendor: 0x1b36, device: 0x0001, classCode: 0x060400, acs: false, reset: [] },
  nvme: { vendor: 0x1b36, device: 0x0010, classCode: 0x010802, acs: false, reset: ['flr'] },
  nic: { vendor: 0x8086, device: 0x10d3, classCode: 0x020000, acs: false, reset: ['flr'] },
};

const KEYS = ['bdf', 'type', 'parent', 'acs', 'multifunction', 'vendor', 'device', 'class', 'medium', 'size', 'wire', 'mac', 'offloads', 'rmrr', 'reset'] as const;
const ENDPOINT_ONLY: Partial<Record<(typeof KEYS)[number], HostDeviceType[]>> = {
  medium: ['nvme'],
  size: ['nvme'],
  wire: ['nic'],
  mac: ['nic'],
  offloads: ['nic'],
};

/** Parsed entry plus whether multifunction was written, which host.ts needs to reconcile slots. */
export interface ParsedHostDevice {
  dev: HostDevice;
  multifunctionExplicit: boolean;
  where: ErrorWhere;
}

export function parseHostDevice(text: string, where: ErrorWhere, baseDir: string): ParsedHostDevice {
  const fail = (problem: string, hint?: string): never => specFail(where, problem, hint);
  const seen = new SeenOptions(where);
  const opts = new Map<string, string>();
  const rmrrTexts: string[] = [];
  for (const item of splitSpec(text, where)) {
    if (item.key === undefined) {
      if (item.value === '') continue;
      fail(`${quote(item.value)} is not key=value`, "write e.g. 'bdf=01:00.0, type=nvme, parent=00:01.0, medium=disk0.img'");
    }
    const key = item.key as string;
    if (!(KEYS as readonly string[]).includes(key)) fail(`unknown device option '${key}'`, unknownHint(key, KEYS));
    if (key === 'rmrr') rmrrTexts.push(item.value); // a device may have several reserved regions
    else {
      seen.add(key);
      opts.set(key, item.value);
    }
  }

  const bdf = bdfOpt('bdf', opts.get('bdf'), where);
  if (bdf === undefined) fail('missing bdf=', 'add bdf=BB:DD.F, e.g. bdf=01:00.0');
  const typeText = opts.get('type');
  if (typeText === undefined) fail('missing type=', `add type=${DEVICE_TYPES.join('|')}`);
  if (!(DEVICE_TYPES as readonly string[]).includes(typeText as string)) {
    fail(`type=${quote(typeText as string)} is not a device type`, unknownHint(typeText as string, DEVICE_TYPES).replace('known:', 'types:'));
  }
  const type = typeText as HostDeviceType;
  for (const [key, types] of Object.entries(ENDPOINT_ONLY)) {
    if (opts.has(key) && !types.includes(type)) fail(`${key}= applies only to ${types.join('/')} devices, not ${type}`, `remove ${key}=`);
  }
  if (rmrrTexts.length > 0 && BRIDGE_TYPES.concat('host-bridge').includes(type)) fail('rmrr= applies only to endpoint devices', 'remove rmrr=');

  const d = DEFAULTS[type];
  const dev: HostDevice = {
    bdf: bdf as Bdf,
    type,
    acs: opts.has('acs') ? bool01('acs', opts.get('acs') as string, where) : d.acs,
    multifunction: opts.has('multifunction') ? bool01('multifunction', opts.get('multifunction') as string, where) : false,
    vendor: hexOpt('vendor', opts.get('vendor'), 0xffff, where) ?? d.vendor,
    device: hexOpt('device', opts.get('device'), 0xffff, where) ?? d.device,
    classCode: hexOpt('class', opts.get('class'), 0xffffff, where) ?? d.classCode,
    rmrr: rmrrTexts.map((t) => parseRmrr(t, where)),
    resetMethods: opts.has('reset') ? parseReset(opts.get('reset') as string, where) : [...d.reset],
    line: where.line,
  };
  if (dev.vendor === 0xffff || dev.vendor === 0) fail(`vendor=${quote(opts.get('vendor') ?? '')} is not a valid vendor id`, 'e.g. vendor=0x8086');
  const parent = bdfOpt('parent', opts.get('parent'), where);
  if (parent) dev.parent = parent;

  if (type === 'nvme') {
    const medium = opts.get('medium');
    if (!medium) fail('an nvme device needs medium=', 'add medium=<raw image path>, e.g. medium=disk0.img');
    dev.medium = isAbsolute(medium as string) ? (medium as string) : resolve(baseDir, medium as string);
    if (opts.has('size')) {
      const s = parseSize(opts.get('size') as string);
      if (typeof s === 'string') fail(`size: ${s}`);
      dev.sizeBytes = s as number;
    }
  }
  if (type === 'nic') {
    dev.wire = parseWire(opts.get('wire') ?? 'none', where);
    const macText = opts.get('mac');
    if (macText !== undefined) {
      const m = parseMac(macText);
      if (typeof m !== 'string') fail(m.error);
      dev.mac = m as string;
    } else dev.mac = defaultNicMac(dev.bdf);
    if (opts.has('offloads')) dev.offloads = bool01('offloads', opts.get('offloads') as string, where);
  }
  return { dev, multifunctionExplicit: opts.has('multifunction'), where };
}

/** A NIC without mac= gets a stable locally administered one from its BDF, so restarts keep it. */
export function defaultNicMac(bdf: Bdf): string {
  const h = (n: number) => n.toString(16).padStart(2, '0');
  return `02:52:53:${h(bdf.bus)}:${h(bdf.dev)}:${h(bdf.fn)}`;
}

function bdfOpt(key: string, text: string | undefined, where: ErrorWhere): Bdf | undefined {
  if (text === undefined) return undefined;
  const b = parseBdf(text);
  if (typeof b === 'string') specFail(where, `${key}=: ${b}`);
  return b as Bdf;
}

function bool01(key: string, text: string, where: ErrorWhere): boolean {
  if (text !== '0' && text !== '1') specFail(where, `${key}=${quote(text)}: expected 0 or 1`, `write ${key}=1 or ${key}=0`);
  return text === '1';
}

/** IDs are hex as lspci shows them; 0x is optional. */
function hexOpt(key: string, text: string | undefined, max: number, where: ErrorWhere): number | undefined {
  if (text === undefined) return undefined;
  const m = /^(?:0x)?([0-9a-fA-F]{1,6})$/i.exec(text);
  if (!m || parseInt(m[1], 16) > max) specFail(where, `${key}=${quote(text)}: expected hex up to 0x${max.toString(16)}`, `e.g. ${key}=0x${max === 0xffff ? '8086' : '020000'}`);
  return parseInt((m as RegExpExecArray)[1], 16);
}

function parseWire(text: string, where: ErrorWhere): NicWire {
  if (text === 'none') return { kind: 'none' };
  if (text.startsWith('tap:')) return { kind: 'tap', name: checkIfName(where, 'wire TAP', text.slice(4)) };
  if (text.startsWith('cable:')) {
    const b = parseBdf(text.slice(6));
    if (typeof b === 'string') specFail(where, `wire=cable: ${b}`, 'write wire=cable:BB:DD.F naming the other NIC');
    return { kind: 'cable', peer: b as Bdf };
  }
  return specFail(where, `wire=${quote(text)} is not a wire`, 'write wire=none, wire=tap:NAME (a host TAP) or wire=cable:BB:DD.F (another NIC)');
}

const PAGE = 0x1000n;
const MAX_ADDR = (1n << 64n) - 1n;

/** `0xSTART-0xEND[:relaxable]`, END inclusive as in /sys/kernel/iommu_groups/N/reserved_regions. */
function parseRmrr(text: string, where: ErrorWhere): RmrrRegion {
  const m = /^0x([0-9a-fA-F]{1,16})-0x([0-9a-fA-F]{1,16})(?::(relaxable|strict))?$/.exec(text);
  const hint = 'write rmrr=0xSTART-0xEND or rmrr=0xSTART-0xEND:relaxable (END inclusive, page aligned)';
  if (!m) return specFail(where, `rmrr=${quote(text)} is not a region`, hint);
  const start = BigInt(`0x${m[1]}`);
  const end = BigInt(`0x${m[2]}`);
  if (end < start) specFail(where, `rmrr=${text}: end is below start`, hint);
  if (start % PAGE !== 0n || (end + 1n) % PAGE !== 0n || end > MAX_ADDR) specFail(where, `rmrr=${text}: region is not 4 KiB page aligned`, hint);
  return { start, end, relaxable: m[3] === 'relaxable' };
}

function parseReset(text: string, where: ErrorWhere): ResetMethod[] {
  if (text === 'none') return [];
  const out: ResetMethod[] = [];
  for (const m of text.split('+')) {
    if (m !== 'flr' && m !== 'pm' && m !== 'bus') specFail(where, `reset=${quote(text)}: ${quote(m)} is not a reset method`, 'use flr, pm, bus or a list like flr+bus, or none');
    if (out.includes(m as ResetMethod)) specFail(where, `reset=${text}: ${m} is listed twice`);
    out.push(m as ResetMethod);
  }
  return out;
}
