// Disk images and NVMe media the configuration asks for: created sparse with the requested size
// when missing, never shrunk or overwritten. The toolstack makes them; only the driver domain
// (a raw image) or the hardware (an NVMe medium) does I/O on them, and both run confined to
// files that already exist.
import { closeSync, existsSync, ftruncateSync, mkdirSync, openSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import type { DiskSpec } from '../../src/config/disk-spec.js';
import { formatBdf } from '../../src/config/bdf.js';
import type { HostDevice } from '../../src/config/host.js';

export function ensureImage(disk: DiskSpec): string {
  return ensureFile(disk.target, disk.sizeBytes, `disk ${disk.vdev}`, `disk image ${disk.targetAsWritten} does not exist; create it or add size= to the disk entry`);
}

/** host.cfg's `medium=` of an NVMe function. */
export function ensureMedium(dev: HostDevice): string {
  const what = `NVMe ${formatBdf(dev.bdf)}`;
  return ensureFile(dev.medium as string, dev.sizeBytes, what, `medium ${dev.medium} of ${what} does not exist; create it or add size= to its host.cfg entry`);
}

function ensureFile(path: string, sizeBytes: number | undefined, what: string, missing: string): string {
  if (existsSync(path)) {
    const st = statSync(path);
    if (!st.isFile() && !st.isBlockDevice()) throw new Error(`${path} (${what}) is neither a file nor a block device`);
    if (sizeBytes !== undefined && st.isFile() && st.size < sizeBytes) return `${path} is ${st.size} bytes, smaller than size=${sizeBytes}; using it as it is`;
    return `using existing image ${path}`;
  }
  if (sizeBytes === undefined) throw new Error(missing);
  mkdirSync(dirname(path), { recursive: true });
  const fd = openSync(path, 'wx', 0o600);
  try {
    ftruncateSync(fd, sizeBytes);
  } finally {
    closeSync(fd);
  }
  return `created ${path} (${sizeBytes} bytes, sparse)`;
}
