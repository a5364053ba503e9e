// One domain's config file (xl.cfg(5) subset plus ringside's few additions) -> a validated
// DomainConfig. Only what one file can know is checked here; cross-file rules are in system.ts.

import { ConfigError, quote, type ErrorWhere } from './errors.js';
import { CfgReader } from './fields.js';
import { parseDisk, type DiskSpec } from './disk-spec.js';
import { parsePciSpec, parseRdm, type PciSpec, type RdmConfig } from './pci.js';
import { checkIfName } from './spec.js';
import { parseVif, type VifSpec } from './vif-spec.js';
import type { XlCfg } from './xlcfg.js';
import { isAbsolute, resolve } from 'node:path';

export type DriverRole = 'blk' | 'net';
export type OnCrash = 'restart' | 'destroy' | 'preserve';
export type DomainType = 'pv' | 'pvh' | 'hvm';
export type Accel = 'kvm' | 'tcg' | 'auto';

/** How a real Linux VM (`type = "hvm"`) boots: xl's direct kernel boot. */
export interface VmBoot {
  /** absolute (relative paths are resolved against the config file's directory) */
  kernel: string;
  ramdisk: string | undefined;
  cmdline: string;
  accel: Accel;
  /** a QEMU CPU model name, or 'baseline': the most capable model every host of the pool offers */
  cpu: string;
}

export interface Uplink {
  kind: 'tap';
  /** Host TAP interface the net driver domain's switch is bridged to. */
  name: string;
}

export interface DomainConfig {
  file: string;
  name: string;
  memoryMiB: number;
  vcpus: number;
  type: DomainType;
  driverDomain: boolean;
  /** Written `role`, if any; system.ts infers it for driver domains that leave it out. */
  role: DriverRole | undefined;
  disks: DiskSpec[];
  vifs: VifSpec[];
  pci: PciSpec[];
  pciPermissive: boolean;
  pciSeize: boolean;
  rdm: RdmConfig;
  onCrash: OnCrash;
  /**
   * Confine the domain (on by default; `seccomp = 0` is for debugging): started under Landlock
   * with only its own media (a guest: its socket directory and its network namespace) reachable,
   * no capabilities but CAP_NET_ADMIN where a TAP needs it, no signals outside itself, and a
   * seccomp deny-list with no_new_privs.
   */
  seccomp: boolean;
  uplink: Uplink | undefined;
  /** a blk driver domain: directories whose images it may serve besides the targets named at start (shared storage a VM may migrate in on) */
  storage: string[];
  /** set exactly when type = "hvm" */
  vm: VmBoot | undefined;
  /** Where each top-level key was written, for cross-file messages. */
  at: Record<string, ErrorWhere>;
}

export const DOMAIN_KEYS = [
  'name',
  'memory',
  'vcpus',
  'type',
  'driver_domain',
  'role',
  'disk',
  'vif',
  'pci',
  'pci_permissive',
  'pci_seize',
  'pci_msitranslate',
  'pci_power_mgmt',
  'rdm',
  'on_crash',
  'seccomp',
  'uplink',
  'storage',
  'kernel',
  'ramdisk',
  'cmdline',
  'extra',
  'root',
  'accel',
  'cpu',
] as const;

/** Keys only a VM's config may carry. */
const VM_KEYS = ['kernel', 'ramdisk', 'cmdline', 'extra', 'root', 'accel', 'cpu'] as const;

/** the CPU model a VM gets unless its config names one: every x86-64 host QEMU runs on offers it */
export const DEFAULT_CPU_MODEL = 'qemu64';
/** how QEMU's CPU model and feature names are spelt */
export const CPU_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
/** models that are whatever the host has rather than a fixed feature set: no host can check them for another */
export const HOST_DEPENDENT_MODELS = new Set(['host', 'max', 'base']);
/** a model a VM can run and another host can check: a QEMU name, neither host-dependent nor the pool's "baseline" */
export const isFixedCpuModel = (m: string): boolean => CPU_NAME.test(m) && m !== 'baseline' && !HOST_DEPENDENT_MODELS.has(m);
export const MAX_CMDLINE = 2048;
const MAX_STORAGE_DIRS = 16;

// Names the control plane uses for itself; a domain called that would be ambiguous in `list` and logs.
const RESERVED_NAMES = ['dom0', 'domain-0', 'hv', 'xenstored'];
export const MAX_MEMORY_MIB = 65536;
export const MAX_VCPUS = 128;
export const MAX_DISKS = 256;
export const MAX_VIFS = 64;
export const MAX_PCI = 32;

