// Public surface of iommu/: the VT-d model, the OS-side helpers hv uses to program it, the PCI
// platform, the sysfs passthrough checker and the bench. Other folders import from here.

export { VtdUnit, INTERRUPT_WINDOW_START, INTERRUPT_WINDOW_END, TR_INTERRUPT_WINDOW, TR_INVALID_ADDRESS } from './vtd/unit.js';
export type { VtdUnitOptions, TranslateResult, TranslateOk, TranslateFault, DmaResult, InterruptMessage, UnitStats } from './vtd/unit.js';
export type { PhysMem, FrameSource } from './vtd/physmem.js';
export { SparseMemory, BumpFrames, readU64, writeU64, readU32 } from './vtd/physmem.js';
export type { FaultInfo, FaultRecord, FaultDisposition } from './vtd/faults.js';
export { faultReasonText, isQualifiedFault } from './vtd/fault-reasons.js';
export * as faultReasons from './vtd/fault-reasons.js';
export { REG } from './vtd/registers.js';
export { SecondLevelTable, SIZE_4K, SIZE_2M, SIZE_1G } from './vtd/pagetable.js';
export type { PageSize, PagePerm, Mapping } from './vtd/pagetable.js';
export { RootTable } from './vtd/root-table.js';
export { VtdDriver } from './vtd/driver.js';
export type { Mmio, DrainedFault } from './vtd/driver.js';
export { encodeRootEntry, decodeRootEntry, encodeContextEntry, decodeContextEntry, encodePte, decodePte, TT_UNTRANSLATED, TT_DEVICE_TLB, TT_PASS_THROUGH } from './vtd/entries.js';
export type { ContextEntry, RootEntry, SlPte } from './vtd/entries.js';

export { PciPlatform } from './platform/platform.js';
export type { AssignRequest, AssignOptions, AssignResult, PlatformResult, PciDeviceInfo, DeviceOwner, AttributedFault, ConfigWriteResult, IdentityMap, RdmPolicy } from './platform/platform.js';
export { IommuDomains } from './platform/iommu-domains.js';
export type { IommuBinding, IommuOwner } from './platform/iommu-domains.js';
export type { IommuGroup } from './platform/groups.js';
export { ConfigSpace, CFG, CMD_BUS_MASTER, CMD_MEMORY, CMD_IO, barsFor } from './platform/config-space.js';
export { formatPciList, pciListJson } from './platform/pci-list.js';

export { checkSysfs, PASSTHROUGH_DRIVERS } from './sysfs/check.js';
export type { SysfsRequest, SysfsCheckOptions } from './sysfs/check.js';
export { listSysfs, formatSysfsList } from './sysfs/list.js';
export type { SysfsListEntry } from './sysfs/list.js';
export { formatCheckReport, checkReportJson, className } from './check-report.js';
export type { CheckReport, GroupVerdict, CheckFinding, MemberReport } from './check-report.js';

export { runIommuBench, formatIommuBench } from './bench.js';
export type { IommuBenchResult, IommuBenchOptions } from './bench.js';

export { runBlockPathBench } from './devices/bench-blk.js';
export type { BlockPathBench } from './devices/bench-blk.js';
