// The verdict `ringside pci check` prints, whether it checked a config against the emulated
// platform or against a real host's sysfs: per IOMMU group, viable or not, and why in words.

export type Severity = 'error' | 'warning' | 'info';

export interface CheckFinding {
  severity: Severity;
  /** Stable identifier for scripts and tests, e.g. 'group-member-bound'. */
  code: string;
  bdf?: string;
  /** What is wrong (or worth knowing). */
  message: string;
  /** What to do about it. */
  fix?: string;
}

export interface MemberReport {
  bdf: string;
  /** lspci-style "vendor:device", hex. */
  id?: string;
  classCode?: number;
  description: string;
  kind: 'endpoint' | 'bridge';
  requested: boolean;
  /** sysfs: bound driver, null when unbound. */
  driver?: string | null;
  /** platform: who has it (host, quarantine, platform, domain N). */
  owner?: string;
}

export interface GroupVerdict {
  /** IOMMU group number; null when the device has none (IOMMU off or device unknown). */
  group: number | null;
  viable: boolean;
  requested: string[];
  members: MemberReport[];
  findings: CheckFinding[];
}

export interface CheckReport {
  source: 'sysfs' | 'platform';
  /** sysfs root or host.cfg path. */
  origin: string;
  iommu: boolean;
  viable: boolean;
  groups: GroupVerdict[];
  /** Findings that belong to no group (IOMMU off, unknown BDFs). */
  findings: CheckFinding[];
}

export function reportViable(groups: GroupVerdict[], findings: CheckFinding[]): boolean {
  return groups.every((g) => g.viable) && !findings.some((f) => f.severity === 'error');
}

export function formatCheckReport(r: CheckReport): string {
  const lines: string[] = [];
  const where = r.source === 'sysfs' ? `host sysfs at ${r.origin}` : `platform ${r.origin || '(built-in)'}`;
  lines.push(`PCI passthrough check against ${where}: ${r.viable ? 'all requested devices can be assigned' : 'NOT viable'}`);
  for (const f of r.findings) lines.push(...finding(f, '  '));
  for (const g of r.groups) {
    const title = g.group === null ? 'no IOMMU group' : `IOMMU group ${g.group}`;
    lines.push('');
    lines.push(`${title}: ${g.viable ? 'viable' : 'not viable'} (requested ${g.requested.join(', ')})`);
    for (const m of g.members) {
      const what = [m.id, m.description].filter((x) => x !== undefined && x !== '').join(' ');
      const extra: string[] = [];
      if (m.kind === 'bridge') extra.push('bridge');
      if (m.driver !== undefined) extra.push(m.driver === null ? 'no driver' : `driver ${m.driver}`);
      if (m.owner !== undefined) extra.push(m.owner);
      lines.push(`  ${m.requested ? '*' : ' '} ${m.bdf}  ${what}${extra.length > 0 ? `  [${extra.join(', ')}]` : ''}`);
    }
    for (const f of g.findings) lines.push(...finding(f, '  '));
  }
  return lines.join('\n');
}

function finding(f: CheckFinding, indent: string): string[] {
  const tag = f.severity === 'error' ? 'error' : f.severity === 'warning' ? 'warning' : 'note';
  const out = [`${indent}${tag}: ${f.message}`];
  if (f.fix !== undefined) out.push(`${indent}  fix: ${f.fix}`);
  return out;
}

/** Plain data for --json (already is; kept as a function so the shape stays a deliberate API). */
export function checkReportJson(r: CheckReport): CheckReport {
  return JSON.parse(JSON.stringify(r)) as CheckReport;
}
