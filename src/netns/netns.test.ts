import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NetnsRecords, createGuestNetns, deleteGuestNetns, deleteRecordedNetns, foreignNetnsError, netnsPath, userNamespacesOff } from './netns.js';

const work = mkdtempSync(join(tmpdir(), 'ringside-netns-'));
let dirs = 0;
const freshRecords = () => new NetnsRecords(join(work, `state${dirs++}`));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('NetnsRecords: which namespaces ringside made', () => {
  it('records, finds and forgets a name, one file per namespace under <state>/netns', () => {
    const r = freshRecords();
    expect(r.has('rs-a')).toBe(false);
    expect(r.list()).toEqual({ names: [], ignored: [] });
    r.add('rs-b');
    r.add('rs-a');
    expect(r.has('rs-a')).toBe(true);
    expect(readdirSync(r.dir).sort()).toEqual(['rs-a', 'rs-b']);
    expect(r.list()).toEqual({ names: ['rs-a', 'rs-b'], ignored: [] });
    r.remove('rs-a');
    r.remove('rs-a'); // forgetting twice is fine
    expect(r.has('rs-a')).toBe(false);
    expect(r.list().names).toEqual(['rs-b']);
  });

  it('refuses names ip(8) would not take, before touching the file system', () => {
    const r = freshRecords();
    expect(() => r.add('../etc')).toThrow(/network namespace name/);
    expect(() => r.has('a'.repeat(16))).toThrow(/network namespace name/);
    expect(existsSync(r.dir)).toBe(false);
  });

  it('reports and never acts on files it did not write', () => {
    const r = freshRecords();
    r.add('rs-ok');
    writeFileSync(join(r.dir, 'rs-other'), 'rs-victim\n'); // content names another namespace
    writeFileSync(join(r.dir, 'bad name'), 'bad name\n');
    mkdirSync(join(r.dir, 'rs-dir'));
    expect(r.has('rs-other')).toBe(false);
    expect(r.has('rs-dir')).toBe(false);
    const l = r.list();
    expect(l.names).toEqual(['rs-ok']);
    expect(l.ignored.sort()).toEqual(['bad name', 'rs-dir', 'rs-other']);
  });
});

describe('userNamespacesOff: a clear reason instead of unshare ENOSPC', () => {
  it('says user namespaces are off at max_user_namespaces=0 and names the guest and the way out', () => {
    const m = userNamespacesOff('0\n', 'web');
    expect(m).toMatch(/user namespaces are off on this host \(user\.max_user_namespaces=0\)/);
    expect(m).toMatch(/enable them, or set seccomp = 0 for web/);
  });

  it('says so for a kernel without CONFIG_USER_NS (no sysctl file)', () => {
    expect(userNamespacesOff(null, 'web')).toMatch(/off on this host \(no \/proc\/sys\/user\/max_user_namespaces: .*CONFIG_USER_NS\).*seccomp = 0 for web/);
  });

  it('accepts any nonzero limit and refuses to guess at garbage', () => {
    expect(userNamespacesOff('63432\n', 'web')).toBeNull();
    expect(userNamespacesOff('many', 'web')).toMatch(/cannot tell whether user namespaces are on: .* reads "many"/);
  });
});

// The rest makes real namespaces: root only (as the system tests).
const notRoot = process.getuid?.() !== 0;
if (notRoot) console.warn('skipping the netns creation tests: not running as root (network namespaces need CAP_SYS_ADMIN)');

