// Virtual disk names -> Xen virtual block device numbers (xen-vbd-interface(7)). The number is the
// xenstore device id under device/vbd/, so both ends of a vbd must compute it the same way.

export interface Vdev {
  name: string;
  /** Xen vbd number: the device id under /local/domain/N/device/vbd/. */
  devid: number;
  disk: number;
  /** 0 = the whole disk. */
  partition: number;
}

const XVD_MAX_DISK = (1 << 20) - 1;

/** Letters to disk index in bijective base 26: a=0, z=25, aa=26 ... */
function lettersToDisk(s: string): number {
  let n = 0;
  for (const ch of s) {
    n = n * 26 + (ch.charCodeAt(0) - 96);
    if (n > XVD_MAX_DISK + 1) return Infinity;
  }
  return n - 1;
}

function partitionOf(s: string): number {
  if (s === '') return 0;
  if (s[0] === '0' || s.length > 3) return NaN; // xvda0 / xvda01 are not names Linux gives partitions
  return Number(s);
}

function xvdNumber(disk: number, partition: number): number {
  return disk <= 15 && partition <= 15 ? (202 << 8) | (disk << 4) | partition : (1 << 28) | (disk << 8) | partition;
}

/** Parses xvdX[N], sdX[N], hd[a-d][N] and dNpM; returns the vdev or a message saying what is wrong. */
export function parseVdev(name: string): Vdev | string {
  const example = 'use xvda, xvdb, ... (xvda1 for a partition)';
  let m = /^xvd([a-z]+)([0-9]*)$/.exec(name);
  if (m) {
    const disk = lettersToDisk(m[1]);
    const partition = partitionOf(m[2]);
    if (disk > XVD_MAX_DISK) return `vdev '${name}': disk index is above ${XVD_MAX_DISK}; ${example}`;
    if (!(partition <= 255)) return `vdev '${name}': partition must be 1-255 without leading zeros; ${example}`;
    return { name, devid: xvdNumber(disk, partition), disk, partition };
  }
  m = /^d([0-9]{1,7})(?:p([0-9]{1,3}))?$/.exec(name);
  if (m) {
    const disk = Number(m[1]);
    const partition = m[2] === undefined ? 0 : Number(m[2]);
    if ((m[1].length > 1 && m[1][0] === '0') || disk > XVD_MAX_DISK) return `vdev '${name}': disk number must be 0-${XVD_MAX_DISK} without leading zeros`;
    if (m[2] !== undefined && (partition < 1 || partition > 255 || m[2][0] === '0')) return `vdev '${name}': partition must be 1-255`;
    return { name, devid: xvdNumber(disk, partition), disk, partition };
  }
  m = /^sd([a-z]+)([0-9]*)$/.exec(name);
  if (m) {
    const disk = lettersToDisk(m[1]);
    const partition = partitionOf(m[2]);
    if (disk > 15) return `vdev '${name}': sd names cover only sda-sdp; ${example}`;
    if (!(partition <= 15)) return `vdev '${name}': sd partitions are 1-15; ${example}`;
    return { name, devid: (8 << 8) | (disk << 4) | partition, disk, partition };
  }
  m = /^hd([a-z]+)([0-9]*)$/.exec(name);
  if (m) {
    const disk = lettersToDisk(m[1]);
    const partition = partitionOf(m[2]);
    if (disk > 3) return `vdev '${name}': hd names cover only hda-hdd; ${example}`;
    if (!(partition <= 63)) return `vdev '${name}': hd partitions are 1-63; ${example}`;
    return { name, devid: ((disk < 2 ? 3 : 22) << 8) | ((disk & 1) << 6) | partition, disk, partition };
  }
  return `vdev ${JSON.stringify(name.slice(0, 40))} is not a virtual disk name; ${example}`;
}
