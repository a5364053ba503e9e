import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { prng, RawConn, startTestServer, text, type TestServer } from './testkit.js';
import { encodeMessage, HEADER_SIZE, XsType } from '../../src/xenstore/wire.js';

let t: TestServer;
beforeEach(async () => {
  t = await startTestServer();
  const c = await t.priv();
  await c.write('/keep', 'alive');
  await t.h.introduce(5);
});
afterEach(async () => {
  await t.close();
});

// After each attack a separate, well-behaved client must still be served.
let probe = 0;
async function stillServing(): Promise<void> {
  const c = await t.priv();
  const key = `/probe/${probe++}`;
  await c.write(key, 'alive');
  expect(await c.read(key)).toBe('alive');
  await c.close();
}

async function expectError(conn: RawConn, type: number, payload: Buffer | string, name: string, txId = 0): Promise<void> {
  const m = await conn.request(type, payload, 0xabcd, txId);
  expect(m.type, `${XsType[type] ?? type} ${JSON.stringify(payload.toString())}`).toBe(XsType.ERROR);
  expect(text(m)).toBe(`${name}\0`);
  expect(m.reqId).toBe(0xabcd);
  expect(m.txId).toBe(txId);
}

describe('framing attacks', () => {
  it('cuts off a connection announcing more than 4096 bytes, and logs why', async () => {
    const raw = await RawConn.connect(t.h.privilegedSocket);
    const h = Buffer.alloc(HEADER_SIZE);
    h.writeUInt32LE(XsType.WRITE, 0);
    h.writeUInt32LE(0xffffffff, 12);
    raw.sendRaw(h);
    await raw.closed;
    expect(t.logs.some((l) => /exceeds 4096/.test(l))).toBe(true);
    await stillServing();
  });

  it('survives truncated headers and payloads from peers that hang up', async () => {
    for (const bytes of [Buffer.from([1, 0, 0]), encodeMessage(XsType.READ, 1, 0, '/keep\0').subarray(0, 19)]) {
      const raw = await RawConn.connect(t.h.privilegedSocket);
      raw.sendRaw(bytes);
      await new Promise((r) => setTimeout(r, 10));
      await raw.close();
    }
    await stillServing();
  });

  it('reassembles a frame written one byte at a time, and many frames in one write', async () => {
    const raw = await RawConn.connect(t.h.privilegedSocket);
    const f = encodeMessage(XsType.READ, 77, 0, '/keep\0');
    for (const b of f) {
      raw.sendRaw(Buffer.from([b]));
      await new Promise((r) => setImmediate(r));
    }
    expect(text(await raw.next())).toBe('alive');
    raw.sendRaw(Buffer.concat(Array.from({ length: 50 }, (_, i) => encodeMessage(XsType.READ, i, 0, '/keep\0'))));
    for (let i = 0; i < 50; i++) expect((await raw.next()).reqId).toBe(i);
    await raw.close();
  });
});

