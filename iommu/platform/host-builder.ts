// Builds HostConfig values in code, for tests and examples that should not depend on host.cfg
// syntax: `hostDev('01:00.0', 'nic', { parent: '00:01.0' })`.

import { parseBdf, type Bdf } from '../../src/config/bdf.js';
import type { HostConfig, HostDevice, HostDeviceType, RmrrRegion, ResetMethod } from '../../src/config/host.js';
import { defaultNicMac } from '../../src/config/hostdev.js';

export interface HostDevOptions {
  parent?: string;
  acs?: boolean;
  multifunction?: boolean;
  rmrr?: RmrrRegion[];
  reset?: ResetMethod[];
  vendor?: number;
  device?: number;
  classCode?: number;
}

const IDS: Record<HostDeviceType, { vendor: number; device: number; classCode: number; acs: boolean; reset: ResetMethod[] }> = {
  'host-bridge': { vendor: 0x8086, device: 0x29c0, classCode: 0x060000, acs: false, reset: [] },
  'root-port': { vendor: 0x1b36, device: 0x000c, classCode: 0x060400, acs: true, reset: [] },
  'pci-bridge': { vendor: 0x1b36, device: 0x0001, classCode: 0x060400, acs: false, reset: [] },
  nvme: { vendor: 0x1b36, device: 0x0010, classCode: 0x010802, acs: false, reset: ['flr'] },
  nic: { vendor: 0x8086, device: 0x10d3, classCode: 0x020000, acs: false, reset: ['flr'] },
};

export function bdf(text: string): Bdf {
  const b = parseBdf(text);
  if (typeof b === 'string') throw new Error(b);
  return b;
}

export function hostDev(at: string, type: HostDeviceType, o: HostDevOptions = {}): HostDevice {
  const d = IDS[type];
  const dev: HostDevice = {
    bdf: bdf(at),
    type,
    acs: o.acs ?? d.acs,
    multifunction: o.multifunction ?? false,
    vendor: o.vendor ?? d.vendor,
    device: o.device ?? d.device,
    classCode: o.classCode ?? d.classCode,
    rmrr: o.rmrr ?? [],
    resetMethods: o.reset ?? [...d.reset],
    line: 0,
  };
  if (o.parent !== undefined) dev.parent = bdf(o.parent);
  if (type === 'nic') dev.mac = defaultNicMac(dev.bdf); // as host.cfg's parser does
  return dev;
}

export function hostConfig(devices: HostDevice[], iommu: Partial<HostConfig['iommu']> = {}): HostConfig {
  return { file: 'host.cfg', name: 'localhost', iommu: { enabled: true, addressWidth: 48, cachingMode: false, ...iommu }, devices, cpuMask: [], peers: [] };
}
