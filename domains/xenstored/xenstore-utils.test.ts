// Interop with software nobody here wrote: Debian's xenstore-utils (libxenstore) against our xenstored.
// The server runs in this test's event loop, so the tools must be spawned asynchronously.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { startTestServer, type TestServer } from './testkit.js';
import { waitFor } from '../../src/testing/until.js';

const TOOLS = ['read', 'write', 'ls', 'list', 'rm', 'chmod', 'watch', 'exists'].map((n) => `/usr/bin/xenstore-${n}`);

let t: TestServer;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  const missing = TOOLS.filter((p) => !existsSync(p));
  // Deliberately a failure, not a skip: the interop claim must be checked (apt-get install xenstore-utils).
  if (missing.length > 0) throw new Error(`xenstore-utils not installed (missing ${missing.join(', ')}); apt-get install xenstore-utils`);
  t = await startTestServer();
  env = { ...process.env, XENSTORED_PATH: t.h.privilegedSocket };
});
afterAll(async () => {
  await t?.close();
});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function xs(tool: string, ...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(`/usr/bin/xenstore-${tool}`, args, { env, timeout: 10_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

async function ok(tool: string, ...args: string[]): Promise<string> {
  const r = await xs(tool, ...args);
  expect(r.code, `xenstore-${tool} ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r.stdout;
}

describe('Debian xenstore-utils against ringside xenstored', () => {
  it('write, read, exists, list, ls, rm', async () => {
    await ok('write', '/vm/a', 'hello world', '/vm/b/c', 'deep');
    expect(await ok('read', '/vm/a', '/vm/b/c')).toBe('hello world\ndeep\n');
    expect((await xs('exists', '/vm/a')).code).toBe(0);
    expect((await xs('exists', '/vm/nope')).code).not.toBe(0);
    expect((await xs('read', '/vm/nope')).code).not.toBe(0);
    expect((await ok('list', '/vm')).split('\n').filter(Boolean)).toEqual(['a', 'b']);
    expect(await ok('ls', '/vm')).toBe('a = "hello world"\nb = ""\n c = "deep"\n');
    await ok('rm', '/vm/b');
    expect((await xs('exists', '/vm/b/c')).code).not.toBe(0);
    expect((await ok('list', '/vm')).trim()).toBe('a');
  });

  it('lists a directory longer than one message (DIRECTORY_PART)', async () => {
    const args: string[] = [];
    for (let i = 0; i < 300; i++) args.push(`/many/a-rather-long-child-name-${i}`, String(i));
    await ok('write', ...args);
    const names = (await ok('list', '/many')).split('\n').filter(Boolean);
    expect(names).toHaveLength(300);
    expect(names[299]).toBe('a-rather-long-child-name-299');
  });

  it('xenstore-chmod sets permissions that an unprivileged domain then gets', async () => {
    await t.h.introduce(5);
    await ok('write', '/local/domain/5/secret', 's3cret');
    const dom5 = await t.dom(5);
    await expect(dom5.read('/local/domain/5/secret')).rejects.toMatchObject({ code: 'EACCES' });
    await ok('chmod', '/local/domain/5/secret', 'n0', 'r5');
    expect(await dom5.read('/local/domain/5/secret')).toBe('s3cret');
    await expect(dom5.write('/local/domain/5/secret', 'x')).rejects.toMatchObject({ code: 'EACCES' });
    expect(await ok('ls', '-p', '/local/domain/5')).toMatch(/secret = "s3cret" [ .]*\(n0,r5\)/);
    await ok('chmod', '-r', '/local/domain/5', 'n0', 'b5');
    await dom5.write('secret', 'changed by dom5');
    expect(await ok('read', '/local/domain/5/secret')).toBe('changed by dom5\n');
  });

  it('xenstore-watch -n 2 prints the initial event and a later change', async () => {
    await ok('write', '/watched/x', '0');
    const child = spawn('/usr/bin/xenstore-watch', ['-n', '2', '/watched'], { env });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    const killer = setTimeout(() => child.kill(), 10_000);
    try {
      await waitFor(() => out.includes('/watched\n'));
      await ok('write', '/watched/x/y', '1');
      expect(await exited).toBe(0);
      expect(out).toBe('/watched\n/watched/x/y\n');
    } finally {
      clearTimeout(killer);
    }
  });

  it('xenstore-watch sees writes by an unprivileged domain', async () => {
    await ok('write', '/local/domain/7/data', '');
    await ok('chmod', '/local/domain/7/data', 'n7');
    await t.h.introduce(7);
    const child = spawn('/usr/bin/xenstore-watch', ['-n', '2', '/local/domain/7/data'], { env });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    const killer = setTimeout(() => child.kill(), 10_000);
    try {
      await waitFor(() => out.length > 0);
      const dom7 = await t.dom(7);
      await dom7.write('data/state', '4');
      expect(await exited).toBe(0);
      expect(out).toBe('/local/domain/7/data\n/local/domain/7/data/state\n');
    } finally {
      clearTimeout(killer);
    }
  });
});