export function parseDomain(cfg: XlCfg): DomainConfig {
  const r = new CfgReader(cfg);
  r.rejectUnknown(DOMAIN_KEYS, 'a domain config');

  const name = r.string('name', 'guest1');
  if (name === undefined) {
    throw new ConfigError({ file: cfg.file, line: 1, key: 'name' }, 'missing name', 'every domain needs one, e.g. name = "guest1"');
  }
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$/.test(name)) {
    r.fail('name', `${quote(name)} is not a valid domain name`, 'use 1-63 characters from A-Z a-z 0-9 _ . - starting with a letter, digit or _');
  }
  if (RESERVED_NAMES.includes(name.toLowerCase())) r.fail('name', `${quote(name)} is reserved for the control plane`, 'pick another name');

  const driverDomain = r.flag('driver_domain') ?? false;
  const role = r.oneOf('role', ['blk', 'net'] as const);
  if (role !== undefined && !driverDomain) r.fail('role', 'role applies only to driver domains', 'add driver_domain = 1, or remove role');

  const type: DomainType = r.oneOf('type', ['pv', 'pvh', 'hvm'] as const) ?? 'pv';
  if (type === 'hvm' && driverDomain) r.fail('driver_domain', 'a driver domain cannot be an hvm guest: driver domains are ringside processes', 'remove type = "hvm", or driver_domain');

  const pciPermissive = r.flag('pci_permissive') ?? false;
  const pciSeize = r.flag('pci_seize') ?? false;
  const rdmText = r.string('rdm', 'strategy=host,policy=strict');
  const rdm = rdmText === undefined ? { strategy: 'ignore' as const, policy: 'strict' as const } : parseRdm(rdmText, r.where('rdm'));
  const pciDefaults = {
    permissive: pciPermissive,
    seize: pciSeize,
    msitranslate: r.flag('pci_msitranslate') ?? false,
    powerMgmt: r.flag('pci_power_mgmt') ?? false,
    rdmPolicy: rdm.policy,
  };

  const disks = r.stringList('disk', 'backend=blkdom, vdev=xvda, target=disk.img', MAX_DISKS).map((it) => parseDisk(it.value, it.where, cfg.dir));
  const vifs = r.stringList('vif', 'backend=netdom, mac=00:16:3e:00:00:01', MAX_VIFS).map((it) => parseVif(it.value, it.where, name));
  const pci = r.stringList('pci', '01:00.0', MAX_PCI).map((it) => parsePciSpec(it.value, it.where, pciDefaults));
  if (pci.length > 0 && !driverDomain) {
    r.fail('pci', 'PCI devices can be assigned only to driver domains', 'add driver_domain = 1 to this domain, or move the device to a driver domain');
  }

  let uplink: Uplink | undefined;
  const uplinkText = r.string('uplink', 'tap:rs-up0');
  if (uplinkText !== undefined) {
    if (!driverDomain) r.fail('uplink', 'uplink applies only to net driver domains', 'add driver_domain = 1 and role = "net", or remove uplink');
    if (!uplinkText.startsWith('tap:')) r.fail('uplink', `${quote(uplinkText)} is not an uplink`, 'write uplink = "tap:NAME" (a host TAP interface)');
    uplink = { kind: 'tap', name: checkIfName(r.where('uplink'), 'uplink TAP', uplinkText.slice(4)) };
  }

  const storage = r.stringList('storage', '/srv/ringside/images', MAX_STORAGE_DIRS).map((it) => {
    if (!isAbsolute(it.value) || it.value.includes('\0')) throw new ConfigError(it.where, `${quote(it.value.slice(0, 200))} is not an absolute directory`, 'write e.g. storage = [ "/srv/ringside/images" ]');
    return resolve(it.value);
  });
  if (storage.length > 0 && role !== 'blk') r.fail('storage', 'storage applies only to blk driver domains', 'add driver_domain = 1 and role = "blk", or remove storage');

  // A VM's interface is inside the VM: it has no TAP or namespace on the host, and one queue pair so far.
  for (const v of type === 'hvm' ? vifs : []) {
    if (v.netns !== undefined) throw new ConfigError(v.where, 'netns applies to Xen-ABI guests: a VM configures its interface inside itself', 'remove netns= from this vif');
    if (v.queues !== 1) throw new ConfigError(v.where, `queues=${v.queues}: a VM's vif has one queue pair so far`, 'remove queues= from this vif');
    if (v.mtu > 9000) throw new ConfigError(v.where, `mtu=${v.mtu}: a VM's vif takes at most 9000`, 'write mtu=1500, or up to 9000');
    if (v.rate !== undefined) throw new ConfigError(v.where, "rate= is not applied to a VM's vif yet", 'remove rate= from this vif');
  }
  const vm = type === 'hvm' ? parseVmBoot(r, cfg.dir) : undefined;
  if (type !== 'hvm') for (const k of VM_KEYS) if (r.has(k)) r.fail(k, `${k} applies only to type = "hvm" guests`, `add type = "hvm", or remove ${k}`);

  const at: Record<string, ErrorWhere> = {};
  for (const e of cfg.entries.values()) at[e.key] = { file: cfg.file, line: e.line, column: e.column, key: e.key };

  return {
    file: cfg.file,
    name,
    memoryMiB: r.int('memory', { min: 1, max: MAX_MEMORY_MIB, what: 'a number of MiB', example: 256 }) ?? 128,
    vcpus: r.int('vcpus', { min: 1, max: MAX_VCPUS, what: 'a number of virtual CPUs', example: 1 }) ?? 1,
    type,
    driverDomain,
    role,
    disks,
    vifs,
    pci,
    pciPermissive,
    pciSeize,
    rdm,
    onCrash: r.oneOf('on_crash', ['restart', 'destroy', 'preserve'] as const) ?? (driverDomain ? 'restart' : 'destroy'),
    seccomp: r.flag('seccomp') ?? true,
    uplink,
    storage,
    vm,
    at,
  };
}

