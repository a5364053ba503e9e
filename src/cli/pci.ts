// `ringside pci list|check|assignable-list|assignable-add|assignable-remove`: the platform's PCI
// functions, the passthrough checker (against the emulated platform of a system, or against a real
// host's sysfs), and xl's assignable pool on a running system.
import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { PciPlatform, type AssignRequest, type PciDeviceInfo } from '../../iommu/platform/platform.js';
import { formatPciList, pciListJson } from '../../iommu/platform/pci-list.js';
import { checkAssignment } from '../../iommu/platform/check.js';
import { checkSysfs, type SysfsRequest } from '../../iommu/sysfs/check.js';
import { formatSysfsList, listSysfs } from '../../iommu/sysfs/list.js';
import { checkReportJson, formatCheckReport, type CheckReport } from '../../iommu/check-report.js';
import { formatBdf, parseBdf } from '../config/bdf.js';
import type { PciSpec } from '../config/pci.js';
import { loadDomainFile, loadSystem, type SystemConfig } from '../config/system.js';
import type { ControlRequest } from '../control/wire.js';
import type { PciFault } from '../hypercall/pci.js';
import { control } from './control.js';
import { table } from './table.js';
import { CliError } from './errors.js';
import { defaultSystem } from './paths.js';

export const PCI_USAGE = `usage: ringside pci <command> [options]

  list [SYSTEM] [--json]                    the platform's PCI functions (SYSTEM's host.cfg, default the
                                            embedded examples/default) and the domain configured to own each
  list --state DIR [--json]                 the running system's functions: live owners and IOMMU fault counts
  faults [--state DIR] [--json]             the IOMMU faults hv recorded: device, owner, IOVA, reason, grant
  list --sysfs DIR [--json]                 a real host's PCI functions, groups and drivers (DIR = / for this host)
  check [CFG...] [--system DIR] [--json]    can these domains' pci= devices be passed through? Checked against
                                            the platform of --system (default examples/default); without CFG,
                                            every driver domain of the system. Exit status 1 when not viable
  check [CFG...] --sysfs DIR [--json]       the same against a real host's sysfs (DIR = / for this host)
  assignable-list [--state DIR] [--json]    devices in the assignable pool of a running system (xl pci-assignable-list)
  assignable-add BDF [--state DIR]          make a device assignable: reset, quarantined, ready for a domain
  assignable-remove BDF [--state DIR]       give an unassigned device back to the host

BDF is [DDDD:]BB:DD.F in hex, e.g. 01:00.0. --state is the running system's state directory (default .ringside).`;

type Options = NonNullable<ParseArgsConfig['options']>;

// ---- control-socket requests (dom0 forwards them to hv's pci_assignable_* hypercalls) ----

/** The control ops this command sends; dom0 answers them by calling hv (dom0-only hypercalls). */
export type PciControlRequest = Extract<ControlRequest, { op: 'pci' }>;

/** The reply's fields beyond ControlReply's: the pool (list) and hv's warnings (add/remove). */
export interface PciControlReplyFields {
  message?: string;
  devices?: string[];
  warnings?: string[];
  functions?: PciDeviceInfo[];
  faults?: PciFault[];
}

function usageError(sub: string, problem: string): CliError {
  return new CliError(`ringside pci${sub ? ' ' + sub : ''}: ${problem}\n\n${PCI_USAGE}`, 2);
}

function parse(sub: string, args: string[], options: Options, maxPositionals: number) {
  let r;
  try {
    r = parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw usageError(sub, (e as Error).message);
  }
  if (r.positionals.length > maxPositionals) throw usageError(sub, `unexpected argument '${r.positionals[maxPositionals]}'`);
  return r;
}

export async function pciCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  switch (sub) {
    case 'list':
      return pciList(rest);
    case 'faults':
      return pciFaults(rest);
    case 'check':
      return pciCheck(rest);
    case 'assignable-list':
    case 'assignable-add':
    case 'assignable-remove':
      return pciAssignable(sub, rest);
    case undefined:
      throw usageError('', 'say what to do: list, faults, check, assignable-list, assignable-add or assignable-remove');
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(PCI_USAGE + '\n');
      return 0;
    default:
      throw usageError('', `unknown command '${sub}'`);
  }
}

