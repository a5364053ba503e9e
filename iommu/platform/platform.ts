// The emulated PCI platform: who owns each function, the xl-style assignable pool, the rules a
// passthrough request must pass, and config-space access on behalf of owners. Ownership changes
// are mirrored into the IOMMU through an IommuBinding, so a device's DMA always lands in exactly
// its owner's IOMMU domain (or faults, for devices nobody was given).

import { formatBdf, parseBdf, sourceId, type Bdf } from '../../src/config/bdf.js';
import type { HostConfig, HostDevice, ResetMethod } from '../../src/config/host.js';
import type { CheckFinding } from '../check-report.js';
import { className } from './class-names.js';
import type { FaultInfo } from '../../src/hw/vtd/faults.js';
import { faultReasonText } from '../../src/abi/vtd-fault-reasons.js';
import { ConfigSpace } from './config-space.js';
import { CFG_SIZE } from '../../src/abi/pci.js';
import { computeGroups, type IommuGroup } from './groups.js';
import type { IommuBinding } from './iommu-domains.js';
import { Topology, isEndpoint, type PciNode } from './topology.js';

export type RdmPolicy = 'strict' | 'relaxed';

/**
 * - platform: bridges, ports and the host bridge; never leave.
 * - host: an endpoint nobody made assignable; no context entry, its DMA faults (reason 2).
 * - quarantine: assignable and unassigned (xl's pciback pool); in the quarantine IOMMU domain,
 *   whose empty tables make all its DMA fault.
 * - domain: assigned.
 */
export type DeviceOwner = { kind: 'platform' } | { kind: 'host' } | { kind: 'quarantine' } | { kind: 'domain'; domid: number };

/** A pci= entry, field-compatible with the config parser's PciSpec. */
export interface AssignRequest {
  bdf: Bdf;
  allFunctions?: boolean;
  permissive?: boolean;
  seize?: boolean;
  rdmPolicy?: RdmPolicy;
}

export interface AssignOptions {
  permissive?: boolean;
  seize?: boolean;
  rdmPolicy?: RdmPolicy;
}

export type PlatformResult = { ok: true; warnings: string[] } | { ok: false; error: string };

export interface IdentityMap {
  bdf: string;
  start: bigint;
  end: bigint;
}

export type AssignResult =
  | {
      ok: true;
      devices: string[];
      warnings: string[];
      resets: { bdf: string; method: ResetMethod }[];
      /** RMRR regions the domain's IOMMU tables must map 1:1 (Xen's rdm strategy=host). */
      identityMaps: IdentityMap[];
    }
  | { ok: false; error: string; problems: CheckFinding[] };

export interface PciDeviceInfo {
  bdf: string;
  type: HostDevice['type'];
  vendor: number;
  device: number;
  classCode: number;
  description: string;
  group: number | null;
  owner: string;
  domid?: number;
  assignable: boolean;
  permissive: boolean;
  busMaster: boolean;
  faults: number;
}

export interface AttributedFault {
  bdf: string;
  owner: string;
  iova: number;
  reason: number;
  reasonText: string;
  write: boolean;
  disposition: FaultInfo['disposition'];
}

export interface ConfigWriteResult {
  applied: boolean;
  /** Why the write (or part of it) was dropped, as logged. */
  dropped?: string;
}

interface DeviceState {
  node: PciNode;
  key: string;
  group: number | null;
  owner: DeviceOwner;
  permissive: boolean;
  config: ConfigSpace;
  faults: number;
  /** Released without a possible reset: must be reset before its next owner gets it. */
  dirty: boolean;
}

type Owner = number | 'platform';

export class PciPlatform {
  readonly topology: Topology;
  private readonly devices = new Map<string, DeviceState>();
  private readonly bySid = new Map<number, DeviceState>();
  private readonly groupList: IommuGroup[];
  private readonly log: (msg: string) => void;
  private iommu: IommuBinding | undefined;
  /** Every reset the platform performed, oldest first; tests and the lead's trace read it. */
  readonly resetLog: { bdf: string; method: ResetMethod }[] = [];

