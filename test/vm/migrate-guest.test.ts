// What the guest brings to a migration: its CPU model, and memory it dirties faster than the link.
// The CPU check works the way Xen's toolstack levelling and libvirt's cpu-compare do: host B's host.cfg masks AES-NI (posing as a host whose CPU lacks it), so a VM running
// QEMU's Westmere model (which has aes) is refused there before anything is created, naming the
// feature, while a VM with cpu = "baseline" on host A (whose host.cfg lists B as a peer) got a
// model both offer at boot and moves. The guests' own /proc/cpuinfo shows the models are real.
// Then that VM comes back while it rewrites 32 MiB of its memory in a loop (not with zeros, which QEMU sends as markers) over a link capped
// below its dirty rate: auto-converge must throttle it until the migration finishes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { requireBuilt } from '../support/platform.js';
import { ensureVmImage, VmConsole, VM_BOOT_TIMEOUT_MS } from '../support/vm.js';
import { SystemUnderTest } from '../system/support.js';
import { readFileSync, writeFileSync } from 'node:fs';
import { request, type MigrationReport } from '../../src/control/wire.js';
import { tryConnect } from '../../src/control/unix.js';
import { Qmp } from '../../src/vm/console.js';
import { LOCAL_LINK, migrate } from '../../src/vm/migration.js';
import { until } from '../support/until.js';

const vm = (name: string, cpu: string, image: { kernel: string; initrd: string }) => `name = "${name}"
type = "hvm"
memory = 128
kernel = "${image.kernel}"
ramdisk = "${image.initrd}"
extra = "console=ttyS0 panic=-1 quiet"
accel = "tcg"
cpu = "${cpu}"
`;

