// Rules that span files: who serves whom, which hardware goes where, what must be unique across
// the system, and the order domains start in. Each refusal points at the entry that breaks the rule.

import { bdfEqual, formatBdf, type Bdf } from './bdf.js';
import { ConfigError, unknownHint, type ErrorWhere } from './errors.js';
import type { DomainConfig, DriverRole } from './domain.js';
import type { HostConfig, HostDevice } from './host.js';
import { parseNetnsName } from './net.js';
import { vifNetns } from './vif-spec.js';

/** `guest` runs blkfront/netfront on Xen's rings; `vm` is a real Linux VM under QEMU. */
export type DomainRole = DriverRole | 'guest' | 'vm';

/** A domain as the system runs it: its role is settled (written or inferred). */
export type SystemDomain = Omit<DomainConfig, 'role'> & {
  role: DomainRole;
  /** Every PCI function the domain owns, in pci= order, with `*` expanded to the slot's functions. */
  assigned: Bdf[];
};

const fail = (where: ErrorWhere, problem: string, hint?: string): never => {
  throw new ConfigError(where, problem, hint);
};
const loc = (w: ErrorWhere) => `${w.file}:${w.line}`;
const short = (b: Bdf) => (b.domain === 0 ? formatBdf(b).slice(5) : formatBdf(b));

export function crossCheck(domains: DomainConfig[], host: HostConfig): SystemDomain[] {
  const byName = new Map<string, DomainConfig>();
  for (const d of domains) {
    const prev = byName.get(d.name);
    if (prev) fail(d.at.name, `domain name '${d.name}' is already used by ${loc(prev.at.name)}`, 'names must be unique; rename one');
    byName.set(d.name, d);
  }

  checkBackends(domains, byName);
  const roles = resolveRoles(domains, host);
  for (const d of domains) {
    if (d.uplink && roles.get(d.name) !== 'net') fail(d.at.uplink, `uplink needs a net driver domain, but '${d.name}' is a ${roles.get(d.name)} driver domain`, 'move uplink to the net driver domain');
    for (const disk of d.disks) {
      const r = roles.get(disk.backend);
      if (r !== 'blk') fail(disk.where, `backend '${disk.backend}' is a ${r} driver domain; disks need a blk driver domain`, hintFor(domains, roles, 'blk'));
    }
    for (const vif of d.vifs) {
      const r = roles.get(vif.backend);
      if (r !== 'net') fail(vif.where, `backend '${vif.backend}' is a ${r} driver domain; vifs need a net driver domain`, hintFor(domains, roles, 'net'));
    }
  }

  const assigned = checkPci(domains, host);
  checkUnique(domains, host);
  const order = startOrder(domains, byName);
  return order.map((d) => ({ ...d, role: roles.get(d.name) as DomainRole, assigned: assigned.get(d) as Bdf[] }));
}

function hintFor(domains: DomainConfig[], roles: Map<string, DomainRole>, want: DriverRole): string {
  const fits = domains.filter((d) => roles.get(d.name) === want).map((d) => d.name);
  return fits.length ? `use backend=${fits[0]}` : `add a driver domain with role = "${want}"`;
}

function checkBackends(domains: DomainConfig[], byName: Map<string, DomainConfig>): void {
  const names = [...byName.keys()];
  for (const d of domains) {
    for (const dev of [...d.disks, ...d.vifs]) {
      const b = byName.get(dev.backend);
      if (!b) fail(dev.where, `backend '${dev.backend}' is not a domain in this system`, unknownHint(dev.backend, names).replace('known:', 'domains:'));
      if (b === d) fail(dev.where, `'${d.name}' cannot be its own backend`, 'name another driver domain in backend=');
      if (!(b as DomainConfig).driverDomain) {
        fail(dev.where, `backend '${dev.backend}' is not a driver domain`, `add driver_domain = 1 to ${(b as DomainConfig).file}, or pick a driver domain`);
      }
    }
  }
}