  constructor(
    readonly host: HostConfig,
    opts: { iommu?: IommuBinding; log?: (msg: string) => void } = {},
  ) {
    this.log = opts.log ?? (() => {});
    this.topology = new Topology(host);
    const groups = host.iommu.enabled ? computeGroups(this.topology) : undefined;
    this.groupList = groups?.groups ?? [];
    for (const node of this.topology.order) {
      const st: DeviceState = {
        node,
        key: node.key,
        group: groups?.groupOf.get(node.key) ?? null,
        owner: isEndpoint(node.dev) ? { kind: 'host' } : { kind: 'platform' },
        permissive: false,
        config: new ConfigSpace(node.dev),
        faults: 0,
        dirty: false,
      };
      this.devices.set(node.key, st);
      if (node.dev.bdf.domain === 0) this.bySid.set(sourceId(node.dev.bdf), st);
    }
    if (opts.iommu !== undefined) this.bindIommu(opts.iommu);
  }

  /** Connects the IOMMU; from then on ownership is reflected in context entries. */
  bindIommu(iommu: IommuBinding): void {
    this.iommu = iommu;
    for (const st of this.devices.values()) this.syncIommu(st);
  }

  // ---- queries ----

  list(): PciDeviceInfo[] {
    return [...this.devices.values()].map((st) => {
      const d = st.node.dev;
      const info: PciDeviceInfo = {
        bdf: st.key,
        type: d.type,
        vendor: d.vendor,
        device: d.device,
        classCode: d.classCode,
        description: className(d.classCode),
        group: st.group,
        owner: ownerText(st.owner),
        assignable: st.owner.kind === 'quarantine' || st.owner.kind === 'domain',
        permissive: st.permissive,
        busMaster: st.config.busMaster,
        faults: st.faults,
      };
      if (st.owner.kind === 'domain') info.domid = st.owner.domid;
      return info;
    });
  }

  groups(): IommuGroup[] {
    return this.groupList.map((g) => ({ id: g.id, members: [...g.members] }));
  }

  groupOf(bdf: Bdf | string): IommuGroup | null {
    const st = this.lookup(bdf);
    if (st === undefined || st.group === null) return null;
    const g = this.groupList[st.group];
    return { id: g.id, members: [...g.members] };
  }

  ownerOf(bdf: Bdf | string): DeviceOwner | undefined {
    const st = this.lookup(bdf);
    return st === undefined ? undefined : { ...st.owner };
  }

  /** The device's config space as its device model sees it (command register, BARs). */
  configSpace(bdf: Bdf | string): ConfigSpace | undefined {
    return this.lookup(bdf)?.config;
  }

  /** Devices a domain owns; what a driver domain enumerates. */
  devicesOf(domid: number): string[] {
    return [...this.devices.values()].filter((s) => s.owner.kind === 'domain' && s.owner.domid === domid).map((s) => s.key);
  }

  // ---- the assignable pool (xl pci-assignable-add / -remove / -list) ----

  assignableAdd(bdf: Bdf | string): PlatformResult {
    const st = this.lookup(bdf);
    const name = typeof bdf === 'string' ? bdf : formatBdf(bdf);
    if (st === undefined) return fail(`no PCI device ${name} on this platform; \`ringside pci list\` shows the devices`);
    if (!isEndpoint(st.node.dev)) return fail(nonEndpoint(st));
    if (st.owner.kind === 'domain') return fail(`${st.key} is assigned to domain ${st.owner.domid}; it is already out of the host's hands`);
    if (st.owner.kind === 'quarantine') return { ok: true, warnings: [`${st.key} is already assignable`] };
    if (!this.host.iommu.enabled) return fail(iommuOff(this.host));
    // entering the pool resets the device, as pciback does when it binds
    const method = this.resetMethod(st, [st.key]);
    this.setOwner(st, { kind: 'quarantine' });
    const warnings: string[] = [];
    if (typeof method === 'string') this.reset(st, method);
    else {
      st.dirty = true;
      warnings.push(`${st.key} could not be reset now (${method.why}); it will be before a domain gets it`);
    }
    this.log(`pci: ${st.key} is assignable (quarantine)`);
    return { ok: true, warnings };
  }

  assignableRemove(bdf: Bdf | string): PlatformResult {
    const st = this.lookup(bdf);
    const name = typeof bdf === 'string' ? bdf : formatBdf(bdf);
    if (st === undefined) return fail(`no PCI device ${name} on this platform`);
    if (st.owner.kind === 'domain') return fail(`${st.key} is assigned to domain ${st.owner.domid}: release it (destroy or detach from domain ${st.owner.domid}) before removing it from the assignable list`);
    if (st.owner.kind !== 'quarantine') return fail(`${st.key} is not assignable; \`ringside pci assignable-list\` shows the devices that are`);
    this.setOwner(st, { kind: 'host' });
    this.log(`pci: ${st.key} is no longer assignable`);
    return { ok: true, warnings: [] };
  }