describe('what the guest brings to a migration: the CPU check (a masked feature refuses the move, cpu = "baseline" levels the pool), and memory dirtied faster than the link', () => {
  requireBuilt();
  let a: SystemUnderTest;
  let b: SystemUnderTest;

  /** runs `cmd` in the guest (`booting`: wait for its shell first); QEMU's console serves one client at a time */
  const inGuest = async (s: SystemUnderTest, name: string, cmd: string, booting = false) => {
    const con = await VmConsole.connect(join(s.state, 'vm', name, 'console.sock'));
    try {
      if (booting) await con.waitReady();
      return await con.run(cmd);
    } finally {
      con.close();
    }
  };
  /** whether the guest's kernel sees AES-NI */
  const guestHasAes = async (s: SystemUnderTest, name: string, booting = true) => Number((await inGuest(s, name, 'grep -c -w aes /proc/cpuinfo || true', booting)).output.trim()) > 0;
  const row = async (s: SystemUnderTest, name: string) => (await s.list()).find((d) => d.name === name);
  /**
   * The test as A's dom0 for one move of 'level': B is asked to take it over a control connection
   * the caller hangs up when it likes, and A's QEMU is the caller's to stream with.
   */
  const actAsSourceDom0 = async () => {
    const model = (await row(a, 'level'))?.cpu?.model as string;
    const sock = await tryConnect(join(b.state, 'control.sock'));
    if (!sock) throw new Error("B's control socket does not answer");
    const cfg = join(a.sys, 'level.cfg');
    const prep = await request(sock, { op: 'migrate-incoming', name: 'level', file: cfg, text: readFileSync(cfg, 'utf8'), base: a.sys, accel: 'tcg', cpu: model });
    expect(prep.ok, JSON.stringify(prep)).toBe(true);
    const qmp = await Qmp.connect(join(a.state, 'vm', 'level', 'qmp.sock'), { timeoutMs: 10_000 });
    return { sock, incoming: (prep as { incoming: string }).incoming, qmp };
  };

  beforeAll(async () => {
    const image = await ensureVmImage();
    b = new SystemUnderTest('rs-cpu-b-', { 'host.cfg': 'host = "b"\ncpu_mask = [ "aes" ]\n', 'idle.cfg': 'name = "idle"\nmemory = 64\n' });
    a = new SystemUnderTest('rs-cpu-a-', {
      'host.cfg': `host = "a"\npeers = [ "${b.state}" ]\n`,
      'westmere.cfg': vm('westmere', 'Westmere', image),
      'level.cfg': vm('level', 'baseline', image),
    });
    // B first: A's baseline VM asks its peers at boot
    await b.up();
    await a.up();
  }, VM_BOOT_TIMEOUT_MS + 120_000);

  afterAll(async () => {
    await a?.teardown();
    await b?.teardown();
  }, 120_000);

  it('refuses Westmere on the host that masks aes, naming it, with nothing created there; the VM runs on at A', async () => {
    expect(await guestHasAes(a, 'westmere'), 'a Westmere guest sees AES-NI').toBe(true);
    expect((await row(a, 'westmere'))?.cpu?.model).toBe('Westmere');
    const r = await a.cli(['migrate', 'westmere', b.state], 120_000);
    expect(r.code, r.stderr).not.toBe(0);
    expect(r.stderr).toMatch(/host b cannot run it: CPU model Westmere needs features this host lacks: aes \(masked by host\.cfg cpu_mask\)/);
    expect(await row(b, 'westmere')).toBeUndefined();
    expect((await row(a, 'westmere'))?.state).toBe('running');
  });

  it('cpu = "baseline" boots a model without aes, and that VM moves to B keeping it', async () => {
    const model = (await row(a, 'level'))?.cpu?.model as string;
    expect(a.log()).toMatch(new RegExp(`level: CPU model ${model} \\(cpu = "baseline": ${model}, the most capable model host a and its 1 peer\\(s\\) in host\\.cfg all offer\\)`));
    expect(model).not.toBe('Westmere');
    expect(await guestHasAes(a, 'level'), 'the baseline guest sees no AES-NI').toBe(false);
    // what moves is the config the VM started from, not the file as edited since
    const file = join(a.sys, 'level.cfg');
    const original = readFileSync(file, 'utf8');
    writeFileSync(file, original.replace('memory = 128', 'memory = 60000'));
    const r = await a.cli(['migrate', 'level', b.state, '--json'], 300_000).finally(() => writeFileSync(file, original));
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout) as MigrationReport).toMatchObject({ name: 'level', toHost: 'b', cpu: model });
    expect(await row(b, 'level')).toMatchObject({ state: 'running', memoryMiB: 128, cpu: { model, why: 'the model it ran at the source, brought by its migration' } });
    expect(await guestHasAes(b, 'level', false)).toBe(false);
  }, 300_000);

  it('a guest dirtying memory faster than the link still converges: auto-converge throttles it, and the VM runs at A afterwards', async () => {
    const dirty = await inGuest(b, 'level', "(while :; do tr '\\0' x < /dev/zero | dd of=/tmp/dirty bs=1M count=32 iflag=fullblock conv=notrunc 2>/dev/null; echo x >> /tmp/rounds; done) > /dev/null 2>&1 & echo $! > /tmp/dirty.pid");
    expect(dirty.code).toBe(0);
    const r = await b.cli(['migrate', 'level', a.state, '--json', '--bandwidth', '8'], 600_000);
    expect(r.code, r.stderr).toBe(0);
    const rep = JSON.parse(r.stdout) as MigrationReport;
    process.stderr.write(`dirtying guest B -> A at 8 MiB/s: total ${rep.totalMs} ms, downtime ${rep.downtimeMs} ms, ${rep.rounds} rounds, throttled up to ${rep.throttlePct}%\n`);
    expect(rep.throttlePct, 'auto-converge had to throttle the guest').toBeGreaterThan(0);
    expect(r.stderr).toMatch(/guest CPU throttled \d+%/);
    expect(await row(a, 'level')).toMatchObject({ state: 'running', cpu: { model: rep.cpu } });
    // the dirtier was moved with the guest and runs on at A
    const before = (await inGuest(a, 'level', 'wc -l < /tmp/rounds')).output.trim();
    const alive = await inGuest(a, 'level', 'kill -0 $(cat /tmp/dirty.pid) && kill $(cat /tmp/dirty.pid)');
    expect(alive.code, `the dirtier after ${before} rounds`).toBe(0);
    process.stderr.write(`the dirtier rewrote its 32 MiB ${before} times by the end\n`);
  }, 660_000);

  it("the source's dom0 vanishes and its stream breaks before the switch-over: the destination drops its copy, the VM runs on at the source", async () => {
    const { sock, incoming, qmp } = await actAsSourceDom0();
    try {
      // 1 MiB/s: the bulk round alone takes minutes; the stream is cut once it is under way
      await qmp.execute('migrate-set-parameters', { 'max-bandwidth': 1 << 20 });
      await qmp.execute('migrate', { uri: `unix:${incoming}` });
      await until('the stream to be under way', async () => ((await qmp.execute('query-migrate')) as { ram?: { transferred?: number } }).ram?.transferred ?? 0, (n) => n > 1 << 20, 60);
      sock.destroy();
      await qmp.execute('migrate_cancel');
      await until("A's QEMU to run the guest again", async () => ((await qmp.execute('query-status')) as { status: string }).status, (st) => st === 'running', 60);
    } finally {
      qmp.close();
    }
    await until("B's dom0 to drop the copy", async () => b.log(), (l) => /level \(dom\d+\) goes: the source host went away before the switch-over/.test(l), 120);
    await until('B to list no level', () => row(b, 'level'), (r) => r === undefined, 60);
    expect((await inGuest(a, 'level', 'echo alive-on-a', true)).output).toMatch(/alive-on-a/);
  }, 300_000);

  it("the source's dom0 vanishes right after the switch-over: the destination keeps the VM running", async () => {
    const model = (await row(a, 'level'))?.cpu?.model as string;
    const { sock, incoming, qmp } = await actAsSourceDom0();
    try {
      const s = await migrate(qmp, `unix:${incoming}`, LOCAL_LINK);
      expect(s.totalMs).toBeGreaterThan(0);
      expect(((await qmp.execute('query-status')) as { status: string }).status).toBe('postmigrate');
    } finally {
      qmp.close();
    }
    sock.destroy();
    await until("B's dom0 to keep the VM", async () => b.log(), (l) => /level: the switch-over had happened: it runs here as dom\d+/.test(l), 120);
    expect(b.log()).toMatch(/level: the source host went away while the VM was arriving/);
    expect(await row(b, 'level')).toMatchObject({ state: 'running', cpu: { model } });
    expect((await inGuest(b, 'level', 'echo alive-on-b')).output).toMatch(/alive-on-b/);
    // A's copy is paused for good; its operator clears it away (as after a host failure)
    const gone = await a.cli(['destroy', 'level']);
    expect(gone.code, gone.stderr).toBe(0);
    // B still runs it, and it is B's to move on: no longer arriving, so a peer cannot call it off
    const s2 = await tryConnect(join(b.state, 'control.sock'));
    const abort = await request(s2!, { op: 'migrate-abort', name: 'level' });
    s2!.destroy();
    expect(JSON.stringify(abort)).toMatch(/only a VM still arriving can be called off/);
    expect((await row(b, 'level'))?.state).toBe('running');
  }, 300_000);
});
