// A real Linux VM deployed the way an operator does it: `ringside up` on examples/vm. dom0 builds the
// QEMU command line and hv runs it confined; blkdom serves the VM's disk over vhost-user and a
// Xen-ABI guest's disk over blkif, both from one NVMe controller behind the IOMMU, at the same time.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, requireBuilt } from '../support/platform.js';
import { procStatus, processesMentioning } from '../support/proc.js';
import { ensureVmImage, VmConsole, VM_BOOT_TIMEOUT_MS } from '../support/vm.js';
import { GUEST_PATTERN, exerciseDisk, expectPatternInImage } from '../support/vm-disk.js';
import { createConnection } from 'node:net';
import { until } from '../support/until.js';
import { SystemUnderTest, allConnected, alive, deviceStates, run } from '../system/support.js';

const EXAMPLE = join(ROOT, 'examples', 'vm');

/** The example's files, with the kernel and initramfs pointed at the image this machine built. */
function exampleFiles(image: { kernel: string; initrd: string }): Record<string, string> {
  const files: Record<string, string> = {};
  for (const f of readdirSync(EXAMPLE).filter((n) => n.endsWith('.cfg'))) {
    files[f] = readFileSync(join(EXAMPLE, f), 'utf8').replace(/^kernel = .*$/m, `kernel = "${image.kernel}"`).replace(/^ramdisk = .*$/m, `ramdisk = "${image.initrd}"`);
  }
  return files;
}