  /** Assignable devices not currently assigned, as `xl pci-assignable-list` shows them. */
  assignableList(): string[] {
    return [...this.devices.values()].filter((s) => s.owner.kind === 'quarantine').map((s) => s.key);
  }

  // ---- assignment ----

  /**
   * Runs every rule without changing anything; assign() is this plus the changes. The verdict
   * `ringside pci check` prints is built from this outside hv (check.ts).
   */
  dryRun(reqs: readonly (Bdf | AssignRequest)[], domid?: number, opts: AssignOptions = {}): DryRun {
    const plan = this.plan(reqs, domid, opts);
    return { findings: plan.findings, requested: plan.targets.map((t) => t.st.key) };
  }

  assign(reqs: readonly (Bdf | AssignRequest)[], domid: number, opts: AssignOptions = {}): AssignResult {
    if (!Number.isInteger(domid) || domid < 0 || domid > 0x7fef) {
      const problem: CheckFinding = { severity: 'error', code: 'bad-domid', message: `domain id ${domid} is not a guest domain id (0..32751)` };
      return { ok: false, error: problem.message, problems: [problem] };
    }
    const plan = this.plan(reqs, domid, opts);
    const errors = plan.findings.filter((f) => f.severity === 'error');
    if (errors.length > 0) {
      const error = errors.map((f) => (f.fix === undefined ? f.message : `${f.message}\n  ${f.fix}`)).join('\n');
      return { ok: false, error, problems: errors };
    }
    const resets: { bdf: string; method: ResetMethod }[] = [];
    const identityMaps: IdentityMap[] = [];
    for (const t of plan.targets) {
      if (t.st.owner.kind === 'host') this.setOwner(t.st, { kind: 'quarantine' }); // seize
      this.reset(t.st, t.reset);
      resets.push({ bdf: t.st.key, method: t.reset });
      t.st.permissive = t.permissive;
      this.setOwner(t.st, { kind: 'domain', domid });
      for (const r of t.st.node.dev.rmrr) identityMaps.push({ bdf: t.st.key, start: r.start, end: r.end });
      this.log(`pci: ${t.st.key} assigned to domain ${domid}${t.permissive ? ' (permissive)' : ''} after ${t.reset} reset`);
    }
    return {
      ok: true,
      devices: plan.targets.map((t) => t.st.key),
      warnings: plan.findings.filter((f) => f.severity === 'warning').map((f) => f.message),
      resets,
      identityMaps,
    };
  }

  /**
   * Takes a device back from its domain: reset (so nothing it was told survives) and back into
   * quarantine, where it stays assignable, as Xen does since XSA-302.
   */
  release(bdf: Bdf | string): PlatformResult {
    const st = this.lookup(bdf);
    const name = typeof bdf === 'string' ? bdf : formatBdf(bdf);
    if (st === undefined) return fail(`no PCI device ${name} on this platform`);
    if (st.owner.kind !== 'domain') return fail(`${st.key} is not assigned to a domain (it is ${ownerText(st.owner)})`);
    const from = st.owner.domid;
    this.setOwner(st, { kind: 'quarantine' });
    st.permissive = false;
    const method = this.resetMethod(st, [st.key]);
    const warnings: string[] = [];
    if (typeof method === 'string') this.reset(st, method);
    else {
      st.dirty = true;
      warnings.push(`${st.key} could not be reset on release (${method.why}); it stays in quarantine and is reset before its next assignment`);
    }
    this.log(`pci: ${st.key} released from domain ${from}`);
    return { ok: true, warnings };
  }

  /** Releases everything a destroyed domain owned. */
  releaseDomain(domid: number): string[] {
    const mine = this.devicesOf(domid);
    for (const k of mine) this.release(k);
    return mine;
  }

  // ---- config space ----

