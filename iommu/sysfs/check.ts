// The passthrough checker for a real host: given the devices a config wants (pci= entries), read
// sysfs and decide, per IOMMU group, whether the group can go to a guest, and say why in words.
// The rules are VFIO's and Xen's: every device in the group is unbound, on vfio-pci / pci-stub /
// pciback, or a bridge; the IOMMU must be on; non-endpoints are refused; a direct (RMRR) reserved
// region makes a group ineligible under strict policy; a device needs a way to be reset.

import { formatBdf, parseBdf, type Bdf } from '../../src/config/bdf.js';
import type { CheckFinding, CheckReport, GroupVerdict, MemberReport } from '../check-report.js';
import { reportViable } from '../check-report.js';
import { className } from '../platform/class-names.js';
import { devicesDir, iommuEnabled, isBridgeDevice, listDevices, readDevice, readGroup, type SysfsDevice } from './read.js';

/** Drivers that hold a device for a guest rather than use it. */
export const PASSTHROUGH_DRIVERS = ['vfio-pci', 'pci-stub', 'pciback', 'xen-pciback'] as const;

export interface SysfsRequest {
  bdf: Bdf | string;
  allFunctions?: boolean;
  rdmPolicy?: 'strict' | 'relaxed';
}

export interface SysfsCheckOptions {
  /** Default rdm_policy for requests that do not set one. */
  rdmPolicy?: 'strict' | 'relaxed';
}

const hex4 = (n: number | null): string => (n === null ? '????' : n.toString(16).padStart(4, '0'));

function describe(d: SysfsDevice): string {
  return `${d.bdf} (${hex4(d.vendor)}:${hex4(d.device)} ${d.classCode === null ? 'unknown class' : className(d.classCode)})`;
}

function bindFix(bdf: string, driver: string | null): string {
  const unbind = driver === null ? '' : `echo ${bdf} > /sys/bus/pci/drivers/${driver}/unbind; `;
  return `bind it to vfio-pci: echo vfio-pci > /sys/bus/pci/devices/${bdf}/driver_override; ${unbind}echo ${bdf} > /sys/bus/pci/drivers_probe (for Xen: xl pci-assignable-add ${bdf}; with libvirt, managed='yes' does this)`;
}