/** A --sysfs root must look like one, or every device would come out "unknown" for no clear reason. */
function sysfsRoot(sub: string, dir: string): string {
  const root = resolve(dir);
  const devices = join(root, 'sys', 'bus', 'pci', 'devices');
  if (!existsSync(devices)) {
    throw usageError(sub, `--sysfs ${dir}: there is no ${devices}; give the root of a host's tree (/ for this host, or e.g. iommu/sysfs/fixtures/nic-alone)`);
  }
  return root;
}

function systemDir(dir: string | undefined): string {
  const d = resolve(dir ?? defaultSystem());
  if (!existsSync(d) || !statSync(d).isDirectory()) throw new CliError(`ringside pci: system directory ${d} does not exist; give the directory holding the *.cfg files`);
  return d;
}

// ---- list ----

type PciListRow = PciDeviceInfo & { configuredFor: string | null };

async function pciList(args: string[]): Promise<number> {
  const { values, positionals } = parse('list', args, { sysfs: { type: 'string' }, state: { type: 'string' }, json: { type: 'boolean', default: false } }, 1);
  if (values.state !== undefined) {
    if (positionals.length > 0 || values.sysfs !== undefined) throw usageError('list', 'give --state alone: it lists the running system');
    const devices = (await pciControl('list', String(values.state), { op: 'pci', action: 'list' })).functions ?? [];
    process.stdout.write((values.json ? JSON.stringify(pciListJson(devices), null, 2) : `${formatPciList(devices)}\n\nlive: owners and IOMMU fault counts of the running system in ${values.state}`) + '\n');
    return 0;
  }
  if (values.sysfs !== undefined) {
    if (positionals.length > 0) throw usageError('list', `give either SYSTEM ('${positionals[0]}') or --sysfs, not both`);
    const rows = listSysfs(sysfsRoot('list', String(values.sysfs)));
    process.stdout.write((values.json ? JSON.stringify(rows, null, 2) : formatSysfsList(rows)) + '\n');
    return 0;
  }
  const system = loadSystem(systemDir(positionals[0]));
  const devices = new PciPlatform(system.host).list();
  // Who the configuration hands each function to (pci= with '*' already expanded by the loader).
  const owner = new Map<string, string>();
  for (const d of system.domains) for (const b of d.assigned) owner.set(formatBdf(b), d.name);
  const rows: PciListRow[] = pciListJson(devices).map((d) => ({ ...d, configuredFor: owner.get(d.bdf) ?? null }));
  if (values.json) {
    process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
    return 0;
  }
  // formatPciList's table, with the configured owner as one more column (same row order).
  const lines = formatPciList(devices).split('\n');
  if (devices.length === 0) {
    process.stdout.write(lines.join('\n') + '\n');
    return 0;
  }
  const width = Math.max(...lines.map((l) => l.length));
  const extra = ['CONFIGURED FOR', ...rows.map((r) => r.configuredFor ?? '-')];
  process.stdout.write(lines.map((l, i) => `${l.padEnd(width)}  ${extra[i]}`.trimEnd()).join('\n') + '\n');
  process.stdout.write(`\nplatform ${system.host.file || '(built-in)'}; OWNER is the state before 'ringside up'; a running system's dom0 changes it\n`);
  return 0;
}

// ---- check ----

/** One domain's pci= entries to check. */
interface CheckTarget {
  domain: string;
  file: string;
  specs: PciSpec[];
}

export interface PciCheckResult {
  domain: string;
  file: string;
  /** The domain id the domain had in this check (platform checks only; sysfs checks know no domains). */
  domid?: number;
  report: CheckReport;
}

export interface PciCheckOutput {
  viable: boolean;
  source: 'sysfs' | 'platform';
  origin: string;
  checks: PciCheckResult[];
}

const toAssign = (s: PciSpec): AssignRequest => ({ bdf: s.bdf, allFunctions: s.allFunctions, permissive: s.permissive, seize: s.seize, rdmPolicy: s.rdmPolicy });
const toSysfs = (s: PciSpec): SysfsRequest => ({ bdf: s.bdf, allFunctions: s.allFunctions, rdmPolicy: s.rdmPolicy });

/**
 * The static model of `ringside up` on a fresh platform: domains get ids in start order and dom0
 * assigns each domain's pci= functions as written (seize=1 / pci_seize takes a device that is not
 * assignable yet, as xl does; without it the device must be in the assignable pool already, which
 * on a fresh platform it is not), so a later domain sees what an earlier one took.
 */
