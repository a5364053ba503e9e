// `ringside vm-image [--out DIR] [--json]`: builds (or finds in its cache) the guest kernel and
// initramfs that VMs boot. Progress goes to stderr; stdout is the paths, or one JSON document.
import { parseArgs } from 'node:util';
import { buildVmImage, VmImageError } from '../vm/image.js';
import { CliError } from './errors.js';

export const VM_IMAGE_USAGE = `usage: ringside vm-image [--out DIR] [--json]

  Builds the VM guest image from Debian packages: DIR/vmlinuz (linux-image-*-cloud-amd64, fetched
  with apt-get download, never installed) and DIR/initrd.gz (busybox-static, the virtio modules,
  the host's fio and iperf3). A second run with the same inputs reuses the files.

  --out DIR   where the files go (default .ringside/vm-image)
  --json      print the image's description as JSON`;

export async function vmImageCommand(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: { out: { type: 'string', default: '.ringside/vm-image' }, json: { type: 'boolean', default: false }, help: { type: 'boolean', default: false } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    throw new CliError(`ringside vm-image: ${(e as Error).message}\n\n${VM_IMAGE_USAGE}`, 2);
  }
  if (values.help) {
    process.stdout.write(VM_IMAGE_USAGE + '\n');
    return 0;
  }
  if (!values.out) throw new CliError(`ringside vm-image: --out needs a directory\n\n${VM_IMAGE_USAGE}`, 2);
  try {
    const image = await buildVmImage({ outDir: values.out, progress: (l) => process.stderr.write(`ringside: ${l}\n`) });
    if (values.json) process.stdout.write(JSON.stringify(image, null, 2) + '\n');
    else process.stdout.write(`kernel  ${image.kernel}\ninitrd  ${image.initrd}\ncmdline ${image.cmdline}\n`);
    return 0;
  } catch (e) {
    if (e instanceof VmImageError) throw new CliError(`ringside vm-image: ${e.message}`);
    throw e;
  }
}
