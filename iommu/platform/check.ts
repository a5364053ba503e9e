// `ringside pci check` against the emulated platform: the rules PciPlatform runs for assign(),
// without changing anything, turned into the per-group verdict the CLI prints. Kept out of
// PciPlatform so that this report, which only the CLI reads, is not in hv's trusted code.
import type { Bdf } from '../../src/config/bdf.js';
import { reportViable, type CheckReport, type GroupVerdict, type MemberReport } from '../check-report.js';
import type { AssignOptions, AssignRequest, PciDeviceInfo, PciPlatform } from './platform.js';
import { isEndpoint } from './topology.js';

export function checkAssignment(platform: PciPlatform, reqs: readonly (Bdf | AssignRequest)[], domid?: number, opts: AssignOptions = {}): CheckReport {
  const { findings, requested } = platform.dryRun(reqs, domid, opts);
  const devices = new Map(platform.list().map((d) => [d.bdf, d]));
  const want = requested.map((k) => devices.get(k) as PciDeviceInfo);
  const groupIds = [...new Set(want.map((d) => d.group))];
  const groups: GroupVerdict[] = groupIds.map((gid) => {
    const inGroup = gid === null ? want.filter((d) => d.group === null) : (platform.groups().find((g) => g.id === gid)?.members ?? []).map((k) => devices.get(k) as PciDeviceInfo);
    const members: MemberReport[] = inGroup.map((d) => ({
      bdf: d.bdf,
      id: `${hex4(d.vendor)}:${hex4(d.device)}`,
      classCode: d.classCode,
      description: d.description,
      kind: isEndpoint(d) ? 'endpoint' : 'bridge',
      requested: requested.includes(d.bdf),
      owner: d.owner,
    }));
    const keys = new Set(members.map((m) => m.bdf));
    const mine = findings.filter((f) => f.bdf !== undefined && keys.has(f.bdf) && f.code !== 'unknown-device');
    return {
      group: gid,
      viable: !mine.some((f) => f.severity === 'error'),
      requested: want.filter((d) => d.group === gid).map((d) => d.bdf),
      members,
      findings: mine,
    };
  });
  const placed = new Set(groups.flatMap((g) => g.findings));
  const loose = findings.filter((f) => !placed.has(f));
  return { source: 'platform', origin: platform.host.file, iommu: platform.host.iommu.enabled, viable: reportViable(groups, loose), groups, findings: loose };
}

function hex4(n: number): string {
  return n.toString(16).padStart(4, '0');
}
