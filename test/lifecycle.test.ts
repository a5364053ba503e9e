import { afterAll, describe, expect, it } from 'vitest';
import { holdersOf, memfdInodes, openFdTargets } from './support/proc.js';
import { alive } from '../src/cli/lifecycle.js';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync, existsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { connect } from 'node:net';
import { DIST, requireBuilt } from './support/platform.js';
import { encodeFrame, FrameReader } from '../src/control/wire.js';

function decodeReply(b: Buffer): unknown {
  let out: unknown = null;
  new FrameReader().push(b, (v) => (out = v));
  return out;
}

const run = promisify(execFile);
const CLI = join(DIST, 'ringside.js');

/** Every memfd any process holds whose name starts with one of our domain names. */
function memfdsNamed(prefixes: string[]): string[] {
  return openFdTargets()
    .filter((f) => f.target.startsWith('/memfd:') && prefixes.some((p) => f.target.startsWith(`/memfd:${p}-`)))
    .map((f) => `${f.pid}:${f.target}`);
}

function socketsUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => statSync(join(dir, f), { throwIfNoEntry: false })?.isSocket());
}

describe('ringside up / down', () => {
  requireBuilt();
  const work = mkdtempSync(join(tmpdir(), 'ringside-life-'));
  afterAll(async () => {
    // a case that failed half-way must not leave its system running
    if (existsSync(join(work, 'state'))) await run(process.execPath, [CLI, 'down', '--state', join(work, 'state')], { timeout: 60_000 }).catch(() => undefined);
    rmSync(work, { recursive: true, force: true });
  });

  it('deploys a small system and leaves no process, socket or memfd behind', async () => {
    const sys = join(work, 'sys');
    const state = join(work, 'state');
    mkdirSync(sys);
    writeFileSync(join(sys, 'alpha.cfg'), 'name = "lc-alpha"\nmemory = 64\n');
    writeFileSync(join(sys, 'beta.cfg'), 'name = "lc-beta"\nmemory = 64\n');
    const up = await run(process.execPath, [CLI, 'up', sys, '--state', state, '--detach', '--json'], { timeout: 60_000 });
    const r = JSON.parse(up.stdout) as { domains: { name: string; pid: number; role: string; state: string }[]; xenstoredPath: string; hvPid: number };
    expect(r.domains.map((d) => `${d.name}:${d.role}`).sort()).toEqual(['Domain-0:control', 'lc-alpha:guest', 'lc-beta:guest', 'xenstored:xenstore']);
    expect(r.domains.every((d) => d.state === 'running' && alive(d.pid))).toBe(true);
    expect(memfdsNamed(['lc-alpha', 'lc-beta']).length).toBeGreaterThan(0);
    // every memfd the running system holds, by inode, so a leak found later is ours and not
    // another ringside's on the same machine (whose dom0 has a Domain-0-gnttab too)
    const ours = memfdInodes([r.hvPid, ...r.domains.map((d) => d.pid)]);
    expect(ours.size).toBeGreaterThan(0);

    // Debian's xenstore tools see the domains the toolstack wrote, with libxl's permissions.
    const ls = await run('xenstore-ls', ['-p', '/local/domain'], { env: { ...process.env, XENSTORED_PATH: r.xenstoredPath } });
    expect(ls.stdout).toMatch(/name = "lc-alpha"/);
    expect(ls.stdout).toMatch(/\(n0,r\d+\)/);

    const list = JSON.parse((await run(process.execPath, [CLI, 'list', '--state', state, '--json'])).stdout) as { name: string }[];
    expect(list.length).toBe(4);

    const top = JSON.parse((await run(process.execPath, [CLI, 'top', '--state', state, '--json', '--count', '1', '--interval', '0.2'])).stdout) as {
      domains: { name: string; cpuPercent: number | null; rssMiB: number | null }[];
    };
    expect(top.domains.find((d) => d.name === 'lc-alpha')?.rssMiB).toBeGreaterThan(1);
    expect(top.domains.every((d) => d.cpuPercent !== null && d.cpuPercent >= 0)).toBe(true);

    // The control socket treats its input as hostile: an oversized frame, garbage, and a bad
    // request each get a refusal or a disconnect, and dom0 keeps serving.
    const control = join(state, 'control.sock');
    const hostile = async (bytes: Buffer): Promise<Buffer> =>
      new Promise((resolve) => {
        const chunks: Buffer[] = [];
        const c = connect(control, () => c.write(bytes));
        c.on('data', (d) => {
          chunks.push(d);
          c.destroy(); // one reply is all we wait for
        });
        c.on('error', () => undefined);
        c.on('close', () => resolve(Buffer.concat(chunks)));
        // only a guard: dom0 answers or hangs up at once; a noisy machine may take seconds to
        setTimeout(() => c.destroy(), 30_000);
      });
    const huge = Buffer.alloc(8);
    huge.writeUInt32LE(0xfffffff0, 0);
    expect((await hostile(huge)).length).toBe(0); // cut off, no reply
    const notAnObject = encodeFrame('hello');
    expect(JSON.stringify(decodeReply(await hostile(notAnObject)))).toMatch(/request must be an object with an op/);
    expect(JSON.stringify(decodeReply(await hostile(encodeFrame({ op: 'destroy', name: '../../etc' }))))).toMatch(/name must be a domain name/);
    expect(JSON.stringify(decodeReply(await hostile(encodeFrame({ op: 'reboot-the-world' }))))).toMatch(/unknown op/);
    // The migration ops: from the CLI, and from another host's dom0 (a peer, so as hostile as a file).
    const refused = async (req: Record<string, unknown>) => JSON.stringify(decodeReply(await hostile(encodeFrame(req))));
    const incoming = { op: 'migrate-incoming', name: 'lc-vm', file: '/x/lc-vm.cfg', base: '/x', accel: 'tcg', cpu: 'qemu64' };
    expect(await refused({ op: 'migrate', name: 'lc-alpha', dest: 'relative/dir' })).toMatch(/dest must be the absolute path/);
    expect(await refused({ op: 'migrate', name: 'lc-alpha', dest: '/tmp', bandwidthMiB: -1 })).toMatch(/bandwidthMiB must be a whole number/);
    expect(await refused({ op: 'migrate', name: 'lc-alpha', dest: '/tmp' })).toMatch(/'lc-alpha' is a guest domain; only VMs/);
    expect(await refused({ ...incoming, text: 42 })).toMatch(/text must be a config file/);
    expect(await refused({ ...incoming, text: 'name = "lc-vm"', base: 'x' })).toMatch(/base must be an absolute path/);
    expect(await refused({ ...incoming, text: 'name = "lc-vm"', accel: 'xen' })).toMatch(/accel must be \\"tcg\\" or \\"kvm\\"/);
    expect(await refused({ ...incoming, text: 'name = = "lc-vm"' })).toMatch(/lc-vm\.cfg:1/);
    for (const cpu of [undefined, 'baseline', 'host', 'a,b', 7]) expect(await refused({ ...incoming, text: 'name = "lc-vm"', cpu })).toMatch(/cpu must be the CPU model the VM runs/);
    expect(await refused({ ...incoming, text: 'name = "lc-vm"\ntype = "hvm"\nkernel = "/bin/sh"', cpu: 'Pentium9' })).toMatch(/no migration-safe CPU model 'Pentium9'/);
    expect(await refused({ op: 'cpu-check', accel: 'tcg', models: ['qemu64', 'x y'] })).toMatch(/models must be a list of at most 512 CPU model names/);
    expect(await refused({ op: 'cpu-check', accel: 'tcg', models: Array(513).fill('qemu64') })).toMatch(/at most 512/);
    expect(await refused({ op: 'cpu-check', accel: 'arm', models: [] })).toMatch(/accel must be/);
    expect(await refused({ op: 'cpu-check', accel: 'tcg', models: ['qemu64', 'Skylake-Client'] })).toMatch(/"qemu64":\[\],"Skylake-Client":\[[^\]]*"x2apic"/);
    expect(await refused({ ...incoming, text: 'name = "lc-vm"\ntype = "hvm"\nkernel = "/k"\ndisk = [ \'backend=nosuch, vdev=xvda, target=/tmp/d.img\' ]' })).toMatch(/nosuch/);
    expect(await refused({ ...incoming, name: 'lc-other', text: 'name = "lc-vm"\ntype = "hvm"\nkernel = "/k"' })).toMatch(/the config sent for 'lc-other' names 'lc-vm'/);
    expect(await refused({ ...incoming, name: 'lc-beta', text: 'name = "lc-beta"\ntype = "hvm"\nkernel = "/k"' })).toMatch(/a domain named 'lc-beta' already runs on this host/);
    // only a VM still arriving can be called off or finished: a running domain is not a peer's to drop
    expect(await refused({ op: 'migrate-abort', name: 'lc-alpha' })).toMatch(/only a VM still arriving can be called off/);
    expect(await refused({ op: 'migrate-finish', name: 'lc-alpha' })).toMatch(/no incoming VM named 'lc-alpha'/);
    expect(JSON.parse((await run(process.execPath, [CLI, 'list', '--state', state, '--json'])).stdout).length).toBe(4);

    await run(process.execPath, [CLI, 'destroy', 'lc-beta', '--state', state]);
    const after = JSON.parse((await run(process.execPath, [CLI, 'list', '--state', state, '--json'])).stdout) as { name: string }[];
    expect(after.map((d) => d.name)).not.toContain('lc-beta');

    for (const ino of memfdInodes([r.hvPid, ...r.domains.map((d) => d.pid)])) ours.add(ino);
    await run(process.execPath, [CLI, 'down', '--state', state], { timeout: 60_000 });
    for (const d of r.domains) expect(alive(d.pid), `${d.name} pid ${d.pid}`).toBe(false);
    expect(alive(r.hvPid)).toBe(false);
    expect(socketsUnder(state)).toEqual([]);
    expect(holdersOf(ours)).toEqual([]);
  });

  // A crash leaves the namespaces dom0 made; they are recorded in the state directory, and the
  // next `up` there removes them (as `down` would) before anything starts. Needs root for netns.
  it.skipIf(process.getuid?.() !== 0)('up removes the network namespaces a crashed run recorded, and only those', async () => {
    const sys = join(work, 'ns-sys');
    const state = join(work, 'ns-state');
    const [left, foreign] = [`rsl${process.pid % 100000}l`, `rsl${process.pid % 100000}f`];
    mkdirSync(sys);
    writeFileSync(join(sys, 'g.cfg'), 'name = "lc-ns"\nmemory = 64\n');
    try {
      for (const n of [left, foreign]) await run('ip', ['netns', 'add', n]);
      mkdirSync(join(state, 'netns'), { recursive: true });
      writeFileSync(join(state, 'netns', left), `${left}\n`);
      writeFileSync(join(state, 'netns', 'not-ours'), `${foreign}\n`); // a record must name itself
      const up = await run(process.execPath, [CLI, 'up', sys, '--state', state, '--detach', '--json'], { timeout: 60_000 });
      expect(up.stderr).toContain(`removed leftover network namespace: ${left}`);
      expect(up.stderr).toMatch(/ignored .*not-ours: not a namespace record ringside wrote/);
      expect(existsSync(`/run/netns/${left}`)).toBe(false);
      expect(existsSync(`/run/netns/${foreign}`)).toBe(true);
    } finally {
      await run(process.execPath, [CLI, 'down', '--state', state], { timeout: 60_000 }).catch(() => undefined);
      for (const n of [left, foreign]) if (existsSync(`/run/netns/${n}`)) await run('ip', ['netns', 'del', n]).catch(() => undefined);
    }
  });

  it('refuses a broken config before starting anything, naming file, line and key', async () => {
    const sys = join(work, 'bad');
    const state = join(work, 'bad-state');
    mkdirSync(sys);
    writeFileSync(join(sys, 'g.cfg'), 'name = "g"\n\nmemory = "lots"\n');
    const err = await run(process.execPath, [CLI, 'up', sys, '--state', state, '--detach']).then(
      () => null,
      (e: { code: number; stderr: string }) => e,
    );
    expect(err?.code).toBe(1);
    expect(err?.stderr).toMatch(/g\.cfg:3/);
    expect(err?.stderr).toMatch(/memory/);
    expect(existsSync(join(state, 'hv.pid'))).toBe(false);
  });

  it('answers bad CLI arguments with usage and exit status 2', async () => {
    const e1 = await run(process.execPath, [CLI, 'up', '--bogus']).catch((e: { code: number; stderr: string }) => e);
    expect((e1 as { code: number }).code).toBe(2);
    expect((e1 as { stderr: string }).stderr).toMatch(/Unknown option '--bogus'/);
    const e2 = await run(process.execPath, [CLI, 'frobnicate']).catch((e: { code: number; stderr: string }) => e);
    expect((e2 as { stderr: string }).stderr).toMatch(/unknown command 'frobnicate'/);
    const e3 = await run(process.execPath, [CLI, 'list', '--state', join(work, 'nothing')]).catch((e: { code: number; stderr: string }) => e);
    expect((e3 as { stderr: string }).stderr).toMatch(/no running system/);
  });
});