describe('malformed requests get error replies', () => {
  it('answers unknown and server-only types with ENOSYS, echoing req_id and tx_id', async () => {
    const raw = await RawConn.connect(t.h.privilegedSocket);
    for (const type of [0, 15, 16, 20, 23, 99, 0xffff, 0xffffffff]) await expectError(raw, type, '/x\0', 'ENOSYS');
    expect(t.logs.filter((l) => l.includes('unsupported message type'))).toHaveLength(1);
    await raw.close();
  });

  it('rejects bad paths and arguments with EINVAL', async () => {
    const raw = await RawConn.connect(t.h.privilegedSocket);
    const cases: [number, Buffer | string][] = [
      [XsType.READ, '/keep'], // no NUL
      [XsType.READ, '/keep\0junk'], // garbage after the argument
      [XsType.READ, '/keep\0/keep\0'], // two arguments
      [XsType.READ, ''],
      [XsType.READ, '\0'],
      [XsType.READ, '/a b\0'],
      [XsType.READ, '/a//b\0'],
      [XsType.READ, '/a/\0'],
      [XsType.READ, '@introduceDomain\0'],
      [XsType.READ, Buffer.from([0x2f, 0xc3, 0x28, 0x00])], // invalid UTF-8
      [XsType.READ, Buffer.from([0x2f, 0xff, 0xfe, 0x00])],
      [XsType.READ, `/${'a'.repeat(3100)}\0`],
      [XsType.WRITE, '/no-nul-at-all'],
      [XsType.MKDIR, '/a\0b\0'],
      [XsType.DIRECTORY_PART, '/keep\0abc\0'],
      [XsType.DIRECTORY_PART, '/keep\0'],
      [XsType.SET_PERMS, '/keep\0'],
      [XsType.SET_PERMS, '/keep\0x5\0'],
      [XsType.SET_PERMS, '/keep\0r\0'],
      [XsType.SET_PERMS, '/keep\0r99999\0'],
      [XsType.SET_PERMS, '/keep\0\0'],
      [XsType.SET_PERMS, '/keep\0n0'],
      [XsType.WATCH, '/keep\0'],
      [XsType.WATCH, '/keep\0tok'],
      [XsType.WATCH, '/keep\0tok\0extra\0'],
      [XsType.TRANSACTION_START, 'x\0'],
      [XsType.GET_DOMAIN_PATH, 'abc\0'],
      [XsType.GET_DOMAIN_PATH, '-1\0'],
      [XsType.INTRODUCE, '5\0'],
      [XsType.INTRODUCE, 'x\0y\0z\0'],
      [XsType.INTRODUCE, '0\0 1\0 2\0'],
      [XsType.INTRODUCE, '40000\0 1\0 2\0'],
      [XsType.RELEASE, 'five\0'],
    ];
    for (const [type, payload] of cases) await expectError(raw, type, payload, 'EINVAL');
    const tx = await raw.request(XsType.TRANSACTION_START, '\0');
    await expectError(raw, XsType.TRANSACTION_END, 'X\0', 'EINVAL', Number(text(tx).slice(0, -1)));
    await raw.close();
    await stillServing();
  });

  it('answers unknown transaction ids with ENOENT and nested starts with EBUSY', async () => {
    const raw = await RawConn.connect(t.h.privilegedSocket);
    await expectError(raw, XsType.READ, '/keep\0', 'ENOENT', 12345);
    await expectError(raw, XsType.TRANSACTION_END, 'T\0', 'ENOENT', 12345);
    await expectError(raw, XsType.TRANSACTION_END, 'T\0', 'ENOENT', 0);
    const tx = Number(text(await raw.request(XsType.TRANSACTION_START, '\0')).slice(0, -1));
    await expectError(raw, XsType.TRANSACTION_START, '\0', 'EBUSY', tx);
    // A transaction belongs to its connection.
    const other = await RawConn.connect(t.h.privilegedSocket);
    await expectError(other, XsType.READ, '/keep\0', 'ENOENT', tx);
    await other.close();
    await raw.close();
  });

  it('refuses privileged operations to a domain', async () => {
    const raw = await RawConn.connect(t.h.domainSocketPath(5));
    await expectError(raw, XsType.INTRODUCE, '6\0 0\0 0\0', 'EACCES');
    await expectError(raw, XsType.RELEASE, '5\0', 'EACCES');
    await expectError(raw, XsType.SET_TARGET, '5\0 6\0', 'EACCES');
    await expectError(raw, XsType.RESUME, '5\0', 'EACCES');
    await expectError(raw, XsType.SET_PERMS, '@introduceDomain\0r5\0', 'EACCES');
    await raw.close();
  });
});

describe('fuzzing', () => {
  it('keeps serving others while clients send random frames and random bytes', async () => {
    const rnd = prng(0x5eed);
    const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
    const fragments = ['/keep', '/a', 'rel', '@introduceDomain', '\0', 'T', 'F', 'n0', 'r5', '//', '/local/domain/5', '0', '4294967295'];
    for (let round = 0; round < 6; round++) {
      const conns = await Promise.all([
        RawConn.connect(t.h.privilegedSocket),
        RawConn.connect(t.h.domainSocketPath(5)),
      ]);
      for (const raw of conns) {
        for (let i = 0; i < 150; i++) {
          const type = rnd() < 0.9 ? Math.floor(rnd() * 24) : Math.floor(rnd() * 0xffffffff);
          let payload: Buffer;
          if (rnd() < 0.5) {
            payload = Buffer.from(Array.from({ length: Math.floor(rnd() * 5) }, () => pick(fragments)).join(rnd() < 0.5 ? '\0' : '/'), 'latin1');
          } else {
            payload = Buffer.from(Array.from({ length: Math.floor(rnd() * 64) }, () => Math.floor(rnd() * 256)));
          }
          const txId = rnd() < 0.8 ? 0 : Math.floor(rnd() * 5);
          raw.send(type, payload, Math.floor(rnd() * 0xffffffff), txId);
        }
        // Finish with pure noise, which may or may not parse as an oversized header.
        raw.sendRaw(Buffer.from(Array.from({ length: 300 }, () => Math.floor(rnd() * 256))));
      }
      await new Promise((r) => setTimeout(r, 20));
      await stillServing();
      await Promise.all(conns.map((c) => c.close()));
    }
    expect(t.logs.some((l) => l.includes('internal error'))).toBe(false);
  });
});