/** xl's direct kernel boot keys: cmdline, or root + extra as xl composes them. */
function parseVmBoot(r: CfgReader, dir: string): VmBoot {
  const path = (key: 'kernel' | 'ramdisk', example: string) => {
    const v = r.string(key, example);
    if (v === undefined) return undefined;
    if (v === '' || v.includes('\0')) r.fail(key, `${key} must name a file`, `write e.g. ${key} = "${example}"`);
    return isAbsolute(v) ? v : resolve(dir, v);
  };
  const kernel = path('kernel', '/var/cache/ringside/vm/vmlinuz');
  if (kernel === undefined) r.fail('type', 'an hvm guest needs kernel = "..." (ringside boots VMs by direct kernel boot)', 'add kernel = and ramdisk = (`ringside vm-image` builds a pair)');
  const ramdisk = path('ramdisk', '/var/cache/ringside/vm/initrd.gz');
  const cmdlineText = r.string('cmdline', 'console=ttyS0 quiet');
  const root = r.string('root', '/dev/vda');
  const extra = r.string('extra', 'console=ttyS0');
  if (cmdlineText !== undefined && (root !== undefined || extra !== undefined))
    r.fail(root !== undefined ? 'root' : 'extra', 'cmdline and root/extra both set', 'xl would ignore root and extra: write the whole command line in cmdline');
  const cmdline = cmdlineText ?? [root !== undefined ? `root=${root}` : '', extra ?? ''].filter((x) => x !== '').join(' ');
  const key = cmdlineText !== undefined ? 'cmdline' : extra !== undefined ? 'extra' : 'root';
  if (cmdline.length > MAX_CMDLINE) r.fail(key, `the kernel command line is ${cmdline.length} characters, more than ${MAX_CMDLINE}`, 'shorten it');
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(cmdline)) r.fail(key, 'the kernel command line holds a control character', 'use plain spaces between options');
  const accel = r.oneOf('accel', ['kvm', 'tcg', 'auto'] as const) ?? 'auto';
  const cpu = r.string('cpu', 'Westmere') ?? DEFAULT_CPU_MODEL;
  if (!CPU_NAME.test(cpu)) r.fail('cpu', `${JSON.stringify(cpu.slice(0, 80))} is not a CPU model name`, 'write a QEMU model (qemu-system-x86_64 -cpu help lists them), e.g. cpu = "Westmere", or cpu = "baseline"');
  if (HOST_DEPENDENT_MODELS.has(cpu))
    r.fail('cpu', `"${cpu}" is whatever CPU the host has, which no other host can be checked against`, 'name a fixed model, e.g. cpu = "Westmere", or write cpu = "baseline" for the most capable model every host of the pool offers');
  return { kernel, ramdisk, cmdline, accel, cpu };
}