export function checkSysfs(root: string, requests: readonly (Bdf | string | SysfsRequest)[], opts: SysfsCheckOptions = {}): CheckReport {
  const loose: CheckFinding[] = [];
  const iommu = iommuEnabled(root);
  const all = listDevices(root);

  // resolve requests: BDF syntax, function '*', existence
  const wanted = new Map<string, 'strict' | 'relaxed'>();
  for (const raw of requests) {
    const r: SysfsRequest = typeof raw === 'object' && 'bdf' in raw ? raw : { bdf: raw };
    const b = typeof r.bdf === 'string' ? parseBdf(r.bdf) : r.bdf;
    if (typeof b === 'string') {
      loose.push({ severity: 'error', code: 'bad-bdf', message: b });
      continue;
    }
    const policy = r.rdmPolicy ?? opts.rdmPolicy ?? 'strict';
    const name = formatBdf(b);
    const names = r.allFunctions ? all.filter((n) => n.startsWith(name.slice(0, -1))) : all.includes(name) ? [name] : [];
    if (names.length === 0) {
      loose.push({
        severity: 'error',
        code: 'unknown-device',
        bdf: name,
        message: `no PCI device ${r.allFunctions ? name.slice(0, -1) + '*' : name} under ${devicesDir(root)}`,
        fix: 'check the address with `lspci -D`; xl and ringside write it as [DDDD:]BB:DD.F in hex',
      });
    }
    for (const n of names) wanted.set(n, policy);
  }

  if (!iommu && wanted.size > 0) {
    loose.push({
      severity: 'error',
      code: 'iommu-off',
      message: 'no iommu_group found: the IOMMU is off on this host (there is nothing under /sys/kernel/iommu_groups), so no device can be passed through',
      fix: 'enable VT-d (Intel) or AMD-Vi/IOMMU in the firmware setup and boot Linux with intel_iommu=on (AMD: amd_iommu=on); `dmesg | grep -i -e DMAR -e IOMMU` should then show it enabled',
    });
  }

  // group the requested devices
  const byGroup = new Map<number | null, string[]>();
  const devs = new Map<string, SysfsDevice>();
  for (const bdf of wanted.keys()) {
    const d = readDevice(root, bdf);
    if (d === null) continue;
    devs.set(bdf, d);
    const g = d.group;
    byGroup.set(g, [...(byGroup.get(g) ?? []), bdf]);
  }

  const groups: GroupVerdict[] = [];
  for (const [gid, requested] of byGroup) {
    const findings: CheckFinding[] = [];
    const err = (code: string, bdf: string | undefined, message: string, fix?: string): void => {
      const f: CheckFinding = { severity: 'error', code, message };
      if (bdf !== undefined) f.bdf = bdf;
      if (fix !== undefined) f.fix = fix;
      findings.push(f);
    };
    const note = (severity: 'warning' | 'info', code: string, bdf: string | undefined, message: string, fix?: string): void => {
      const f: CheckFinding = { severity, code, message };
      if (bdf !== undefined) f.bdf = bdf;
      if (fix !== undefined) f.fix = fix;
      findings.push(f);
    };

    const group = gid === null ? null : readGroup(root, gid);
    const memberNames = group?.devices.length ? group.devices : requested;
    const members: SysfsDevice[] = memberNames.map((n) => devs.get(n) ?? readDevice(root, n)).filter((d): d is SysfsDevice => d !== null);

    if (gid === null && iommu) {
      for (const r of requested) err('no-group', r, `${r} has no iommu_group although the IOMMU is on: the IOMMU does not cover it`, 'check the firmware DMAR/IVRS tables and `dmesg` for the device; it cannot be passed through as it is');
    }

    for (const d of members) {
      const isReq = wanted.has(d.bdf);
      const bridge = isBridgeDevice(d);
      if (bridge) {
        if (isReq) err('non-endpoint', d.bdf, `${describe(d)} is a bridge, not an endpoint: bridges stay with the host, only endpoint devices can be given to a guest`, `request the endpoint devices below ${d.bdf} instead`);
        continue; // bridges in a group never block it
      }
      const held = d.driver !== null && (PASSTHROUGH_DRIVERS as readonly string[]).includes(d.driver);
      if (isReq) {
        // with the IOMMU off vfio-pci cannot take the device anyway; the IOMMU finding comes first
        if (!iommu) {
          checkReset(d, all, wanted, err, note);
          continue;
        }
        if (d.driver !== null && !held) {
          const override = d.driverOverride === 'vfio-pci' ? ` (driver_override already says vfio-pci: unbind it from ${d.driver} and reprobe)` : '';
          err('requested-bound', d.bdf, `${describe(d)} is bound to host driver ${d.driver}${override}: the host is using it`, bindFix(d.bdf, d.driver));
        } else if (d.driver === null) {
          note('info', 'requested-unbound', d.bdf, `${d.bdf} has no driver; the group stays viable, and vfio-pci (or pciback) must claim it before a guest can open it`, bindFix(d.bdf, null));
        }
        if (d.physfn !== null) note('info', 'virtual-function', d.bdf, `${d.bdf} is an SR-IOV virtual function of ${d.physfn}; the physical function stays with the host`);
        checkReset(d, all, wanted, err, note);
      } else if (d.driver !== null && !held) {
        err(
          'group-member-bound',
          d.bdf,
          `IOMMU group ${gid} also holds ${describe(d)}, bound to host driver ${d.driver}: devices in one group can reach each other by DMA, so VFIO refuses the group while any of them is in host use (QEMU: "group ${gid} is not viable")`,
          `${bindFix(d.bdf, d.driver)} — or assign ${d.bdf} to the same guest too`,
        );
      } else {
        note('info', 'group-member-held', d.bdf, `${d.bdf} shares IOMMU group ${gid} and is ${d.driver === null ? 'unbound' : `held by ${d.driver}`}; keep it that way while the guest runs`);
      }
    }

    if (group !== null) {
      if (group.type === 'identity') note('info', 'identity-domain', undefined, `IOMMU group ${gid} runs in pass-through (identity) mode on the host (iommu=pt); vfio gives it its own domain when a guest opens it`);
      const policy = requested.some((r) => wanted.get(r) === 'relaxed') ? 'relaxed' : 'strict';
      for (const r of group.reserved) {
        const region = `0x${r.start.toString(16)}-0x${r.end.toString(16)}`;
        if (r.type === 'direct') {
          const meaning = `IOMMU group ${gid} has a direct-mapped reserved region ${region} (an RMRR: firmware keeps DMA-ing there, so the region must stay mapped 1:1)`;
          const linux = 'Linux VFIO refuses it: "Device is ineligible for IOMMU domain attach due to platform RMRR requirement. Contact your platform vendor."';
          if (policy === 'strict') {
            err('rmrr', undefined, `${meaning}. ${linux} Xen refuses it under rdm_policy=strict`, 'with Xen, rdm_policy=relaxed on the pci= entry assigns it anyway, at a risk: firmware DMA can land in the guest\'s memory at those addresses and the device keeps reaching that host range; otherwise use another device or ask the vendor for firmware without the RMRR');
          } else {
            note('warning', 'rmrr-relaxed', undefined, `${meaning}. ${linux} Xen assigns it under rdm_policy=relaxed, which is risky: firmware DMA can land in the guest's memory there`);
          }
        } else if (r.type === 'direct-relaxable') {
          note('info', 'rmrr-relaxable', undefined, `IOMMU group ${gid} has a relaxable reserved region ${region} (an RMRR the kernel lets VFIO drop, as for USB and integrated graphics)`);
        }
      }
    }

    groups.push({
      group: gid,
      viable: gid !== null && !findings.some((f) => f.severity === 'error'),
      requested,
      members: members.map((d): MemberReport => {
        const m: MemberReport = {
          bdf: d.bdf,
          id: `${hex4(d.vendor)}:${hex4(d.device)}`,
          description: d.classCode === null ? 'unknown class' : className(d.classCode),
          kind: isBridgeDevice(d) ? 'bridge' : 'endpoint',
          requested: wanted.has(d.bdf),
          driver: d.driver,
        };
        if (d.classCode !== null) m.classCode = d.classCode;
        return m;
      }),
      findings,
    });
  }
  groups.sort((a, b) => (a.group ?? -1) - (b.group ?? -1));
  return { source: 'sysfs', origin: root, iommu, viable: reportViable(groups, loose) && wanted.size > 0, groups, findings: loose };
}