  /** Config read by `owner`; a domain that does not own the device reads all ones, as for an empty slot. */
  configRead(bdf: Bdf | string, off: number, size: 1 | 2 | 4, owner: Owner = 'platform'): number {
    const st = this.lookup(bdf);
    const ones = size === 4 ? 0xffffffff : size === 2 ? 0xffff : 0xff;
    if (st === undefined || !validAccess(off, size)) return ones;
    if (owner !== 'platform' && !(st.owner.kind === 'domain' && st.owner.domid === owner)) return ones;
    return st.config.read(off, size);
  }

  configWrite(bdf: Bdf | string, off: number, size: 1 | 2 | 4, value: number, owner: Owner): ConfigWriteResult {
    const st = this.lookup(bdf);
    const name = typeof bdf === 'string' ? bdf : formatBdf(bdf);
    const drop = (why: string): ConfigWriteResult => {
      this.log(`pci: config write to ${name} dropped: ${why}`);
      return { applied: false, dropped: why };
    };
    if (st === undefined) return drop('no such device');
    if (!validAccess(off, size)) return drop(`${size}-byte access at offset 0x${Number(off).toString(16)} is not an aligned access inside the 256-byte config space`);
    if (!Number.isInteger(value)) return drop('value is not an integer');
    if (owner !== 'platform' && !(st.owner.kind === 'domain' && st.owner.domid === owner)) return drop(`domain ${owner} does not own it (${ownerText(st.owner)})`);
    const permissive = owner === 'platform' || st.permissive;
    const r = st.config.write(off, size, value >>> 0, permissive);
    if (r.flr) this.reset(st, 'flr');
    const out: ConfigWriteResult = { applied: r.applied };
    if (r.dropped !== undefined) {
      out.dropped = r.dropped;
      this.log(`pci: domain ${owner} config write to ${st.key} partly dropped: ${r.dropped}`);
    }
    return out;
  }

  // ---- faults ----

  /** Attributes a unit fault to the device (and its owner at the time); hook it to VtdUnit.onFault. */
  noteFault(f: FaultInfo): AttributedFault | undefined {
    const st = this.bySid.get(f.sid);
    if (st === undefined) return undefined;
    st.faults++;
    const a: AttributedFault = {
      bdf: st.key,
      owner: ownerText(st.owner),
      iova: f.iova,
      reason: f.reason,
      reasonText: faultReasonText(f.reason),
      write: f.write,
      disposition: f.disposition,
    };
    return a;
  }

  // ---- internals ----

  private lookup(bdf: Bdf | string): DeviceState | undefined {
    if (typeof bdf === 'string') {
      const b = parseBdf(bdf);
      return typeof b === 'string' ? undefined : this.devices.get(formatBdf(b));
    }
    return this.devices.get(formatBdf(bdf));
  }

  private setOwner(st: DeviceState, owner: DeviceOwner): void {
    st.owner = owner;
    this.syncIommu(st);
  }

  private syncIommu(st: DeviceState): void {
    if (this.iommu === undefined || !isEndpoint(st.node.dev)) return;
    const o = st.owner;
    if (o.kind === 'domain') this.iommu.attach(st.node.dev.bdf, o.domid);
    else if (o.kind === 'quarantine') this.iommu.attach(st.node.dev.bdf, 'quarantine');
    else this.iommu.detach(st.node.dev.bdf);
  }

  private reset(st: DeviceState, method: ResetMethod): void {
    const hit = method === 'bus' ? [st.node, ...this.topology.busResetScope(st.node).filter((n) => n !== st.node)] : [st.node];
    for (const n of hit) {
      const s = this.devices.get(n.key) as DeviceState;
      s.config.reset();
      s.dirty = false;
    }
    this.resetLog.push({ bdf: st.key, method });
  }

  /** Best reset for `st` given that `together` are being handed over with it. */
  private resetMethod(st: DeviceState, together: readonly string[]): ResetMethod | { why: string } {
    const m = st.node.dev.resetMethods;
    if (m.includes('flr')) return 'flr';
    if (m.includes('pm')) return 'pm';
    if (m.includes('bus')) {
      if (st.node.parent === undefined) return { why: 'bus reset needs a parent bridge and the device sits on the root bus' };
      for (const n of this.topology.busResetScope(st.node)) {
        const o = (this.devices.get(n.key) as DeviceState).owner;
        if (together.includes(n.key)) continue;
        if (o.kind === 'domain') return { why: `a bus reset would also reset ${n.key}, which domain ${o.domid} is using` };
      }
      return 'bus';
    }
    return { why: 'it has no FLR, PM reset or bus reset' };
  }