class BootModel {
  readonly platform: PciPlatform;
  private readonly domids = new Map<string, number>();
  private next = 1;

  constructor(system: SystemConfig) {
    this.platform = new PciPlatform(system.host);
    for (const d of system.domains) this.domids.set(d.name, this.next++);
  }

  domid(name: string): number {
    let id = this.domids.get(name);
    if (id === undefined) {
      id = this.next++;
      this.domids.set(name, id);
    }
    return id;
  }

  nameOf(domid: number): string | undefined {
    for (const [n, id] of this.domids) if (id === domid) return n;
    return undefined;
  }

  /** Checks one domain's requests; if they pass, assigns them so later checks see the owner. */
  checkAndAssign(name: string, specs: readonly PciSpec[]): { domid: number; report: CheckReport } {
    const domid = this.domid(name);
    const reqs = specs.map(toAssign);
    const report = checkAssignment(this.platform, reqs, domid);
    if (report.viable && reqs.length > 0) this.platform.assign(reqs, domid);
    return { domid, report };
  }
}

async function pciCheck(args: string[]): Promise<number> {
  const { values, positionals } = parse(
    'check',
    args,
    { system: { type: 'string' }, sysfs: { type: 'string' }, json: { type: 'boolean', default: false } },
    Number.MAX_SAFE_INTEGER,
  );
  const sysfs = values.sysfs === undefined ? undefined : sysfsRoot('check', String(values.sysfs));
  if (sysfs !== undefined && values.system !== undefined && positionals.length > 0) {
    throw usageError('check', '--system has no part in checking CFG files against --sysfs (the host tree is the platform); drop --system');
  }
  const fromFiles = positionals.length > 0;
  const needSystem = !fromFiles || sysfs === undefined;
  const system = needSystem ? loadSystem(systemDir(values.system === undefined ? undefined : String(values.system))) : undefined;

  let targets: CheckTarget[];
  if (fromFiles) {
    targets = positionals.map((p) => {
      const path = resolve(p);
      if (!existsSync(path)) throw new CliError(`ringside pci check: ${p} does not exist; give domain config files (e.g. blkdom.cfg)`);
      const d = loadDomainFile(path);
      return { domain: d.name, file: path, specs: d.pci };
    });
    const names = new Set<string>();
    for (const t of targets) {
      if (names.has(t.domain)) throw new CliError(`ringside pci check: two files name domain '${t.domain}'; check them one at a time`);
      names.add(t.domain);
    }
  } else {
    const s = system as SystemConfig;
    targets = s.domains.filter((d) => d.driverDomain || d.pci.length > 0).map((d) => ({ domain: d.name, file: d.file, specs: d.pci }));
    if (targets.length === 0) throw new CliError(`ringside pci check: ${s.dir} has no driver domain and no domain with pci=; name the config files to check`);
  }

  let out: PciCheckOutput;
  if (sysfs !== undefined) {
    const checks = targets.map((t) => ({ domain: t.domain, file: t.file, report: checkReportJson(checkSysfs(sysfs, t.specs.map(toSysfs))) }));
    out = { viable: checks.every((c) => c.report.viable), source: 'sysfs', origin: sysfs, checks };
  } else {
    const s = system as SystemConfig;
    const model = new BootModel(s);
    const checked = new Set(targets.map((t) => t.domain));
    // Checking files against a system: the system's other domains have already taken their devices.
    if (fromFiles) for (const d of s.domains) if (!checked.has(d.name) && d.pci.length > 0) model.checkAndAssign(d.name, d.pci);
    const checks = targets.map((t) => {
      const { domid, report } = model.checkAndAssign(t.domain, t.specs);
      return { domain: t.domain, file: t.file, domid, report: checkReportJson(report) };
    });
    out = { viable: checks.every((c) => c.report.viable), source: 'platform', origin: s.host.file || s.dir, checks };
    if (!values.json) {
      const ids = [...new Set(checks.flatMap((c) => c.report.groups.flatMap((g) => g.members.map((m) => m.owner ?? ''))))]
        .map((o) => /^domain (\d+)$/.exec(o))
        .filter((m): m is RegExpExecArray => m !== null)
        .map((m) => Number(m[1]));
      const legend = [...new Set(ids)].sort((a, b) => a - b).map((id) => `domain ${id} = ${model.nameOf(id) ?? '?'}`);
      if (legend.length > 0) process.stdout.write(`(domain ids in this check, in start order: ${legend.join(', ')})\n\n`);
    }
  }

  if (values.json) process.stdout.write(JSON.stringify(out, null, 2) + '\n');
  else process.stdout.write(out.checks.map(formatOne).join('\n\n') + '\n');
  return out.viable ? 0 : 1;
}