describe.skipIf(notRoot)('createGuestNetns / deleteGuestNetns on the host', () => {
  const tag = process.pid % 100000;
  const names: string[] = [];
  const ns = (s: string) => {
    const n = `rsu${tag}${s}`;
    names.push(n);
    return n;
  };
  const ip = (...args: string[]) => spawnSync('ip', args, { encoding: 'utf8' });
  const hostUserns = readlinkSync('/proc/self/ns/user').replace(/\D/g, '');
  /** The inode of the user namespace owning `name`, seen from a process inside it. */
  const ownerOf = (name: string) => execFileSync('ip', ['netns', 'exec', name, 'sh', '-c', 'lsns -t net -n -o ONS -p $$'], { encoding: 'utf8' }).trim();

  afterAll(() => {
    for (const n of names) if (existsSync(`/run/netns/${n}`)) ip('netns', 'del', n);
  });

  it('makes a confined guest a namespace owned by a user namespace of its own, recorded, and removes both', async () => {
    const r = freshRecords();
    const n = ns('c');
    await createGuestNetns(n, { records: r, guest: 'g', confined: true });
    expect(existsSync(netnsPath(n))).toBe(true);
    expect(r.list().names).toEqual([n]);
    expect(ownerOf(n)).not.toBe(hostUserns);
    expect(await deleteGuestNetns(n, r)).toBe(true);
    expect(existsSync(netnsPath(n))).toBe(false);
    expect(r.list().names).toEqual([]);
  });

  it('makes an unconfined guest (seccomp = 0) a plain namespace the host owns', async () => {
    const r = freshRecords();
    const n = ns('u');
    await createGuestNetns(n, { records: r, guest: 'g', confined: false });
    expect(ownerOf(n)).toBe(hostUserns);
    expect(r.has(n)).toBe(true);
    expect(await deleteGuestNetns(n, r)).toBe(true);
    expect(existsSync(netnsPath(n))).toBe(false);
  });

  it('replaces a namespace it recorded earlier (a guest restarted after a crash)', async () => {
    const r = freshRecords();
    const n = ns('r');
    await createGuestNetns(n, { records: r, guest: 'g', confined: true });
    // A mark inside the first namespace, not its inode: the kernel reuses a freed namespace's
    // inode number, so a fresh namespace can carry the old one's.
    // (a fresh namespace's lo is down; we bring the first one's up)
    expect(ip('-n', n, 'link', 'set', 'lo', 'up').status).toBe(0);
    const loUp = () => /<[^>]*\bUP\b[^>]*>/.test(ip('-n', n, '-o', 'link', 'show', 'lo').stdout);
    expect(loUp()).toBe(true);
    await createGuestNetns(n, { records: r, guest: 'g', confined: true });
    expect(loUp(), 'the old namespace is still there').toBe(false);
    expect(await deleteGuestNetns(n, r)).toBe(true);
  });

  it("refuses an operator's namespace, naming guest, namespace and the fix, and never deletes it", async () => {
    const r = freshRecords();
    const n = ns('f');
    expect(ip('netns', 'add', n).status).toBe(0);
    const ino = statSync(netnsPath(n)).ino;
    for (const confined of [true, false]) await expect(createGuestNetns(n, { records: r, guest: 'web', confined })).rejects.toThrow(foreignNetnsError('web', n).message);
    expect(foreignNetnsError('web', n).message).toMatch(new RegExp(`guest 'web': network namespace ${n} already exists .*delete it with \`ip netns del ${n}\` or choose another netns=`));
    expect(r.has(n)).toBe(false);
    expect(await deleteGuestNetns(n, r)).toBe(false);
    expect(await deleteRecordedNetns(r)).toEqual({ removed: [], problems: [] });
    expect(statSync(netnsPath(n)).ino).toBe(ino);
    expect(ip('netns', 'del', n).status).toBe(0);
  });

  it('deleteRecordedNetns removes every recorded namespace (what a crash left) and only those', async () => {
    const r = freshRecords();
    const [a, b, gone, other] = [ns('a'), ns('b'), ns('g'), ns('o')];
    await createGuestNetns(a, { records: r, guest: 'ga', confined: true });
    await createGuestNetns(b, { records: r, guest: 'gb', confined: false });
    r.add(gone); // recorded, then the process died before creating it
    expect(ip('netns', 'add', other).status).toBe(0);
    expect(await deleteRecordedNetns(r)).toEqual({ removed: [a, b], problems: [] });
    for (const n of [a, b]) expect(existsSync(netnsPath(n))).toBe(false);
    expect(r.list()).toEqual({ names: [], ignored: [] });
    expect(existsSync(netnsPath(other))).toBe(true);
    expect(ip('netns', 'del', other).status).toBe(0);
  });

  it('a failed creation leaves neither namespace nor record, and explains unshare ENOSPC', async () => {
    const r = freshRecords();
    const n = ns('x');
    // an unshare(1) that fails the way it does when the host's user namespace limit is reached
    const bin = join(work, 'bin');
    mkdirSync(bin, { recursive: true });
    writeFileSync(join(bin, 'unshare'), '#!/bin/sh\necho "unshare: unshare failed: No space left on device" >&2\nexit 1\n');
    chmodSync(join(bin, 'unshare'), 0o755);
    const path = process.env.PATH;
    process.env.PATH = `${bin}:${path ?? ''}`;
    try {
      await expect(createGuestNetns(n, { records: r, guest: 'g', confined: true })).rejects.toThrow(/No space left on device \(the host's limit user\.max_user_namespaces=\d+ is reached\)/);
    } finally {
      process.env.PATH = path;
    }
    expect(existsSync(netnsPath(n))).toBe(false);
    expect(r.list()).toEqual({ names: [], ignored: [] });
  });
});
