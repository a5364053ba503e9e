// The system configuration layer: xl.cfg-style files in, validated typed configs out.
export { ConfigError, type ErrorWhere } from './errors.js';
export { parseBdf, formatBdf, bdfEqual, type Bdf } from './bdf.js';
export { parseXlCfg, decodeConfig, type XlCfg, type CfgEntry, type CfgValue, type CfgScalar, type CfgList } from './xlcfg.js';
export { parseDisk, type DiskSpec, type DiskAccess } from './disk.js';
export { parseVdev, type Vdev } from './vdev.js';
export { parseVif, type VifSpec } from './vif.js';
export { deriveMac, parseIpv4Cidr, parseRate, type Ipv4Cidr, type Rate } from './net.js';
export { parseMac } from '../packet/mac.js';
export { parsePciSpec, parseRdm, type PciSpec, type PciDefaults, type RdmConfig, type RdmPolicy } from './pci.js';
export { parseDomain, type DomainConfig, type DriverRole, type OnCrash, type Uplink } from './domain.js';
export { parseHost, emptyHost, type HostConfig, type HostDevice, type HostDeviceType, type NicWire, type RmrrRegion, type ResetMethod } from './host.js';
export { loadSystem, loadSystemFromFiles, loadDomainFile, loadHostFile, HOST_FILE, type SystemConfig, type SystemDomain, type DomainRole } from './system.js';
