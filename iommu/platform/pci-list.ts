// `ringside pci list`: one line per PCI function with its identity, IOMMU group, owner and the DMA
// faults attributed to it, like `lspci` crossed with `xl pci-assignable-list`.

import type { PciDeviceInfo } from './platform.js';

const hex = (n: number, w: number): string => n.toString(16).padStart(w, '0');

export function formatPciList(devices: readonly PciDeviceInfo[]): string {
  if (devices.length === 0) return 'no PCI devices (host.cfg lists none)';
  const rows = devices.map((d) => [
    d.bdf,
    `${hex(d.vendor, 4)}:${hex(d.device, 4)}`,
    d.description,
    d.group === null ? '-' : String(d.group),
    d.owner + (d.permissive ? ' (permissive)' : ''),
    String(d.faults),
  ]);
  const head = ['BDF', 'ID', 'CLASS', 'GROUP', 'OWNER', 'FAULTS'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]): string => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ');
  return [line(head), ...rows.map(line)].join('\n');
}

/** --json: the same rows, ids as numbers. */
export function pciListJson(devices: readonly PciDeviceInfo[]): PciDeviceInfo[] {
  return devices.map((d) => ({ ...d }));
}
