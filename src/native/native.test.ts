import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { closeSync, fstatSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native, errnoCode, PAGE_SIZE } from './index.js';

describe('native addon', () => {
  it('shares a memfd between two mappings', () => {
    const fd = native.memfdCreate('t', PAGE_SIZE);
    const a = new Uint32Array(native.mmap(fd, PAGE_SIZE, true));
    const b = new Uint32Array(native.mmap(fd, PAGE_SIZE, true));
    a[5] = 0xdeadbeef;
    expect(b[5]).toBe(0xdeadbeef);
    native.munmap(a.buffer as ArrayBuffer);
    expect(a.length).toBe(0); // detached, so no use-after-unmap from JS
    expect(() => native.munmap(a.buffer as ArrayBuffer)).toThrow(/not a live mapping/);
    native.close(fd);
  });

  it('refuses a writable mapping of a read-only reopen', () => {
    const fd = native.memfdCreate('t', PAGE_SIZE);
    const ro = native.reopen(fd, true);
    expect(native.fdAccessMode(ro)).toBe('r');
    let code: string | undefined;
    try {
      native.mmap(ro, PAGE_SIZE, true);
    } catch (e) {
      code = errnoCode(e);
    }
    expect(code).toBe('EACCES');
    const view = new Uint8Array(native.mmap(ro, PAGE_SIZE, false));
    expect(view[0]).toBe(0);
    native.close(ro);
    native.close(fd);
  });

  it('maps several frames contiguously', () => {
    const fds = [0, 1, 2].map(() => native.memfdCreate('f', PAGE_SIZE));
    const all = new Uint8Array(native.mmapFrames(fds, true));
    all[PAGE_SIZE + 7] = 42;
    const one = new Uint8Array(native.mmap(fds[1], PAGE_SIZE, false));
    expect(one[7]).toBe(42);
    fds.forEach((f) => native.close(f));
  });

  it('passes descriptors over a seqpacket pair, keeping message boundaries', () => {
    const [a, b] = native.seqpacketPair();
    const efd = native.eventfd();
    native.sendmsg(a, new Uint8Array([1, 2, 3]), [efd]);
    native.sendmsg(a, new Uint8Array([4]));
    const buf = new Uint8Array(64);
    const r1 = native.recvmsg(b, buf)!;
    expect(r1.len).toBe(3);
    expect(r1.fds.length).toBe(1);
    native.eventfdSignal(efd);
    native.eventfdSignal(efd);
    expect(native.eventfdRead(r1.fds[0])).toBe(2); // coalesced counter through the passed fd
    expect(native.eventfdRead(r1.fds[0])).toBe(0);
    const r2 = native.recvmsg(b, buf)!;
    expect(r2.len).toBe(1);
    expect(native.recvmsg(b, buf)).toBeNull();
    native.close(a);
    expect(native.recvmsg(b, buf)!.len).toBe(0);
    [b, efd, r1.fds[0]].forEach((f) => native.close(f));
  });

  it('wakes a JS callback from an eventfd', async () => {
    const efd = native.eventfd();
    const got = await new Promise<number>((resolve) => {
      const w = new native.Watcher(efd, 'eventfd', (n) => {
        w.close();
        resolve(n);
      });
      w.ref();
      native.eventfdSignal(efd);
      native.eventfdSignal(efd);
    });
    expect(got).toBe(2);
    native.close(efd);
  });

  it('punches a hole that reads back as zeroes and frees its blocks', () => {
    const dir = mkdtempSync(join(tmpdir(), 'rs-punch-'));
    const path = join(dir, 'img');
    writeFileSync(path, Buffer.alloc(1 << 20, 0xab));
    const fd = openSync(path, 'r+');
    try {
      const before = fstatSync(fd).blocks;
      native.punchHole(fd, 256 << 10, 512 << 10);
      const data = readFileSync(path);
      expect(data.subarray(0, 256 << 10).every((b) => b === 0xab)).toBe(true);
      expect(data.subarray(256 << 10, 768 << 10).every((b) => b === 0)).toBe(true);
      expect(data.subarray(768 << 10).every((b) => b === 0xab)).toBe(true);
      expect(data.length).toBe(1 << 20); // KEEP_SIZE
      expect(fstatSync(fd).blocks).toBeLessThan(before);
    } finally {
      closeSync(fd);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names errno in errors', () => {
    try {
      native.close(99999);
      expect.unreachable();
    } catch (e) {
      expect(errnoCode(e)).toBe('EBADF');
      expect(String(e)).toMatch(/close: EBADF/);
    }
  });

  it("applies a role's seccomp table to the whole process in a child, and refuses an unknown role", () => {
    const r = spawnSync(process.execPath, ['-e', `
      const addon = require(${JSON.stringify(new URL('../../native/build/Release/ringside.node', import.meta.url).pathname)});
      let unknown = '';
      try { addon.seccompRole('everything'); } catch (e) { unknown = e.message; }
      const denied = addon.seccompRole('driver');
      const st = addon.sandboxStatus();
      let code = 'none';
      try { require('node:fs').mkdirSync('/tmp/ringside-seccomp-should-not-exist'); } catch (e) { code = e.code; }
      let exec = 'none';
      try { require('node:child_process').execFileSync('/bin/true'); } catch (e) { exec = e.code; }
      console.log(JSON.stringify({ st, code, exec, denied, unknown }));
    `], { encoding: 'utf8' });
    const out = JSON.parse(r.stdout.trim());
    expect(out.unknown).toMatch(/unknown role 'everything'/);
    expect(out.denied).toBeGreaterThan(40);
    expect(out.exec).toBe('EPERM');
    expect(out.st.noNewPrivs).toBe(true);
    expect(out.st.seccomp).toBe(2);
    expect(out.code).toBe('EPERM');
  });

  it('the driver-vhost role leaves Unix sockets and refuses every other family', () => {
    const dir = mkdtempSync(join(tmpdir(), 'rs-seccomp-'));
    const r = spawnSync(process.execPath, ['-e', `
      const addon = require(${JSON.stringify(new URL('../../native/build/Release/ringside.node', import.meta.url).pathname)});
      addon.seccompRole('driver-vhost');
      const out = {};
      try { addon.close(addon.unixListen(${JSON.stringify(join(dir, 'l.sock'))})); out.unix = 'ok'; } catch (e) { out.unix = e.message; }
      const net = require('node:net');
      const srv = net.createServer().on('error', (e) => { out.tcp = e.code; console.log(JSON.stringify(out)); });
      srv.listen(0, '127.0.0.1', () => { out.tcp = 'listening'; console.log(JSON.stringify(out)); srv.close(); });
    `], { encoding: 'utf8' });
    rmSync(dir, { recursive: true, force: true });
    const out = JSON.parse(r.stdout.trim()) as { unix: string; tcp: string };
    expect(out).toEqual({ unix: 'ok', tcp: 'EPERM' });
  });
});