/** A driver domain serves one kind of device; it says which (`role`), or its use and hardware show it. */
function resolveRoles(domains: DomainConfig[], host: HostConfig): Map<string, DomainRole> {
  const served = new Map<string, Map<DriverRole, ErrorWhere>>();
  for (const d of domains) {
    for (const [list, kind] of [[d.disks, 'blk'], [d.vifs, 'net']] as const) {
      for (const dev of list) {
        const m = served.get(dev.backend) ?? new Map<DriverRole, ErrorWhere>();
        if (!m.has(kind)) m.set(kind, dev.where);
        served.set(dev.backend, m);
      }
    }
  }
  const roles = new Map<string, DomainRole>();
  for (const d of domains) {
    if (!d.driverDomain) {
      roles.set(d.name, d.type === 'hvm' ? 'vm' : 'guest');
      continue;
    }
    if (d.role) {
      roles.set(d.name, d.role);
      continue;
    }
    const uses = served.get(d.name);
    if (uses && uses.size === 2) {
      fail(d.at.name, `'${d.name}' is backend for disks (${loc(uses.get('blk') as ErrorWhere)}) and vifs (${loc(uses.get('net') as ErrorWhere)})`, 'a driver domain serves one kind: split it into a blk and a net driver domain');
    }
    if (uses && uses.size === 1) {
      roles.set(d.name, [...uses.keys()][0]);
      continue;
    }
    const kinds = new Set<DriverRole>();
    for (const p of d.pci) {
      const dev = host.devices.find((h) => bdfEqual(h.bdf, p.bdf) || (p.allFunctions && sameSlot(h.bdf, p.bdf)));
      if (dev?.type === 'nvme') kinds.add('blk');
      if (dev?.type === 'nic') kinds.add('net');
    }
    if (d.uplink) kinds.add('net');
    if (kinds.size === 1) roles.set(d.name, [...kinds][0]);
    else {
      const why = kinds.size === 2 ? ': it has both an nvme and a nic, and no domain uses it yet' : '';
      fail(d.at.driver_domain ?? d.at.name, `cannot tell whether '${d.name}' is a block or a network driver domain${why}`, 'add role = "blk" or role = "net"');
    }
  }
  return roles;
}

const sameSlot = (a: Bdf, b: Bdf) => a.domain === b.domain && a.bus === b.bus && a.dev === b.dev;

function checkPci(domains: DomainConfig[], host: HostConfig): Map<DomainConfig, Bdf[]> {
  const owner = new Map<string, { domain: DomainConfig; where: ErrorWhere }>();
  const assigned = new Map<DomainConfig, Bdf[]>();
  for (const d of domains) {
    const mine: Bdf[] = [];
    assigned.set(d, mine);
    for (const p of d.pci) {
      if (!host.iommu.enabled) {
        fail(p.where, 'PCI passthrough needs an IOMMU, and host.cfg has iommu = "none"', `set iommu = "vtd" in ${host.file || 'host.cfg'}`);
      }
      const devs: HostDevice[] = p.allFunctions ? host.devices.filter((h) => sameSlot(h.bdf, p.bdf)) : host.devices.filter((h) => bdfEqual(h.bdf, p.bdf));
      if (devs.length === 0) {
        const what = p.allFunctions ? `slot ${short(p.bdf).replace(/\.0$/, '.*')}` : short(p.bdf);
        fail(p.where, `PCI device ${what} is not in the platform`, `add it to ${host.file || 'host.cfg'} devices, or fix the BDF (devices: ${host.devices.map((h) => short(h.bdf)).join(', ') || 'none'})`);
      }
      for (const dev of devs) {
        if (dev.type !== 'nvme' && dev.type !== 'nic') {
          fail(p.where, `${short(dev.bdf)} is a ${dev.type}: Non-endpoint PCI devices cannot be assigned`, 'assign the device below it instead');
        }
        const k = formatBdf(dev.bdf);
        const prev = owner.get(k);
        if (prev) {
          const who = prev.domain === d ? 'this domain' : `'${prev.domain.name}'`;
          fail(p.where, `PCI device ${short(dev.bdf)} is already assigned to ${who} (${loc(prev.where)})`, 'a device belongs to one domain: remove one of the entries');
        }
        owner.set(k, { domain: d, where: p.where });
        mine.push(dev.bdf);
      }
    }
  }
  return assigned;
}

