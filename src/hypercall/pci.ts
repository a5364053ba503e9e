// Plain-data shapes of the PCI hypercalls. The control domain parses host.cfg; hv parses nothing,
// so dom0 hands hv the already-parsed hardware list in platform_init (toPlatformInit), and hv
// checks every field again (domains/hv/pci-validate.ts) before it builds the platform from it.
import { formatBdf } from '../config/bdf.js';
import type { HostConfig, HostDeviceType, ResetMethod } from '../config/host.js';
import type { PciDeviceInfo } from '../../iommu/platform/platform.js';

export type PciWire = { kind: 'none' } | { kind: 'tap'; name: string } | { kind: 'cable'; peer: string };

export interface PciDeviceSpec {
  bdf: string;
  type: HostDeviceType;
  parent?: string;
  acs: boolean;
  multifunction: boolean;
  vendor: number;
  device: number;
  classCode: number;
  /** nvme: absolute path of the raw image */
  medium?: string;
  /** nvme: create the image with this size when it does not exist */
  sizeBytes?: number;
  wire?: PciWire;
  mac?: string;
  /** nic: false offers no offloads */
  offloads?: boolean;
  /** reserved regions, inclusive end; addresses below 2^53 */
  rmrr: { start: number; end: number; relaxable: boolean }[];
  resetMethods: ResetMethod[];
}

export interface PlatformInitArgs {
  iommu: { enabled: boolean; addressWidth: 39 | 48; cachingMode: boolean };
  devices: PciDeviceSpec[];
}

export interface PciAssignSpec {
  bdf: string;
  allFunctions?: boolean;
  permissive?: boolean;
  seize?: boolean;
  rdmPolicy?: 'strict' | 'relaxed';
}

/** One row of `pci_list`: the platform's own view of a device. */
export type PciDeviceView = PciDeviceInfo;

/** One IOMMU fault as hv attributes it. */
export interface PciFault {
  at: number;
  bdf: string;
  sid: number;
  /** owning domain at the time, or -1 for quarantine / host */
  domid: number;
  owner: string;
  iova: number;
  reason: number;
  reasonText: string;
  write: boolean;
  disposition: string;
  /** set when the IOVA is inside a device_map grant window of the owner */
  grant?: { grantor: number; ref: number; iova: number };
}

/** A fault record as hv's fault handler drained it from the FRCD registers. */
export interface PciFaultRecord {
  at: number;
  sid: number;
  /** page address, as FRCD.FI holds it */
  address: number;
  reason: number;
  write: boolean;
}

export interface PciOpenResult {
  kind: 'nvme' | 'nic';
  barSize: number;
  /** nvme: logical blocks and block size */
  blocks?: number;
  blockSize?: number;
  readonly?: boolean;
  /** nic */
  mac?: string;
  linkUp?: boolean;
}

/** host.cfg as platform_init's argument. */
export function toPlatformInit(host: HostConfig): PlatformInitArgs {
  return {
    iommu: { ...host.iommu },
    devices: host.devices.map((d) => {
      const s: PciDeviceSpec = {
        bdf: formatBdf(d.bdf),
        type: d.type,
        acs: d.acs,
        multifunction: d.multifunction,
        vendor: d.vendor,
        device: d.device,
        classCode: d.classCode,
        rmrr: d.rmrr.map((r) => ({ start: Number(r.start), end: Number(r.end), relaxable: r.relaxable })),
        resetMethods: [...d.resetMethods],
      };
      if (d.parent) s.parent = formatBdf(d.parent);
      if (d.medium !== undefined) s.medium = d.medium;
      if (d.sizeBytes !== undefined) s.sizeBytes = d.sizeBytes;
      if (d.mac !== undefined) s.mac = d.mac;
      if (d.offloads !== undefined) s.offloads = d.offloads;
      if (d.wire !== undefined) s.wire = d.wire.kind === 'cable' ? { kind: 'cable', peer: formatBdf(d.wire.peer) } : d.wire;
      return s;
    }),
  };
}