function checkReset(
  d: SysfsDevice,
  all: string[],
  wanted: Map<string, unknown>,
  err: (code: string, bdf: string | undefined, message: string, fix?: string) => void,
  note: (severity: 'warning' | 'info', code: string, bdf: string | undefined, message: string, fix?: string) => void,
): void {
  const m = d.resetMethods;
  if (m === null || m.length === 0) {
    err(
      'no-reset',
      d.bdf,
      `${d.bdf} has no reset_method in sysfs: the kernel knows no FLR, PM reset or bus reset for it (or predates Linux 5.15, which added the file), so state could carry over between owners`,
      'libvirt refuses such devices ("no FLR, PM reset or bus reset available"); check `lspci -vv -s ' + d.bdf.slice(5) + '` for FLReset+ and use a device that can be reset',
    );
    return;
  }
  if (m.length === 1 && (m[0] === 'bus' || m[0] === 'cxl_bus')) {
    const bus = d.bdf.slice(0, 7);
    const others = all.filter((o) => o.startsWith(bus) && o !== d.bdf && !wanted.has(o));
    if (others.length > 0) {
      note('warning', 'bus-reset-only', d.bdf, `${d.bdf} can only be reset by resetting its whole bus, which also resets ${others.join(', ')}`, `assign ${others.join(', ')} to the same guest, or make sure nothing uses them while the guest starts and stops`);
    }
  }
}