/** A `target=pci:` disk must be an nvme controller passed through to that disk's backend. */
function checkDeviceDisk(d: DomainConfig, bdf: Bdf, where: ErrorWhere, domains: DomainConfig[], host: HostConfig): void {
  const dev = host.devices.find((h) => bdfEqual(h.bdf, bdf));
  if (!dev) fail(where, `target pci:${short(bdf)} is not a device of ${host.file || 'host.cfg'}`, 'name an nvme device listed in host.cfg');
  if (dev!.type !== 'nvme') fail(where, `target pci:${short(bdf)} is a ${dev!.type}, not an nvme controller`, 'a device disk must be an nvme device');
  const disk = d.disks.find((x) => x.where === where)!;
  const backend = domains.find((x) => x.name === disk.backend);
  const owns = backend?.pci.some((p) => p.bdf.bus === bdf.bus && p.bdf.dev === bdf.dev && p.bdf.domain === bdf.domain && (p.allFunctions || p.bdf.fn === bdf.fn));
  if (!owns) fail(where, `target pci:${short(bdf)} is not passed through to the backend '${disk.backend}'`, `add "${short(bdf)}" to pci = [...] in ${disk.backend}'s config`);
}

function checkUnique(domains: DomainConfig[], host: HostConfig): void {
  const macs = new Map<string, string>();
  for (const h of host.devices) if (h.mac) macs.set(h.mac, `${host.file}:${h.line} (NIC ${short(h.bdf)})`);
  const taps = new Map<string, string>();
  for (const h of host.devices) if (h.wire?.kind === 'tap') taps.set(h.wire.name, `${host.file}:${h.line} (NIC ${short(h.bdf)})`);
  const media = new Map<string, string>();
  for (const h of host.devices) if (h.medium) media.set(h.medium, `${host.file}:${h.line} (medium of ${short(h.bdf)})`);
  const netns = new Map<string, { domain: string; at: string }>();
  const ips = new Map<string, string>();
  const writers = new Map<string, string>();
  const readers = new Map<string, string>();

  for (const d of domains) {
    const devids = new Map<number, ErrorWhere>();
    for (const disk of d.disks) {
      const prev = devids.get(disk.devid);
      if (prev) fail(disk.where, `vdev ${disk.vdev} is the same disk (id ${disk.devid}) as the entry at line ${prev.line}`, 'give each disk its own vdev: xvda, xvdb, ...');
      devids.set(disk.devid, disk.where);
      if (disk.device) checkDeviceDisk(d, disk.device, disk.where, domains, host);
      const medium = media.get(disk.target);
      if (medium) fail(disk.where, `target ${disk.targetAsWritten} is the raw medium of a PCI device at ${medium}`, 'a guest disk needs its own image');
      const w = writers.get(disk.target);
      const rd = readers.get(disk.target);
      if (w || (rd && disk.access === 'w')) {
        fail(disk.where, `target ${disk.targetAsWritten} is also used at ${w ?? rd}`, 'an image written by one disk cannot be shared: give each its own image, or make every user access=ro');
      }
      (disk.access === 'w' ? writers : readers).set(disk.target, loc(disk.where));
    }
    for (const vif of d.vifs) {
      const prevMac = macs.get(vif.mac);
      if (prevMac) {
        const hint = vif.macDerived ? 'set mac= explicitly' : 'every vif needs its own MAC';
        fail(vif.where, `MAC ${vif.mac}${vif.macDerived ? ' (derived)' : ''} is already used at ${prevMac}`, hint);
      }
      macs.set(vif.mac, loc(vif.where));
      if (vif.ip) {
        const prevIp = ips.get(vif.ip.address);
        if (prevIp) fail(vif.where, `ip ${vif.ip.address} is already used at ${prevIp}`, 'give each vif its own address');
        ips.set(vif.ip.address, loc(vif.where));
      }
      if (d.type === 'hvm') continue; // a VM's interface lives inside the VM, in no host namespace
      const ns = vifNetns(d.name, vif);
      if (vif.netns === undefined && typeof parseNetnsName(ns) !== 'string')
        fail(vif.where, `the default namespace ${ns} is not a valid netns name (at most 15 characters)`, `set netns= for this vif, e.g. netns=rs-${d.name.slice(0, 12)}`);
      const prev = netns.get(ns);
      // Several vifs of one guest may share its namespace; two guests may not.
      if (prev && prev.domain !== d.name) fail(vif.where, `netns ${ns} is already used by '${prev.domain}' at ${prev.at}`, 'give each guest its own namespace, e.g. netns=rs-' + d.name.slice(0, 12));
      netns.set(ns, { domain: d.name, at: loc(vif.where) });
    }
    checkOneNetns(d);
    if (d.uplink) {
      const prev = taps.get(d.uplink.name);
      if (prev) fail(d.at.uplink, `TAP ${d.uplink.name} is already used at ${prev}`, 'pick another TAP name');
      taps.set(d.uplink.name, loc(d.at.uplink));
    }
  }
}