  private plan(reqs: readonly (Bdf | AssignRequest)[], domid: number | undefined, opts: AssignOptions): Plan {
    const findings: CheckFinding[] = [];
    const targets: Target[] = [];
    const err = (code: string, message: string, fix?: string, bdf?: string): void => {
      const f: CheckFinding = { severity: 'error', code, message };
      if (fix !== undefined) f.fix = fix;
      if (bdf !== undefined) f.bdf = bdf;
      findings.push(f);
    };
    const warn = (code: string, message: string, bdf: string, severity: 'warning' | 'info' = 'warning'): void => {
      findings.push({ severity, code, message, bdf });
    };
    const dom = domid === undefined ? 'the domain' : `domain ${domid}`;

    if (!this.host.iommu.enabled) err('iommu-off', iommuOff(this.host), 'set iommu = "vtd" in host.cfg');

    // expand function '*' and resolve every request
    const seen = new Set<string>();
    for (const raw of reqs) {
      const r: AssignRequest = 'bdf' in raw ? raw : { bdf: raw };
      const name = formatBdf(r.bdf);
      const fns = r.allFunctions
        ? this.topology.order.filter((n) => n.dev.bdf.domain === r.bdf.domain && n.dev.bdf.bus === r.bdf.bus && n.dev.bdf.dev === r.bdf.dev)
        : [this.topology.get(r.bdf)].filter((n): n is PciNode => n !== undefined);
      if (fns.length === 0) {
        err('unknown-device', `no PCI device ${r.allFunctions ? name.slice(0, -1) + '*' : name} in ${this.host.file || 'the platform'}`, '`ringside pci list` shows the devices the platform has', name);
        continue;
      }
      for (const n of fns) {
        if (seen.has(n.key)) {
          err('duplicate', `${n.key} is listed twice`, 'list each device once in pci=', n.key);
          continue;
        }
        seen.add(n.key);
        const st = this.devices.get(n.key) as DeviceState;
        targets.push({
          st,
          permissive: r.permissive ?? opts.permissive ?? false,
          seize: r.seize ?? opts.seize ?? false,
          rdmPolicy: r.rdmPolicy ?? opts.rdmPolicy ?? 'strict',
          reset: 'flr',
        });
      }
    }
    const requested = new Set(targets.map((t) => t.st.key));

    for (const t of targets) {
      const st = t.st;
      const d = st.node.dev;
      if (!isEndpoint(d)) {
        err('non-endpoint', nonEndpoint(st), `assign the endpoint devices below ${st.key} instead`, st.key);
        continue;
      }
      const o = st.owner;
      if (o.kind === 'domain') {
        if (o.domid === domid) err('already-assigned', `${st.key} is already assigned to domain ${o.domid}`, 'list it once; it stays assigned until released', st.key);
        else err('assigned-elsewhere', `${st.key} is assigned to domain ${o.domid}`, `release it from domain ${o.domid} first (destroy that domain or detach the device)`, st.key);
        continue;
      }
      if (o.kind === 'host' && !t.seize) {
        err('not-assignable', `${st.key} is not assignable`, `run \`ringside pci assignable-add ${st.key}\` first, or add seize=1 to its pci= entry`, st.key);
      }

      const method = this.resetMethod(st, [...requested]);
      if (typeof method === 'string') t.reset = method;
      else err('no-reset', `${st.key} cannot be reset: ${method.why}. Without a reset, state and queued DMA could carry over from its last owner to ${dom}`, 'give the device a reset method it really has (reset=flr, pm or bus in host.cfg), or leave it unassigned', st.key);

      for (const r of d.rmrr) {
        const region = `0x${r.start.toString(16)}-0x${r.end.toString(16)}`;
        const sharers = this.rmrrSharers(st, r.start, r.end).filter((s) => !requested.has(s.key) && !(s.owner.kind === 'domain' && s.owner.domid === domid));
        if (!r.relaxable) {
          const meaning = `${st.key} has an RMRR at ${region}: firmware expects to DMA there, so ${dom}'s IOMMU tables must map that host memory 1:1`;
          if (t.rdmPolicy === 'strict') {
            err('rmrr', `${meaning}, and rdm_policy=strict refuses that`, `if you accept that firmware DMA can land in ${dom}'s memory and the device can reach that host range, set rdm_policy=relaxed on its pci= entry`, st.key);
          } else warn('rmrr-relaxed', `${meaning}; assigned anyway under rdm_policy=relaxed, a risk: firmware DMA can land in ${dom}'s memory there`, st.key);
        }
        if (sharers.length > 0) {
          const who = sharers.map((s) => s.key).join(', ');
          if (t.rdmPolicy === 'strict') {
            err('rmrr-shared', `${st.key} shares its RMRR ${region} with ${who}: assigning it alone is disallowed under rdm_policy=strict`, `assign ${who} to ${dom} too, or set rdm_policy=relaxed (risky: the devices can reach each other's reserved memory)`, st.key);
          } else warn('rmrr-shared-relaxed', `${st.key} shares its RMRR ${region} with ${who}; risky, allowed under rdm_policy=relaxed`, st.key);
        }
      }
      if (t.permissive) warn('permissive', `permissive=1 lets ${dom} write any config-space register of ${st.key}; a hostile driver can then misprogram the device (Xen and Qubes flag this as a security risk)`, st.key);
      if (st.owner.kind === 'host' && t.seize) warn('seize', `${st.key} was not assignable; seize=1 makes it assignable first`, st.key, 'info');
    }

    // the whole group goes to one domain; bridges (and the host bridge) stay with the platform
    const groupsSeen = new Set<number>();
    for (const t of targets) {
      const gid = t.st.group;
      if (gid === null || groupsSeen.has(gid)) continue;
      groupsSeen.add(gid);
      for (const key of this.groupList[gid].members) {
        if (requested.has(key)) continue;
        const m = this.devices.get(key) as DeviceState;
        if (!isEndpoint(m.node.dev)) continue;
        const o = m.owner;
        const what = `${key} (${className(m.node.dev.classCode)})`;
        if (o.kind === 'domain' && o.domid === domid) continue;
        if (o.kind === 'domain') {
          err('group-split', `IOMMU group ${gid} would be split: ${what} belongs to domain ${o.domid}`, `a group goes to one domain: release ${key} from domain ${o.domid} first, or assign these devices to domain ${o.domid}`, key);
        } else if (o.kind === 'host') {
          err('group-member-not-assignable', `IOMMU group ${gid} also holds ${what}, which is not assignable: devices in one group can reach each other's DMA, so the whole group goes to one domain or stays in quarantine`, `make it assignable (\`ringside pci assignable-add ${key}\`) or assign it to ${dom} too`, key);
        } else {
          warn('group-member-quarantined', `${what} shares IOMMU group ${gid} and stays in quarantine; ${dom}'s devices can reach it by peer-to-peer DMA`, key, 'info');
        }
      }
    }
    return { findings, targets };
  }

