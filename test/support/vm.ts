// Test harness for real Linux VMs: the guest image, built once per machine into a shared cache, and
// the VM plumbing from src/vm (console, QMP, QEMU and qemu-storage-daemon launchers).
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildVmImage, type VmImage } from '../../src/vm/image.js';
import { bootQemu as boot, type BootQemuOptions, type QemuVm } from '../../src/vm/launch.js';

export { VmConsole, Qmp, VM_BOOT_TIMEOUT_MS } from '../../src/vm/console.js';
export { QemuVm, StorageDaemon, type QemuDisk } from '../../src/vm/launch.js';

/** Shared by every test file and worktree on the machine, so the image is built once. */
export const VM_IMAGE_CACHE = join(tmpdir(), 'ringside-vm-image');

let image: Promise<VmImage> | undefined;

/** The guest kernel and initramfs, built into VM_IMAGE_CACHE on first use (later calls reuse it). */
export function ensureVmImage(): Promise<VmImage> {
  image ??= buildVmImage({ outDir: VM_IMAGE_CACHE, progress: (l) => process.stderr.write(`vm-image: ${l}\n`) });
  return image;
}

/** A VM under TCG on the cached image unless another is given; returns once its shell is ready. */
export async function bootQemu(opts: Partial<BootQemuOptions> = {}): Promise<QemuVm> {
  return boot({ ...opts, image: opts.image ?? (await ensureVmImage()) });
}
