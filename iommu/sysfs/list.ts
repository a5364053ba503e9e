// `ringside pci list --sysfs DIR`: a real host's PCI functions with their IOMMU group, driver and
// reset methods, the facts the checker's verdicts rest on.

import { className } from '../platform/class-names.js';
import { isBridgeDevice, listDevices, readDevice } from './read.js';

export interface SysfsListEntry {
  bdf: string;
  vendor: number | null;
  device: number | null;
  classCode: number | null;
  description: string;
  bridge: boolean;
  group: number | null;
  driver: string | null;
  resetMethods: string[] | null;
}

export function listSysfs(root: string): SysfsListEntry[] {
  return listDevices(root)
    .map((bdf) => readDevice(root, bdf))
    .filter((d) => d !== null)
    .map((d) => ({
      bdf: d.bdf,
      vendor: d.vendor,
      device: d.device,
      classCode: d.classCode,
      description: d.classCode === null ? 'unknown class' : className(d.classCode),
      bridge: isBridgeDevice(d),
      group: d.group,
      driver: d.driver,
      resetMethods: d.resetMethods,
    }));
}

export function formatSysfsList(rows: readonly SysfsListEntry[]): string {
  if (rows.length === 0) return 'no PCI devices found';
  const h = (n: number | null): string => (n === null ? '????' : n.toString(16).padStart(4, '0'));
  const cells = rows.map((r) => [r.bdf, `${h(r.vendor)}:${h(r.device)}`, r.description, r.group === null ? '-' : String(r.group), r.driver ?? '-', r.resetMethods === null ? '-' : r.resetMethods.join(',') || '-']);
  const head = ['BDF', 'ID', 'CLASS', 'GROUP', 'DRIVER', 'RESET'];
  const w = head.map((x, i) => Math.max(x.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]): string => c.map((x, i) => (i === c.length - 1 ? x : x.padEnd(w[i]))).join('  ');
  return [line(head), ...cells.map(line)].join('\n');
}
