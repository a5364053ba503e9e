// The VM tooling against real peers: the guest image boots under QEMU (TCG), sees a virtio-blk disk
// served by QEMU's built-in device and by qemu-storage-daemon's vhost-user-blk export, runs fio with
// crc32c verification inside the guest, and what the guest wrote is then read back from the host.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { bootQemu, ensureVmImage, StorageDaemon } from '../support/vm.js';
import { exerciseDisk, expectPatternInImage, scratch as scratchDisk } from '../support/vm-disk.js';
import { requireBuilt, DIST } from '../support/platform.js';
import type { VmImage } from '../../src/vm/image.js';

let img: VmImage;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

beforeAll(async () => {
  img = await ensureVmImage();
  process.stderr.write(`vm image: ${img.cached ? 'cached' : 'built'} in ${img.buildMs} ms (${img.kernelPackage} ${img.kernelVersion}, initrd ${(img.initrdBytes / 1048576).toFixed(1)} MiB)\n`);
}, 900_000);

const scratch = () => scratchDisk(cleanups);

describe('VM guest image under QEMU (TCG)', () => {
  it('boots, and QEMU\'s built-in virtio-blk carries a verified fio run and a pattern the host reads back', async () => {
    const { disk } = scratch();
    const vm = await bootQemu({ image: img, disks: [{ kind: 'file', path: disk }] });
    cleanups.push(() => vm.kill());
    process.stderr.write(`built-in virtio-blk: boot to ready ${vm.bootMs} ms\n`);
    const uname = await vm.console.run('uname -r');
    expect(uname.output.trim()).toBe(img.kernelRelease);
    await exerciseDisk(vm);
    await vm.poweroff();
    expectPatternInImage(disk);
  }, 900_000);

  it('serves the same workload through qemu-storage-daemon\'s vhost-user-blk export (shared memfd RAM)', async () => {
    const { dir, disk } = scratch();
    const qsd = await StorageDaemon.start({ image: disk, socket: join(dir, 'vub.sock') });
    cleanups.push(() => qsd.kill());
    const vm = await bootQemu({ image: img, disks: [{ kind: 'vhost-user', socket: qsd.socket }] });
    cleanups.push(() => vm.kill());
    process.stderr.write(`vhost-user-blk (qemu-storage-daemon): boot to ready ${vm.bootMs} ms\n`);
    expect(vm.args.join(' ')).toContain('memory-backend-memfd,id=mem');
    await exerciseDisk(vm);
    await vm.poweroff();
    expect(qsd.exitStatus, `qemu-storage-daemon died: ${qsd.stderr}`).toBeUndefined();
    expectPatternInImage(disk);
  }, 900_000);

  it('the console reports exit statuses and output of guest commands, and names the command that timed out', async () => {
    const vm = await bootQemu({ image: img });
    cleanups.push(() => vm.kill());
    expect(await vm.console.run(`echo "it's" 'two  words'; false`)).toEqual({ code: 1, output: "it's two  words\n" });
    expect(await vm.console.run('sh -c "exit 7"')).toEqual({ code: 7, output: '' });
    expect((await vm.console.run('sleep 1 & wait')).code).toBe(0);
    await expect(vm.console.run('sleep 8', { timeoutMs: 1_000 })).rejects.toThrow(/'sleep 8'.*end marker/s);
    // The shell is still usable after a command the harness gave up on.
    expect((await vm.console.run('echo still-here', { timeoutMs: 120_000 })).output).toBe('still-here\n');
    expect(await vm.qmp.execute<{ status: string }>('query-status')).toMatchObject({ status: 'running' });
    await vm.close();
    expect(vm.exitStatus).toBeDefined();
  }, 900_000);
});

describe('ringside vm-image', () => {
  const cli = (args: string[], env: NodeJS.ProcessEnv = process.env) =>
    promisify(execFile)(process.execPath, [join(DIST, 'ringside.js'), 'vm-image', ...args], { env, timeout: 600_000 }).then(
      (r) => ({ code: 0, ...r }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
    );

  beforeAll(() => requireBuilt());

  it('a second build of the same directory is a cache hit with the same files', async () => {
    const r = await cli(['--out', img.dir, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const again = JSON.parse(r.stdout) as VmImage;
    expect(again).toMatchObject({ cached: true, key: img.key, kernel: img.kernel, initrd: img.initrd });
  }, 600_000);

  it('refuses an output path it cannot use, naming it', async () => {
    const { dir } = scratch();
    const file = join(dir, 'a-file');
    writeFileSync(file, 'x');
    const r = await cli(['--out', join(file, 'sub')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot use '.*a-file\/sub' as the image directory/);
    // Under /proc the kernel says ENOENT for parents that exist: the build must still give up at once.
    const p = await cli(['--out', '/proc/ringside-nope/x']);
    expect(p.code).toBe(1);
    expect(p.stderr).toContain("cannot use '/proc/ringside-nope/x' as the image directory");
  });

  it('says the Debian mirror is out of reach when apt-get download cannot fetch the kernel', async () => {
    const { dir } = scratch();
    // A proxy nobody listens on, set where apt reads it last (APT_CONFIG) and in the environment:
    // apt still resolves the kernel from its local lists, then the download fails.
    const conf = join(dir, 'apt.conf');
    writeFileSync(conf, 'Acquire::http::Proxy "http://127.0.0.1:9";\nAcquire::https::Proxy "http://127.0.0.1:9";\nAcquire::Retries "0";\n');
    const env = { ...process.env, APT_CONFIG: conf, http_proxy: 'http://127.0.0.1:9', https_proxy: 'http://127.0.0.1:9' };
    const r = await cli(['--out', join(dir, 'img')], env);
    expect(r.code, r.stdout).toBe(1);
    expect(r.stderr).toMatch(/could not download linux-image-\S+-cloud-amd64 from the Debian mirror/);
  }, 600_000);

  it('rejects unknown options with the usage', async () => {
    const r = await cli(['--bogus']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('usage: ringside vm-image');
  });
});
