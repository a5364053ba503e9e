// ringside's own vhost-user-blk backend (src/vhost-user + src/virtio) against the real peers: QEMU's
// vhost-user-blk-pci frontend and the Linux guest's virtio-blk driver. The backend runs in this
// test process on a raw image; the guest writes, reads back and fio-verifies, and the host then
// finds the guest's bytes in the image.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { bootQemu, ensureVmImage } from '../support/vm.js';
import { DISK_MIB, exerciseDisk, expectPatternInImage, scratch } from '../support/vm-disk.js';
import { RawFile } from '../../src/blkdev/raw-file.js';
import { VirtioBlk } from '../../src/virtio/blk.js';
import { VhostUserServer } from '../../src/vhost-user/server.js';
import type { VmImage } from '../../src/vm/image.js';

let img: VmImage;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
beforeAll(async () => {
  img = await ensureVmImage();
}, 900_000);

async function serve(disk: string, dir: string, o: { queues?: number; readonly?: boolean } = {}) {
  const logs: string[] = [];
  const device = await RawFile.open(disk, { readonly: o.readonly ?? false });
  const blk = new VirtioBlk({ name: 'vda', device, readonly: o.readonly ?? false, queues: o.queues ?? 1, serial: 'ringside-test-0001' });
  const server = new VhostUserServer(join(dir, 'blk.sock'), blk, { log: (l) => (logs.push(l), process.env.RS_DEBUG && process.stderr.write(l + '\n')) });
  cleanups.push(async () => {
    await server.close();
    await device.close();
  });
  return { server, blk, logs };
}

describe('ringside vhost-user-blk backend with a Linux guest under QEMU', () => {
  it('carries a pattern and a verified fio run, and the host reads the guest\'s bytes back', async () => {
    const { dir, disk } = scratch(cleanups);
    const { server, logs } = await serve(disk, dir);
    const vm = await bootQemu({ image: img, disks: [{ kind: 'vhost-user', socket: server.path }] });
    cleanups.push(() => vm.kill());
    process.stderr.write(`vhost-user-blk (ringside): boot to ready ${vm.bootMs} ms\n`);
    const serial = await vm.console.run('cat /sys/block/vda/serial');
    expect(serial.output.trim(), logs.join('\n')).toBe('ringside-test-0001');
    await exerciseDisk(vm);
    await vm.poweroff();
    expect(logs.filter((l) => /stopped|protocol error|not supported/.test(l)), logs.join('\n')).toEqual([]);
    expectPatternInImage(disk);
  }, 900_000);

  it('serves two queues to two guest CPUs, and a read-only disk refuses writes', async () => {
    const { dir, disk } = scratch(cleanups);
    const { server, blk, logs } = await serve(disk, dir, { queues: 2 });
    const ro = scratch(cleanups);
    const roServer = await serve(ro.disk, ro.dir, { readonly: true });
    const vm = await bootQemu({
      image: img,
      vcpus: 2,
      disks: [
        { kind: 'vhost-user', socket: server.path, queues: 2 },
        { kind: 'vhost-user', socket: roServer.server.path },
      ],
    });
    cleanups.push(() => vm.kill());
    const mq = await vm.console.run('ls /sys/block/vda/mq');
    expect(mq.output.trim().split(/\s+/).sort(), logs.join('\n')).toEqual(['0', '1']);
    const size = await vm.console.run('cat /sys/block/vdb/size /sys/block/vdb/ro');
    expect(size.output.trim().split('\n')).toEqual([String((DISK_MIB << 20) / 512), '1']);
    const w = await vm.console.run('dd if=/dev/zero of=/dev/vdb bs=4096 count=1 oflag=direct');
    expect(w.code).not.toBe(0);
    // Both CPUs drive their own queue at once, each job on its own 8 MiB so verify can hold.
    const fio = await vm.console.run('fio --name=mq --filename=/dev/vda --rw=randrw --bs=4k --size=8M --offset_increment=8M --numjobs=2 --verify=crc32c --direct=1 --ioengine=psync --cpus_allowed_policy=split --cpus_allowed=0-1 --group_reporting', { timeoutMs: 600_000 });
    expect(fio.code, fio.output).toBe(0);
    expect(blk.answered[0], 'requests on queue 0').toBeGreaterThan(100);
    expect(blk.answered[1], 'requests on queue 1').toBeGreaterThan(100);
    await vm.poweroff();
  }, 900_000);
});
