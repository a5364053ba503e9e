// Sysfs fixture trees for the passthrough checker: small hosts described as data and written out
// with the layout and relative symlinks Linux uses, so the checker reads them exactly as it reads
// /sys. The trees under fixtures/ are this module's output, kept in git for `ringside pci check
// --sysfs`; the tests regenerate them and fail if the two drift (UPDATE_SYSFS_FIXTURES=1 rewrites).

import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';

export interface FixtureDevice {
  bdf: string;
  /** Upstream bridge: the device's directory nests below it, as under /sys/devices. */
  parent?: string;
  vendor: number;
  device: number;
  classCode: number;
  bridge?: boolean;
  multifunction?: boolean;
  driver?: string;
  driverOverride?: string;
  group?: number;
  /** Content of reset_method; absent means no file. */
  reset?: string;
  physfn?: string;
}

export interface FixtureGroup {
  id: number;
  type?: string;
  /** Extra reserved_regions lines after the MSI window. */
  reserved?: string[];
}

export interface SysfsFixture {
  name: string;
  description: string;
  devices: FixtureDevice[];
  groups: FixtureGroup[];
}

const HOST_BRIDGE: FixtureDevice = { bdf: '0000:00:00.0', vendor: 0x8086, device: 0x3e30, classCode: 0x060000, group: 0 };
const ROOT_PORT_1C: FixtureDevice = { bdf: '0000:00:1c.0', vendor: 0x8086, device: 0xa338, classCode: 0x060400, bridge: true, driver: 'pcieport', group: 1 };

export const SYSFS_FIXTURES: SysfsFixture[] = [
  {
    name: 'nic-alone',
    description: 'An Intel I210 NIC alone in its IOMMU group behind an ACS root port, bound to vfio-pci: viable.',
    devices: [
      HOST_BRIDGE,
      ROOT_PORT_1C,
      { bdf: '0000:03:00.0', parent: '0000:00:1c.0', vendor: 0x8086, device: 0x1533, classCode: 0x020000, driver: 'vfio-pci', driverOverride: 'vfio-pci', group: 2, reset: 'flr bus' },
    ],
    groups: [{ id: 0 }, { id: 1 }, { id: 2, type: 'DMA-FQ' }],
  },
  {
    name: 'nic-sibling-bound',
    description: 'A two-port Intel I350 without ACS between functions: port 0 on vfio-pci, port 1 still on igb. Group 5 is not viable.',
    devices: [
      HOST_BRIDGE,
      { bdf: '0000:00:01.0', vendor: 0x8086, device: 0x1901, classCode: 0x060400, bridge: true, driver: 'pcieport', group: 1 },
      { bdf: '0000:01:00.0', parent: '0000:00:01.0', vendor: 0x8086, device: 0x1521, classCode: 0x020000, multifunction: true, driver: 'vfio-pci', driverOverride: 'vfio-pci', group: 5, reset: 'flr' },
      { bdf: '0000:01:00.1', parent: '0000:00:01.0', vendor: 0x8086, device: 0x1521, classCode: 0x020000, multifunction: true, driver: 'igb', group: 5, reset: 'flr' },
    ],
    groups: [{ id: 0 }, { id: 1 }, { id: 5, type: 'DMA-FQ' }],
  },
  {
    name: 'rmrr-direct',
    description: 'A Broadcom NIC on an HP-style server whose firmware keeps a non-relaxable RMRR for it: ineligible unless rdm_policy=relaxed.',
    devices: [
      HOST_BRIDGE,
      ROOT_PORT_1C,
      { bdf: '0000:03:00.0', parent: '0000:00:1c.0', vendor: 0x14e4, device: 0x1657, classCode: 0x020000, driver: 'vfio-pci', driverOverride: 'vfio-pci', group: 9, reset: 'flr' },
    ],
    groups: [{ id: 0 }, { id: 1 }, { id: 9, reserved: ['0x00000000bdf6e000 0x00000000bdf6efff direct'] }],
  },
  {
    name: 'iommu-off',
    description: 'VT-d disabled: no IOMMU groups at all, the NIC on its host driver.',
    devices: [
      { ...HOST_BRIDGE, group: undefined },
      { ...ROOT_PORT_1C, group: undefined },
      { bdf: '0000:03:00.0', parent: '0000:00:1c.0', vendor: 0x8086, device: 0x1533, classCode: 0x020000, driver: 'igb', reset: 'flr bus' },
    ],
    groups: [],
  },
  {
    name: 'bridge-in-group',
    description: 'A root port without ACS shares group 7 with the Realtek NIC below it; the bridge does not block the group, and the NIC resets only by bus reset.',
    devices: [
      HOST_BRIDGE,
      { ...ROOT_PORT_1C, group: 7 },
      { bdf: '0000:02:00.0', parent: '0000:00:1c.0', vendor: 0x10ec, device: 0x8168, classCode: 0x020000, driver: 'vfio-pci', driverOverride: 'vfio-pci', group: 7, reset: 'bus' },
    ],
    groups: [{ id: 0 }, { id: 7 }],
  },
  {
    name: 'no-reset',
    description: 'An NVMe controller on vfio-pci for which the kernel found no reset method (no reset_method file).',
    devices: [
      HOST_BRIDGE,
      { bdf: '0000:00:02.0', vendor: 0x8086, device: 0x1905, classCode: 0x060400, bridge: true, driver: 'pcieport', group: 1 },
      { bdf: '0000:05:00.0', parent: '0000:00:02.0', vendor: 0x144d, device: 0xa808, classCode: 0x010802, driver: 'vfio-pci', driverOverride: 'vfio-pci', group: 11 },
    ],
    groups: [{ id: 0 }, { id: 1 }, { id: 11 }],
  },
];