function formatOne(c: PciCheckResult): string {
  const head = `${c.domain} (${c.file}${c.domid === undefined ? '' : `, domain ${c.domid}`})`;
  const wanted = c.report.groups.length + c.report.findings.length;
  if (wanted === 0) return `${head}: requests no PCI devices (no pci= entries); nothing to check`;
  return `${head}:\n${formatCheckReport(c.report)}`;
}

// ---- the assignable pool on a running system ----

function bdfArg(sub: string, text: string | undefined): string {
  if (text === undefined) throw usageError(sub, `name the device, e.g. 'ringside pci ${sub} 01:00.0' ('ringside pci list' shows them)`);
  const b = parseBdf(text);
  if (typeof b === 'string') throw usageError(sub, b);
  return formatBdf(b);
}

/** One PCI request to the running system's dom0, which forwards it to hv. */
async function pciControl(sub: string, state: string, req: PciControlRequest): Promise<PciControlReplyFields> {
  try {
    return await control(state, req);
  } catch (e) {
    if (e instanceof CliError && /^unknown (op|pci action)/.test(e.message)) {
      throw new CliError(`ringside pci ${sub}: the running control domain does not support PCI operations (it answered: ${e.message}); upgrade ringside and restart the system`);
    }
    throw e;
  }
}

// ---- faults ----

/** `xl dmesg` for the IOMMU: every DMA fault hv attributed, newest last. */
async function pciFaults(args: string[]): Promise<number> {
  const { values } = parse('faults', args, { state: { type: 'string', default: '.ringside' }, json: { type: 'boolean', default: false } }, 0);
  const faults = (await pciControl('faults', String(values.state), { op: 'pci', action: 'faults' })).faults ?? [];
  if (values.json) {
    process.stdout.write(JSON.stringify(faults, null, 2) + '\n');
    return 0;
  }
  if (faults.length === 0) {
    process.stdout.write('no IOMMU faults recorded\n');
    return 0;
  }
  const rows = faults.map((f) => [
    new Date(f.at).toISOString().slice(11, 23), f.bdf, f.domid >= 0 ? `dom${f.domid}` : f.owner, f.write ? 'write' : 'read', `0x${f.iova.toString(16)}`,
    `0x${f.reason.toString(16)} ${f.reasonText}`, f.grant ? `dom${f.grant.grantor} ref ${f.grant.ref}` : '-', f.disposition,
  ]);
  process.stdout.write(table(['TIME', 'BDF', 'OWNER', 'ACCESS', 'IOVA', 'REASON', 'GRANT', 'RECORD'], rows) + '\n');
  return 0;
}

async function pciAssignable(sub: 'assignable-list' | 'assignable-add' | 'assignable-remove', args: string[]): Promise<number> {
  const { values, positionals } = parse(sub, args, { state: { type: 'string', default: '.ringside' }, json: { type: 'boolean', default: false } }, sub === 'assignable-list' ? 0 : 1);
  const req: PciControlRequest = sub === 'assignable-list' ? { op: 'pci', action: sub } : { op: 'pci', action: sub, bdf: bdfArg(sub, positionals[0]) };
  const reply = await pciControl(sub, String(values.state), req);
  const warnings = reply.warnings ?? [];
  if (req.action !== 'assignable-add' && req.action !== 'assignable-remove') {
    const devices = reply.devices ?? [];
    process.stdout.write((values.json ? JSON.stringify({ devices }) : devices.length === 0 ? 'no assignable devices' : devices.join('\n')) + '\n');
    return 0;
  }
  const message = reply.message ?? (req.action === 'assignable-add' ? `${req.bdf} is assignable` : `${req.bdf} is back with the host`);
  if (values.json) process.stdout.write(JSON.stringify({ bdf: req.bdf, message, warnings }) + '\n');
  else {
    for (const w of warnings) process.stderr.write(`ringside: warning: ${w}\n`);
    process.stdout.write(message + '\n');
  }
  return 0;
}
