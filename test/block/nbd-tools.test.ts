import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { connect } from 'node:net';
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RawFile } from '../../src/blkdev/raw-file.js';
import { DeviceDisk } from '../../src/blkdev/disk.js';
import { NbdServer } from '../../src/nbd/server.js';
import { fioVerify, qemuIo, run, nbdUri } from './support/tools.js';

let dir: string;
let dev: RawFile;
let server: NbdServer;
let logs: string[];
let sock: string;
const SIZE = 32 << 20;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ringside-nbd-'));
  const img = join(dir, 'disk.img');
  writeFileSync(img, '');
  truncateSync(img, SIZE);
  dev = await RawFile.open(img);
  logs = [];
  sock = join(dir, 'nbd.sock');
  server = await NbdServer.start({ socketPath: sock, exports: [{ name: 'xvda', description: 'test disk', disk: new DeviceDisk(dev) }], log: (l) => logs.push(l) });
});
afterEach(async () => {
  await server.close();
  await dev.close();
  rmSync(dir, { recursive: true, force: true });
});

/** raw bytes to the server; resolves with everything it sent back before closing */
function rawClient(bytes: Buffer, hangUp = false): Promise<Buffer> {
  return new Promise((resolve) => {
    const c = connect(sock);
    const got: Buffer[] = [];
    c.on('data', (b) => got.push(b));
    c.on('close', () => resolve(Buffer.concat(got)));
    c.on('error', () => undefined);
    if (hangUp) c.end(bytes);
    else c.write(bytes);
    setTimeout(() => c.destroy(), 3000).unref();
  });
}

