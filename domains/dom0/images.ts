// Disk images the configuration asks for: created sparse with the requested size when missing,
// never shrunk or overwritten. The toolstack makes them; only the driver domain does I/O on them.
import { closeSync, existsSync, ftruncateSync, mkdirSync, openSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import type { DiskSpec } from '../../src/config/disk.js';

export function ensureImage(disk: DiskSpec): string {
  if (existsSync(disk.target)) {
    const st = statSync(disk.target);
    if (!st.isFile() && !st.isBlockDevice()) throw new Error(`${disk.target} (disk ${disk.vdev}) is neither a file nor a block device`);
    if (disk.sizeBytes !== undefined && st.isFile() && st.size < disk.sizeBytes)
      return `${disk.target} is ${st.size} bytes, smaller than size=${disk.sizeBytes}; using it as it is`;
    return `using existing image ${disk.target}`;
  }
  if (disk.sizeBytes === undefined) throw new Error(`disk image ${disk.targetAsWritten} does not exist; create it or add size= to the disk entry`);
  mkdirSync(dirname(disk.target), { recursive: true });
  const fd = openSync(disk.target, 'wx', 0o600);
  try {
    ftruncateSync(fd, disk.sizeBytes);
  } finally {
    closeSync(fd);
  }
  return `created ${disk.target} (${disk.sizeBytes} bytes, sparse)`;
}