/**
 * A confined guest is one process that joins one network namespace before it runs and can never
 * leave it, so every vif's TAP must live there. Refused rather than run unconfined: a Xen or Qubes
 * operator expects a config that cannot be honoured to fail at `up`, not to quietly lose its
 * isolation; `seccomp = 0` is the explicit way out.
 */
function checkOneNetns(d: DomainConfig): void {
  if (d.driverDomain || d.type === 'hvm' || !d.seccomp || d.vifs.length < 2) return;
  const first = vifNetns(d.name, d.vifs[0]);
  for (const vif of d.vifs.slice(1)) {
    const ns = vifNetns(d.name, vif);
    if (ns !== first)
      fail(vif.where, `netns ${ns} differs from netns ${first} of the first vif: a confined guest lives in one network namespace`, `give every vif of '${d.name}' the same netns=, or set seccomp = 0 to run it unconfined (debugging only)`);
  }
}

/** Backends before their frontends; among equals, driver domains first, then file order. */
function startOrder(domains: DomainConfig[], byName: Map<string, DomainConfig>): DomainConfig[] {
  const deps = new Map<DomainConfig, Map<DomainConfig, ErrorWhere>>(); // frontend -> backend -> entry
  for (const d of domains) {
    const m = new Map<DomainConfig, ErrorWhere>();
    for (const dev of [...d.disks, ...d.vifs]) {
      const b = byName.get(dev.backend) as DomainConfig;
      if (!m.has(b)) m.set(b, dev.where);
    }
    deps.set(d, m);
  }
  const rank = (d: DomainConfig) => (d.driverDomain ? 0 : 1) * domains.length + domains.indexOf(d);
  const done = new Set<DomainConfig>();
  const order: DomainConfig[] = [];
  while (order.length < domains.length) {
    const ready = domains.filter((d) => !done.has(d) && [...(deps.get(d) as Map<DomainConfig, ErrorWhere>).keys()].every((b) => done.has(b)));
    if (ready.length === 0) {
      const cycle = findCycle(domains.filter((d) => !done.has(d)), deps);
      const where = (deps.get(cycle[0]) as Map<DomainConfig, ErrorWhere>).get(cycle[1]) as ErrorWhere;
      fail(where, `backends form a cycle: ${cycle.map((d) => d.name).join(' -> ')}`, 'a driver domain cannot depend, directly or through others, on a domain it serves; remove one of these disk/vif entries');
    }
    ready.sort((a, b) => rank(a) - rank(b));
    done.add(ready[0]);
    order.push(ready[0]);
  }
  return order;
}

/** Follows dependencies among the blocked domains until one repeats; every blocked domain has one. */
function findCycle(blocked: DomainConfig[], deps: Map<DomainConfig, Map<DomainConfig, ErrorWhere>>): DomainConfig[] {
  const path: DomainConfig[] = [];
  let d = blocked[0];
  while (!path.includes(d)) {
    path.push(d);
    d = [...(deps.get(d) as Map<DomainConfig, ErrorWhere>).keys()].find((b) => blocked.includes(b)) as DomainConfig;
  }
  const cyc = path.slice(path.indexOf(d));
  return [...cyc, d];
}