describe('NBD server against real tools', () => {
  it('qemu-io writes patterns and reads them back, unaligned too', async () => {
    const w = await qemuIo(sock, ['write -P 0xab 0 1M', 'read -P 0xab 0 1M', 'write -P 0x11 1000 3000', 'read -P 0x11 1000 3000', 'read -P 0xab 0 1000',
      'write -P 0x33 2M 128k', 'write -z 2140000 5000', 'read -P 0 2140000 5000', 'read -P 0x33 2145000 1000', 'read -P 0x33 2139000 1000', 'read -P 0x33 2130000 9000']);
    expect(w.code, w.stdout + w.stderr).toBe(0);
    expect(w.stdout).not.toMatch(/Pattern verification failed|error/i);
    const file = readFileSync(join(dir, 'disk.img'));
    expect([file[999], file[1000], file[3999], file[4000]]).toEqual([0xab, 0x11, 0x11, 0xab]);
  });

  it('answers reads with structured replies once negotiated', async () => {
    const opt = (type: number, data: Buffer) => {
      const h = Buffer.alloc(16);
      h.writeBigUInt64BE(0x49484156454f5054n, 0);
      h.writeUInt32BE(type, 8);
      h.writeUInt32BE(data.length, 12);
      return Buffer.concat([h, data]);
    };
    const go = Buffer.alloc(4 + 4 + 2);
    go.writeUInt32BE(4, 0);
    go.write('xvda', 4);
    go.writeUInt16BE(0, 8);
    const req = Buffer.alloc(28);
    req.writeUInt32BE(0x25609513, 0);
    req.writeUInt16BE(0, 6); // READ
    req.writeUInt32BE(0xcafe, 12);
    req.writeUInt32BE(512, 20);
    req.writeUInt32BE(512, 24);
    const disc = Buffer.alloc(28);
    disc.writeUInt32BE(0x25609513, 0);
    disc.writeUInt16BE(2, 6);
    const flags = Buffer.alloc(4);
    flags.writeUInt32BE(3, 0);
    const out = await rawClient(Buffer.concat([flags, opt(8, Buffer.alloc(0)), opt(7, go), req, disc]));
    // greeting 18, STRUCTURED_REPLY ack 20, GO: INFO_EXPORT 20+12, ACK 20
    let at = 18;
    expect(out.readUInt32BE(at + 12)).toBe(1); // ACK
    at += 20;
    expect(out.readUInt32BE(at + 12)).toBe(3); // INFO
    expect(out.readBigUInt64BE(at + 22)).toBe(BigInt(SIZE));
    const tflags = out.readUInt16BE(at + 30);
    expect(tflags & (1 << 7)).not.toBe(0); // SEND_DF comes with structured replies
    at += 32;
    expect(out.readUInt32BE(at + 12)).toBe(1);
    at += 20;
    expect(out.readUInt32BE(at)).toBe(0x668e33ef);
    expect(out.readUInt16BE(at + 4)).toBe(1); // DONE
    expect(out.readUInt16BE(at + 6)).toBe(1); // OFFSET_DATA
    expect(out.readUInt32BE(at + 12)).toBe(0xcafe);
    expect(out.readUInt32BE(at + 16)).toBe(8 + 512);
    expect(out.length).toBe(at + 28 + 512);
  });

  it('nbdinfo reports the size and the export', async () => {
    const r = await run('nbdinfo', ['--json', nbdUri(sock)]);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout) as { exports: { 'export-size': number; 'is_read_only': boolean; 'can_flush': boolean; 'can_trim': boolean }[] };
    expect(j.exports[0]['export-size']).toBe(SIZE);
    expect(j.exports[0].can_flush).toBe(true);
    const l = await run('nbdinfo', ['--list', nbdUri(sock)]);
    expect(l.stdout).toMatch(/xvda/);
  });

  it('fio randwrite with crc32c verify, two jobs on two connections at once', async () => {
    const [a, b] = await Promise.all([
      fioVerify(sock, { bs: '4k', size: '8M', iodepth: 32, name: 'a' }),
      fioVerify(sock, { bs: '1M', size: '8M', offset: '16M', iodepth: 8, name: 'b' }),
    ]);
    expect(a.code, a.output).toBe(0);
    expect(a.errors).toBe(0);
    expect(b.code, b.output).toBe(0);
    expect(b.errors).toBe(0);
  });

  it('disconnects a client that sends garbage, and keeps serving others', async () => {
    const reply = await rawClient(Buffer.from('GET / HTTP/1.1\r\n\r\n'));
    expect(reply.subarray(0, 8).toString()).toBe('NBDMAGIC');
    expect(logs.some((l) => /disconnected: unknown client flags/.test(l))).toBe(true);
    // a proper handshake followed by a bad request magic
    const hs = Buffer.alloc(4 + 16 + 4);
    hs.writeUInt32BE(3, 0);
    hs.writeBigUInt64BE(0x49484156454f5054n, 4);
    hs.writeUInt32BE(1, 12); // EXPORT_NAME
    hs.writeUInt32BE(4, 16);
    hs.write('xvda', 20);
    const bad = Buffer.alloc(28, 0x41);
    await rawClient(Buffer.concat([hs, bad]));
    expect(logs.some((l) => /bad request magic 0x41414141/.test(l))).toBe(true);
    // an oversized option
    const big = Buffer.alloc(4 + 16);
    big.writeUInt32BE(3, 0);
    big.writeBigUInt64BE(0x49484156454f5054n, 4);
    big.writeUInt32BE(7, 12);
    big.writeUInt32BE(0x7fffffff, 16);
    await rawClient(big);
    expect(logs.some((l) => /bytes of data/.test(l))).toBe(true);
    // a write whose payload never fully arrives is never executed
    const half = Buffer.alloc(28 + 2048, 0xff);
    half.writeUInt32BE(0x25609513, 0);
    half.writeUInt16BE(0, 4);
    half.writeUInt16BE(1, 6); // WRITE
    half.writeBigUInt64BE(0n, 8);
    half.writeBigUInt64BE(8192n, 16);
    half.writeUInt32BE(4096, 24);
    await rawClient(Buffer.concat([hs, half]), true);
    expect(readFileSync(join(dir, 'disk.img')).subarray(8192, 8192 + 4096).every((b) => b === 0)).toBe(true);
    const ok = await qemuIo(sock, ['write -P 0x5c 0 64k', 'read -P 0x5c 0 64k']);
    expect(ok.code, ok.stderr).toBe(0);
  });
});
