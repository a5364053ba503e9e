export { BlockDeviceError, DmaList, isDmaBlockDevice, type BlockDevice, type BlockDeviceInfo, type DmaBlockDevice, type IoDone } from './device.js';
export { RawFile, type RawFileOptions } from './raw-file.js';
export { DeviceDisk } from './disk.js';
