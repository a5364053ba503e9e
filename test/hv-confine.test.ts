// Confined driver domains: started through ringside-confine, a domain reaches only the files the
// toolstack listed, holds no capability, and can signal or trace nothing outside itself. These
// run real probe processes; the Landlock checks skip only on a kernel without Landlock.
import { alive } from '../src/cli/lifecycle.js';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from './support/until.js';
import { confineArgs, confineLauncher } from '../domains/hv/confine.js';
import { TestPlatform, type Probe } from './support/platform.js';
import { NetnsRecords, createGuestNetns, deleteGuestNetns } from '../src/netns/netns.js';

const launcher = confineLauncher();

function landlockAbi(): number {
  if (launcher === null) throw new Error('ringside-confine is not built: run `npm ci` or `npm run build:native`');
  const r = spawnSync(launcher, ['--abi'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ringside-confine --abi failed: ${r.stderr}`);
  return Number(r.stdout.trim());
}

const abi = landlockAbi();
// Filesystem rules need Landlock (ABI 1); /proc/<pid> of another domain is refused by Landlock's
// ptrace scoping. Signals are refused on any kernel (the launcher's seccomp filter).
const missing = abi < 1 ? `this kernel has no Landlock (ABI ${abi})` : null;
if (missing) console.log(`hv-confine: filesystem checks skipped: ${missing}`);

describe('confined driver domains', () => {
  let t: TestPlatform;
  let outside: string;
  let inside: Probe;
  let sibling: Probe;
  const files: Record<string, string> = {};

  beforeAll(async () => {
    t = new TestPlatform();
    outside = mkdtempSync(join(tmpdir(), 'ringside-outside-'));
    for (const f of ['medium.img', 'readonly.img', 'secret.img']) {
      files[f] = join(outside, f);
      writeFileSync(files[f], 'data');
    }
    sibling = await t.probe('sibling');
    // The probe binds its control socket in the platform's directory, so that one is writable.
    inside = await t.probe('confined', { confine: { ro: [files['readonly.img']], rw: [files['medium.img']], netAdmin: false } });
  });
  afterAll(async () => {
    await t?.close();
    if (outside) rmSync(outside, { recursive: true, force: true });
  });

  it('holds no capability, runs with no_new_privs, and is undumpable like every domain', async () => {
    const st = await inside.cmd('status');
    expect(st).toMatchObject({ capEff: '0000000000000000', capBnd: '0000000000000000', noNewPrivs: '1', dumpable: false });
    expect((await sibling.cmd('status')).capEff).not.toBe('0000000000000000');
    const line = t.logs.find((l) => /dom\d+ 'confined' confined: 1 rw, 1 ro, no capabilities/.test(l));
    // the log says what this kernel enforces
    expect(line).toMatch(abi > 0 ? new RegExp(`; Landlock ABI ${abi}`) : /files are NOT confined/);
  });

  it('still does its work: grants map across the boundary', async () => {
    const { gfn } = await sibling.cmd('alloc');
    await sibling.cmd('fill', { gfn, value: 0x5a });
    const { ref } = await sibling.cmd('grant', { domid: inside.domid, gfn, readonly: true });
    const m = await inside.cmd('map', { dom: sibling.domid, refs: [ref], readonly: true });
    expect(m.first).toBe(0x5a);
  });

  it.skipIf(missing !== null)('opens only the files it was given, in the mode it was given', async () => {
    expect(await inside.cmd('tryOpen', { path: files['medium.img'], write: true })).toEqual({ ok: true });
    expect(await inside.cmd('tryOpen', { path: files['readonly.img'] })).toEqual({ ok: true });
    expect(await inside.cmd('tryOpen', { path: files['readonly.img'], write: true })).toEqual({ ok: false, code: 'EACCES' });
    expect(await inside.cmd('tryOpen', { path: files['secret.img'] })).toEqual({ ok: false, code: 'EACCES' });
    expect(await inside.cmd('tryOpen', { path: '/etc/passwd' })).toEqual({ ok: false, code: 'EACCES' });
    // the same file is open to the unconfined sibling: the refusal is the confinement's
    expect(await sibling.cmd('tryOpen', { path: files['secret.img'] })).toEqual({ ok: true });
  });

  it('signals neither hv nor a sibling domain', async () => {
    // In this harness hv is the test process itself.
    expect(await inside.cmd('trySignal', { pid: process.pid })).toEqual({ ok: false, code: 'EPERM' });
    expect(await inside.cmd('trySignal', { pid: sibPid() })).toEqual({ ok: false, code: 'EPERM' });
    expect(await sibling.cmd('trySignal', { pid: process.pid })).toEqual({ ok: true });
  });

  it.skipIf(missing !== null)('reaches neither hv nor a sibling domain through /proc', async () => {
    expect(await inside.cmd('tryOpen', { path: `/proc/${process.pid}/mem` })).toMatchObject({ ok: false });
    expect(await inside.cmd('tryOpen', { path: `/proc/${sibPid()}/environ` })).toMatchObject({ ok: false });
  });

  it('cannot turn a read-only grant into a writable descriptor through /proc/self/fd', async () => {
    const { gfn } = await sibling.cmd('alloc');
    const { ref } = await sibling.cmd('grant', { domid: inside.domid, gfn, readonly: true });
    expect(await inside.cmd('tryReopenGrant', { dom: sibling.domid, ref })).toEqual({ ok: false, code: 'EACCES' });
  });

  it.skipIf(missing !== null)("a blk domain's storage tree: the images in it open read-write, but nothing can be made there and nothing outside opens", async () => {
    const tree = join(outside, 'tree');
    mkdirSync(join(tree, 'sub'), { recursive: true });
    for (const f of ['a.img', 'sub/b.img']) writeFileSync(join(tree, f), 'data');
    const blk = await t.probe('treeblk', { confine: { ro: [], rw: [], netAdmin: false, rwTrees: [tree] } });
    expect(await blk.cmd('tryOpen', { path: join(tree, 'a.img'), write: true })).toEqual({ ok: true });
    expect(await blk.cmd('tryOpen', { path: join(tree, 'sub', 'b.img'), write: true })).toEqual({ ok: true });
    expect(await blk.cmd('tryOpen', { path: join(tree, 'new.img'), create: true })).toEqual({ ok: false, code: 'EACCES' });
    expect(await blk.cmd('tryOpen', { path: files['secret.img'] })).toEqual({ ok: false, code: 'EACCES' });
    expect(await sibling.cmd('tryOpen', { path: join(tree, 'new.img'), create: true })).toEqual({ ok: true });
  });

  it('refuses a storage tree that is a symlink or a file: the domain does not start', async () => {
    const link = join(outside, 'treelink');
    symlinkSync(outside, link);
    for (const p of [link, files['medium.img']]) {
      const { result } = await t.dom0.call('domain_create', { name: 'bad-tree', kind: 'probe', memoryMiB: 64, ioFrames: 1, grantFrames: 1, confine: { ro: [], rw: [], netAdmin: false, rwTrees: [p] } });
      await t.dom0.call('domain_unpause', { domid: result.domid, bootArgs: new Uint8Array() });
      await t.waitEvent((e) => e.event === 'domain_died' && e.domid === result.domid);
      expect(t.logs.join('\n')).toMatch(p === link ? /a directory rule names a symlink/ : /a directory rule names something that is not a directory/);
    }
  });

  it('refuses a toolstack path that is a symlink or a directory: the domain does not start', async () => {
    const link = join(outside, 'link.img');
    symlinkSync('/', link);
    for (const p of [link, outside]) {
      const name = `bad-${p === link ? 'link' : 'dir'}`;
      const { result } = await t.dom0.call('domain_create', { name, kind: 'probe', memoryMiB: 64, ioFrames: 1, grantFrames: 1, confine: { ro: [], rw: [p], netAdmin: false } });
      await t.dom0.call('domain_unpause', { domid: result.domid, bootArgs: new Uint8Array() });
      await t.waitEvent((e) => e.event === 'domain_died' && e.domid === result.domid);
      expect(t.logs.join('\n')).toMatch(p === link ? /a file rule names a symlink/ : /names something that is not a file or device/);
    }
  });

  const sibPid = () => t.hv.list().find((d) => d.domid === sibling.domid)?.pid as number;

  it('refuses a hostile confinement spec with the field named', async () => {
    const base = { name: 'bad', kind: 'probe', memoryMiB: 64, ioFrames: 1, grantFrames: 1 };
    const cases: [unknown, RegExp][] = [
      ['x', /confine must be an object/],
      [{ ro: [], rw: ['relative.img'], netAdmin: false }, /confine\.rw\[0\] "relative\.img" must be a normalised absolute path/],
      [{ ro: ['/a/../etc/shadow'], rw: [], netAdmin: false }, /confine\.ro\[0\].*normalised absolute path/],
      [{ ro: ['/'], rw: [], netAdmin: false }, /confine\.ro\[0\].*below \//],
      [{ ro: ['/a\0b'], rw: [], netAdmin: false }, /without NUL/],
      [{ ro: Array.from({ length: 65 }, (_, i) => `/f${i}`), rw: [], netAdmin: false }, /at most 64/],
      [{ ro: [], rw: [], netAdmin: 'yes' }, /netAdmin must be true or false/],
      [{ ro: [], rw: [], netAdmin: false, rwTrees: ['srv'] }, /confine\.rwTrees\[0\] "srv" must be a normalised absolute path/],
      [{ ro: [], rw: [], netAdmin: false, rwTrees: '/srv' }, /confine\.rwTrees must be an array/],
      [{ rw: [], netAdmin: false }, /confine\.ro must be an array/],
      [{ ro: [], rw: [], netAdmin: false, sockDir: 'nbd' }, /confine\.sockDir "nbd" must be a normalised absolute path/],
      [{ ro: [], rw: [], netAdmin: false, sockDir: '/state/nbd/../../etc' }, /confine\.sockDir .*normalised absolute path/],
      [{ ro: [], rw: [], netAdmin: false, sockDir: '/' }, /confine\.sockDir .*below \//],
      [{ ro: [], rw: [], netAdmin: false, sockDir: 7 }, /confine\.sockDir must be a path/],
      [{ ro: [], rw: [], netAdmin: false, sockDir: `/${'a'.repeat(5000)}` }, /confine\.sockDir must be a path of 1\.\.4096/],
      [{ ro: [], rw: [], netAdmin: true, netns: '../../proc/1/ns/net' }, /confine\.netns .* must be a namespace name under \/run\/netns/],
      [{ ro: [], rw: [], netAdmin: true, netns: '..' }, /confine\.netns/],
      [{ ro: [], rw: [], netAdmin: true, netns: 'a'.repeat(16) }, /confine\.netns/],
      [{ ro: [], rw: [], netAdmin: true, netns: '' }, /confine\.netns/],
      [{ ro: [], rw: [], netAdmin: true, netns: ['x'] }, /confine\.netns "object"/],
    ];
    for (const [confine, re] of cases) await expect(t.dom0.call('domain_create', { ...base, confine } as never)).rejects.toThrow(re);
  });

  it('takes whatever it forked along when it is destroyed, and cannot leave its process group', async () => {
    const p = await t.probe('forker', { confine: { ro: [], rw: [], netAdmin: false } });
    const probePid = t.hv.list().find((d) => d.domid === p.domid)?.pid as number;
    const pgrp = (pid: number) => Number(readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')[2]);
    expect(pgrp(probePid)).toBe(probePid);
    // a child that asks for a session of its own (setsid) stays in the domain's group: the filter refuses
    const { pid } = await p.cmd('spawnChild', { detached: true });
    expect(pgrp(pid)).toBe(probePid);
    expect(alive(pid)).toBe(true);
    await t.dom0.call('domain_destroy', { domid: p.domid });
    await t.waitEvent((e) => e.event === 'domain_died' && e.domid === p.domid);
    await waitFor(() => !alive(pid), `the destroyed domain's process ${pid} to exit`);
  });

  it("a guest's own seccomp list takes connect() away: root's sockets are out of reach once it is connected", async () => {
    const { createServer } = await import('node:net');
    const path = join(outside, 'root-only.sock');
    const server = createServer((c) => c.destroy());
    await new Promise<void>((r) => server.listen(path, r));
    try {
      const g = await t.probe('guestlike', { confine: { ro: [], rw: [], netAdmin: false } });
      // Landlock does not govern connecting to a socket path: this is why guests drop connect()
      expect(await g.cmd('tryConnect', { path })).toEqual({ ok: true });
      await g.cmd('dropGuestPrivileges');
      expect(await g.cmd('tryConnect', { path })).toEqual({ ok: false, code: 'EPERM' });
      // and it goes on working over what it already holds
      expect((await g.cmd('info')).domid).toBe(g.domid);
    } finally {
      server.close();
    }
  });

  it('passes a guest its socket directory and namespace, and keeps the capability last', () => {
    const args = confineArgs({ ro: [], rw: ['/dev/net/tun'], netAdmin: true, sockDir: '/state/nbd/guest/g1', netns: 'rs-g1' }, ['/opt/rs/dist/domains']);
    expect(args.slice(-7)).toEqual(['--sock-dir', '/state/nbd/guest/g1', '--netns', '/run/netns/rs-g1', '--keep-cap', 'net_admin', '--']);
    // without them, neither option appears
    const plain = confineArgs({ ro: [], rw: [], netAdmin: false }, ['/opt/rs/dist/domains']);
    expect(plain.filter((a) => a === '--sock-dir' || a === '--netns' || a === '--keep-cap')).toEqual([]);
  });

  it('passes the toolstack paths and nothing wider to the launcher', () => {
    const args = confineArgs({ ro: ['/srv/a.img'], rw: ['/srv/b.img'], netAdmin: true }, ['/opt/rs/dist/domains']);
    expect(args.slice(-3)).toEqual(['--keep-cap', 'net_admin', '--']);
    const pairs = new Map<string, string[]>();
    for (let i = 0; i + 1 < args.length - 3; i += 2) pairs.set(args[i + 1], [...(pairs.get(args[i + 1]) ?? []), args[i]]);
    expect(pairs.get('/srv/a.img')).toEqual(['--ro-file']);
    expect(pairs.get('/srv/b.img')).toEqual(['--rw-file']);
    // nothing writable beyond the toolstack's list and /dev/null
    const writable = [...pairs].filter(([, k]) => k.some((x) => x.startsWith('--rw'))).map(([p]) => p).sort();
    expect(writable).toEqual(['/dev/null', '/srv/b.img']);
    expect(pairs.has('/')).toBe(false);
  });
});