  private rmrrSharers(st: DeviceState, start: bigint, end: bigint): DeviceState[] {
    const out: DeviceState[] = [];
    for (const s of this.devices.values()) {
      if (s === st) continue;
      if (s.node.dev.rmrr.some((r) => r.start <= end && start <= r.end)) out.push(s);
    }
    return out;
  }
}

interface Target {
  st: DeviceState;
  permissive: boolean;
  seize: boolean;
  rdmPolicy: RdmPolicy;
  reset: ResetMethod;
}

/** What assign() would do: every finding, and the functions it would take. */
export interface DryRun {
  findings: CheckFinding[];
  requested: string[];
}

interface Plan {
  findings: CheckFinding[];
  targets: Target[];
}

function fail(error: string): PlatformResult {
  return { ok: false, error };
}

function ownerText(o: DeviceOwner): string {
  return o.kind === 'domain' ? `domain ${o.domid}` : o.kind;
}

function nonEndpoint(st: DeviceState): string {
  return `${st.key} is a ${st.node.dev.type}, not an endpoint: bridges, ports and the host bridge stay with the platform, only endpoint devices can be given to a domain`;
}

function iommuOff(host: HostConfig): string {
  return `${host.file || 'host.cfg'} sets iommu = "none": without an IOMMU a device's DMA cannot be confined, so no device can be assigned`;
}

function validAccess(off: number, size: number): boolean {
  return Number.isInteger(off) && (size === 1 || size === 2 || size === 4) && off >= 0 && off + size <= CFG_SIZE && off % size === 0;
}