const hex = (n: number, w: number): string => `0x${n.toString(16).padStart(w, '0')}\n`;

function link(from: string, to: string): void {
  mkdirSync(dirname(from), { recursive: true });
  symlinkSync(relative(dirname(from), to), from);
}

/** Writes the fixture under `dir` (which must not exist yet or be empty). */
export function writeSysfsFixture(dir: string, f: SysfsFixture): void {
  const sys = join(dir, 'sys');
  const byBdf = new Map(f.devices.map((d) => [d.bdf, d]));
  const devPath = (d: FixtureDevice): string => {
    const chain: string[] = [];
    for (let p: FixtureDevice | undefined = d; p !== undefined; p = p.parent === undefined ? undefined : byBdf.get(p.parent)) chain.unshift(p.bdf);
    return join(sys, 'devices', `pci${d.bdf.slice(0, 4)}:00`, ...chain);
  };
  mkdirSync(join(sys, 'kernel', 'iommu_groups'), { recursive: true });
  mkdirSync(join(sys, 'bus', 'pci', 'devices'), { recursive: true });

  for (const d of f.devices) {
    const p = devPath(d);
    mkdirSync(p, { recursive: true });
    writeFileSync(join(p, 'vendor'), hex(d.vendor, 4));
    writeFileSync(join(p, 'device'), hex(d.device, 4));
    writeFileSync(join(p, 'class'), hex(d.classCode, 6));
    const cfg = Buffer.alloc(256);
    cfg.writeUInt16LE(d.vendor, 0);
    cfg.writeUInt16LE(d.device, 2);
    cfg.writeUIntLE(d.classCode, 9, 3);
    cfg[0x0e] = (d.bridge ? 1 : 0) | (d.multifunction ? 0x80 : 0);
    writeFileSync(join(p, 'config'), cfg);
    writeFileSync(join(p, 'driver_override'), `${d.driverOverride ?? '(null)'}\n`);
    if (d.reset !== undefined) writeFileSync(join(p, 'reset_method'), `${d.reset}\n`);
    link(join(sys, 'bus', 'pci', 'devices', d.bdf), p);
    if (d.driver !== undefined) {
      const drv = join(sys, 'bus', 'pci', 'drivers', d.driver);
      mkdirSync(drv, { recursive: true });
      for (const file of ['bind', 'unbind', 'new_id', 'remove_id']) writeFileSync(join(drv, file), '');
      link(join(drv, d.bdf), p);
      link(join(p, 'driver'), drv);
    }
    if (d.group !== undefined) {
      const g = join(sys, 'kernel', 'iommu_groups', String(d.group));
      link(join(g, 'devices', d.bdf), p);
      link(join(p, 'iommu_group'), g);
    }
    if (d.physfn !== undefined) link(join(p, 'physfn'), join(sys, 'bus', 'pci', 'devices', d.physfn));
  }
  for (const g of f.groups) {
    const gd = join(sys, 'kernel', 'iommu_groups', String(g.id));
    mkdirSync(join(gd, 'devices'), { recursive: true });
    writeFileSync(join(gd, 'type'), `${g.type ?? 'DMA'}\n`);
    writeFileSync(join(gd, 'reserved_regions'), ['0x00000000fee00000 0x00000000feefffff msi', ...(g.reserved ?? [])].join('\n') + '\n');
  }
}