// A guest: its own network namespace (owned by its own user namespace, as dom0 makes it), the
// capability to build a TAP there and nowhere else, and a directory for its export sockets.
const netUnsupported = process.getuid?.() !== 0 ? 'not root' : !existsSync('/dev/net/tun') ? 'no /dev/net/tun' : null;

describe.skipIf(netUnsupported !== null)('a confined guest in its own network namespace', () => {
  const NS = `rsc${process.pid % 100000}g`;
  let t: TestPlatform;
  let dir: string;
  let guest: Probe;

  beforeAll(async () => {
    t = new TestPlatform();
    dir = mkdtempSync(join(tmpdir(), 'ringside-guestns-'));
    mkdirSync(join(dir, 'exports'));
    await createGuestNetns(NS, { records: new NetnsRecords(dir), guest: 'guestns', confined: true });
    guest = await t.probe('guestns', { confine: { ro: [], rw: ['/dev/net/tun'], netAdmin: true, sockDir: join(dir, 'exports'), netns: NS } });
  });
  afterAll(async () => {
    await t?.close();
    if (dir) await deleteGuestNetns(NS, new NetnsRecords(dir)).catch(() => undefined);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const pidOf = (p: Probe) => t.hv.list().find((d) => d.domid === p.domid)?.pid as number;

  it('holds CAP_NET_ADMIN only, inside the namespace dom0 made, under a user namespace that is not the host\'s', async () => {
    expect(await guest.cmd('status')).toMatchObject({ capEff: '0000000000001000', noNewPrivs: '1' });
    const pid = pidOf(guest);
    expect(statSync(`/proc/${pid}/ns/net`).ino).toBe(statSync(`/run/netns/${NS}`).ino);
    expect(readlinkSync(`/proc/${pid}/ns/user`)).not.toBe(readlinkSync('/proc/self/ns/user'));
  });

  it.skipIf(missing !== null)('cannot list or read its socket directory (only make and remove names there)', async () => {
    writeFileSync(join(dir, 'exports', 'left.sock'), '');
    expect(await guest.cmd('tryOpen', { path: join(dir, 'exports') })).toEqual({ ok: false, code: 'EACCES' });
    expect(await guest.cmd('tryOpen', { path: join(dir, 'exports', 'left.sock') })).toEqual({ ok: false, code: 'EACCES' });
  });

  it('refuses a namespace the host\'s user namespace owns: the domain does not start', async () => {
    const hostNs = `${NS}h`;
    const r = spawnSync('ip', ['netns', 'add', hostNs], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    try {
      const { result } = await t.dom0.call('domain_create', { name: 'hostns', kind: 'probe', memoryMiB: 64, ioFrames: 1, grantFrames: 1, confine: { ro: [], rw: [], netAdmin: true, netns: hostNs } });
      await t.dom0.call('domain_unpause', { domid: result.domid, bootArgs: new Uint8Array() });
      await t.waitEvent((e) => e.event === 'domain_died' && e.domid === result.domid);
      expect(t.logs.join('\n')).toMatch(/belongs to the host's user namespace, where CAP_NET_ADMIN reaches every namespace/);
    } finally {
      spawnSync('ip', ['netns', 'del', hostNs]);
    }
  });
});