describe('a VM under ringside up beside a Xen-ABI guest on one blkdom', () => {
  requireBuilt();
  let s: SystemUnderTest;
  let con: VmConsole;

  beforeAll(async () => {
    s = new SystemUnderTest('rs-vmsys-', exampleFiles(await ensureVmImage()));
    await s.up();
    const r = await s.waitList(allConnected, VM_BOOT_TIMEOUT_MS);
    if (!r.ok) throw new Error(`devices did not connect: ${deviceStates(r.rows)}\n${s.logTail()}`);
    con = await VmConsole.connect(join(s.state, 'vm', 'vm1', 'console.sock'));
    await con.waitReady();
  }, VM_BOOT_TIMEOUT_MS + 60_000);

  afterAll(async () => {
    con?.close();
    await s?.teardown();
  }, 60_000);

  it('lists the VM with its accelerator and vhost-user disk, and its QEMU runs confined and sandboxed', async () => {
    const rows = await s.list();
    const vm = rows.find((d) => d.name === 'vm1');
    expect(vm).toMatchObject({ role: 'vm', kind: 'vm', state: 'running', memoryMiB: 256 });
    expect(vm?.accel?.why).toMatch(/^accel = "auto": /);
    expect(vm?.devices[0]).toMatchObject({ type: 'vbd', backend: 'blkdom', transport: 'vhost-user', backendState: 4, export: join(s.state, 'vhost', 'blkdom', 'vm1-xvda.sock') });
    const pid = vm?.pid as number;
    const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    expect(cmd[0]).toMatch(/qemu-system-x86_64$/);
    expect(cmd).toContain('-sandbox');
    // under TCG 8 KiB more (TCG_RAM_PAD_KIB in src/vm/qemu.ts); -m says the same size
    const size = /memory-backend-memfd,id=mem,size=(256M|262152K),share=on/.exec(cmd.join(' '))?.[1];
    expect(size).toBeDefined();
    expect(cmd[cmd.indexOf('-m') + 1]).toBe(size);
    expect(procStatus(pid)).toMatchObject({ capEff: '0000000000000000', nnp: '1', seccomp: '2' });
    const text = await s.cli(['list']);
    expect(text.stdout).toMatch(/vm1\s+\d+\s+vm \((tcg|kvm), qemu64\)/);
    // The guest's view: a virtio-blk disk whose serial is the vdev dom0 gave it.
    const serial = await con.run('cat /sys/block/vda/serial; echo; ls -1 /sys/block/vda/mq');
    expect(serial.code, serial.output).toBe(0);
    expect(serial.output.split('\n')[0]).toBe('xvda');
    expect(serial.output.trim().split('\n').slice(1).sort()).toEqual(['0', '1']);
    // Anything else that connects to the VM's disk socket is turned away, and the VM's disk goes on.
    const intruder = createConnection(vm?.devices[0].export as string);
    await new Promise<void>((resolve) => intruder.once('close', () => resolve()).once('error', () => resolve()));
    await until('blkdom to log the second frontend', () => s.log(), (l) => /turned away a second frontend/.test(l));
    const still = await con.run('dd if=/dev/vda of=/dev/null bs=64k count=16 iflag=direct');
    expect(still.code, still.output).toBe(0);
    // `ringside console` is for VMs only, and says what to do for a Xen-ABI guest.
    const c = await s.cli(['console', 'guest1']);
    expect(c.code).toBe(1);
    expect(c.stderr).toMatch(/'guest1' is a guest domain, not a VM/);
  });

  it('the VM and the Xen-ABI guest share netdom\'s switch: ping both ways, DF probes at MTU 1500, iperf3 TCP both ways', async () => {
    const NS = 'rs-vmex-g1';
    const up = await con.run('ip addr add 10.138.0.2/24 dev eth0 && ip link set eth0 up && cat /sys/class/net/eth0/address');
    expect(up.code, up.output).toBe(0);
    expect(up.output.trim()).toBe('00:16:3e:00:0a:02');
    // ARP and the first frames: retried for tens of seconds, not one packet with a short timeout
    const vmPing = await until('the VM to ping guest1', () => con.run('ping -c 2 -W 5 10.138.0.1', { timeoutMs: 30_000 }), (r) => r.code === 0, 60);
    expect(vmPing.output).toMatch(/2 packets received/);
    const probe = (size: number) => run('ip', ['netns', 'exec', NS, 'ping', '-c', '2', '-W', '5', '-M', 'do', '-s', String(size), '10.138.0.2'], { timeoutMs: 30_000 });
    const fits = await until('guest1 to ping the VM with 1472-byte DF probes', () => probe(1472), (r) => r.code === 0, 60);
    expect(fits.stdout).toMatch(/2 received/);
    const tooBig = await probe(1473);
    expect(tooBig.code, 'a 1473-byte DF probe does not fit MTU 1500').not.toBe(0);
    expect((await con.run('iperf3 -s -D && sleep 1')).code).toBe(0);
    for (const dir of [[], ['-R']]) {
      // iperf3 3.12 exits 0 with {"error": ...} when its control connection fails (TCG is slow to
      // accept): such a run is tried again, and the last one's error shown if none succeeds
      const r = await until(
        `iperf3 ${dir.join(' ') || 'guest1 -> VM'} to finish with a report`,
        () => run('ip', ['netns', 'exec', NS, 'iperf3', '-c', '10.138.0.2', '-t', '3', '-J', '--connect-timeout', '10000', ...dir], { timeoutMs: 120_000 }),
        (x) => x.code === 0 && /"sum_received"/.test(x.stdout) && !/"error"/.test(x.stdout),
        150,
      );
      const j = JSON.parse(r.stdout) as { end: { sum_received: { bytes: number; bits_per_second: number } } };
      expect(j.end.sum_received.bytes, `iperf3 ${dir.join(' ') || 'guest1 -> VM'}`).toBeGreaterThan(0);
      process.stderr.write(`iperf3 ${dir.length ? 'VM -> guest1' : 'guest1 -> VM'} through netdom: ${(j.end.sum_received.bits_per_second / 1e6).toFixed(0)} Mbit/s under TCG\n`);
    }
  }, 300_000);

  it('the VM verifies fio on its disk while the Xen-ABI guest verifies fio over NBD, and the host reads the VM\'s bytes off the medium', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'rs-vmsys-fio-'));
    const uri = `nbd+unix:///xvda?socket=${join(s.state, 'nbd', 'guest1-xvda.sock')}`;
    try {
      const [, nbd] = await Promise.all([
        exerciseDisk({ console: con }),
        run('fio', ['--name=xen', '--ioengine=nbd', `--uri=${uri}`, '--rw=randwrite', '--bs=4k', '--iodepth=16', '--size=16M', '--verify=crc32c', '--verify_state_save=0', '--output-format=terse'], { cwd, timeoutMs: 600_000 }),
      ]);
      expect(nbd.code, nbd.stderr).toBe(0);
      expect(nbd.stdout.trim().split('\n').pop()?.split(';')[4], 'fio errors over NBD').toBe('0');
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
    expectPatternInImage(join(s.sys, 'vm1-disk.img'));
    expect(s.log()).toMatch(/pci: 0000:01:00\.1 assigned to domain \d+/);
  }, 900_000);

  it('blkdom SIGKILLed during a verify run inside the VM: dom0 restarts it, QEMU reconnects, in-flight requests are resubmitted, zero errors', async () => {
    const before = (await s.list()).find((d) => d.name === 'blkdom');
    expect(before?.pid).toBeGreaterThan(0);
    const writes = async () => Number((await con.run('cat /sys/block/vda/stat')).output.trim().split(/\s+/)[4]);
    const start = await writes();
    // 48 MiB of 4k random writes, then the verify pass: long enough that the kill lands inside it
    const fio = 'fio --name=k --filename=/dev/vda --rw=randwrite --bs=4k --size=48M --iodepth=8 --ioengine=libaio --direct=1 --verify=crc32c --output-format=terse > /tmp/k.out 2>&1; echo $? > /tmp/k.rc';
    expect((await con.run(`rm -f /tmp/k.rc; (${fio}) & echo $! > /tmp/k.pid`)).code).toBe(0);
    // the workload is under way: the guest has completed writes since it started
    for (let i = 0; (await writes()) < start + 500; i++) if (i > 6000) throw new Error('fio in the guest completed no writes');
    const killedAt = Date.now();
    process.kill(before?.pid as number, 'SIGKILL');
    const running = await con.run('kill -0 $(cat /tmp/k.pid) && test ! -e /tmp/k.rc');
    expect(running.code, 'fio was still running when blkdom died').toBe(0);
    const back = await s.waitList((rows) => rows.some((d) => d.name === 'blkdom' && d.restarts === 1) && allConnected(rows), 120_000);
    expect(back.ok, `after the kill: ${deviceStates(back.rows)}\n${s.logTail()}`).toBe(true);
    const resumedMs = Date.now() - killedAt;
    const done = await con.run('while [ ! -e /tmp/k.rc ]; do sleep 0.2; done; cat /tmp/k.rc; tail -1 /tmp/k.out', { timeoutMs: 600_000 });
    const [rc, terse] = done.output.trim().split('\n');
    expect(rc, done.output).toBe('0');
    expect(terse.split(';')[4], 'fio errors in the guest').toBe('0');
    const after = s.log().slice(s.log().indexOf('restarting blkdom'));
    const resubmitted = [...after.matchAll(/resubmitting (\d+) requests/g)].reduce((n, m) => n + Number(m[1]), 0);
    process.stderr.write(`blkdom SIGKILLed under a VM's fio verify: backend Connected again after ${resumedMs} ms, ${resubmitted} in-flight requests resubmitted, 0 errors\n`);
  }, 900_000);

  it('restart brings the VM back under its domid on the same disk, and what it wrote before is there', async () => {
    const mark = `${GUEST_PATTERN} && dd if=/tmp/pat of=/dev/vda bs=65536 seek=${(56 << 20) / 65536} conv=fsync`;
    expect((await con.run(mark, { timeoutMs: 120_000 })).code).toBe(0);
    const before = (await s.list()).find((d) => d.name === 'vm1');
    con.close();
    const r = await s.cli(['restart', 'vm1'], 120_000);
    expect(r.code, r.stderr).toBe(0);
    const back = await s.waitList((rows) => rows.some((d) => d.name === 'vm1' && d.restarts === 1) && allConnected(rows), VM_BOOT_TIMEOUT_MS);
    expect(back.ok, deviceStates(back.rows)).toBe(true);
    const now = back.rows.find((d) => d.name === 'vm1');
    expect(now?.domid).toBe(before?.domid);
    expect(now?.pid).not.toBe(before?.pid);
    con = await VmConsole.connect(join(s.state, 'vm', 'vm1', 'console.sock'));
    await con.waitReady();
    const check = await con.run(`${GUEST_PATTERN} && dd if=/dev/vda bs=65536 skip=${(56 << 20) / 65536} count=16 iflag=direct 2>/dev/null | cmp - /tmp/pat`, { timeoutMs: 120_000 });
    expect(check.code, check.output).toBe(0);
  }, VM_BOOT_TIMEOUT_MS + 120_000);

  it('destroy takes the VM away for good (on_crash = destroy): its vbd and socket go, the Xen-ABI guest keeps its disk', async () => {
    const vm = (await s.list()).find((d) => d.name === 'vm1');
    con.close();
    const d = await s.cli(['destroy', 'vm1']);
    expect(d.code, d.stderr).toBe(0);
    const gone = await s.waitList((rows) => !rows.some((r) => r.name === 'vm1'), 60_000);
    expect(gone.ok, deviceStates(gone.rows)).toBe(true);
    expect(alive(vm?.pid as number)).toBe(false);
    await until('blkdom to remove the VM disk\'s socket', () => s.socketsUnderState(), (socks) => !socks.some((f) => f.includes('vhost')));
    expect(s.log()).toMatch(/vm1 \(dom\d+\) died: destroyed by dom0/);
    expect(gone.rows.find((r) => r.name === 'guest1')?.devices[0]).toMatchObject({ frontendState: 4, backendState: 4 });
    const io = await run('qemu-io', ['-f', 'raw', `nbd+unix:///xvda?socket=${join(s.state, 'nbd', 'guest1-xvda.sock')}`, '-c', 'write -P 0x3c 0 64k', '-c', 'read -P 0x3c 0 64k']);
    expect(io.code, io.stderr + io.stdout).toBe(0);
    expect(io.stdout).not.toMatch(/Pattern verification failed/);
  }, 120_000);

  it('ringside down leaves no socket and no process naming the state directory', async () => {
    const d = await s.down();
    expect(d.code, d.stderr).toBe(0);
    expect(s.socketsUnderState()).toEqual([]);
    expect(processesMentioning(s.state)).toEqual([]);
    expect((await run('ip', ['netns', 'list'])).stdout).not.toMatch(/rs-vmex-g1/);
  }, 120_000);
});
