import { afterEach, describe, expect, it } from 'vitest';
import { createServer, type Server, type Socket } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { XenstoreClient, XenstoreError } from './client.js';
import { encodeMessage, FrameDecoder, XsType, type XsMessage } from './wire.js';

// A scripted peer: lets each test decide exactly which bytes the client sees and in what order.
async function fakeServer(onMessages: (sock: Socket, msgs: XsMessage[]) => void): Promise<{ path: string; server: Server; dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'xsc-'));
  const path = join(dir, 's');
  const server = createServer((sock) => {
    const d = new FrameDecoder();
    const seen: XsMessage[] = [];
    sock.on('error', () => undefined);
    sock.on('data', (c: Buffer) => {
      d.push(c);
      for (let f = d.next(); f; f = d.next()) if (f.kind === 'message') seen.push(f.message);
      onMessages(sock, seen);
    });
  });
  await new Promise<void>((r) => server.listen(path, r));
  return { path, server, dir };
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

async function setup(onMessages: (sock: Socket, msgs: XsMessage[]) => void): Promise<XenstoreClient> {
  const f = await fakeServer(onMessages);
  const client = await XenstoreClient.connect(f.path, { onError: () => undefined });
  cleanups.push(async () => {
    await client.close();
    await new Promise<void>((r) => f.server.close(() => r()));
    await rm(f.dir, { recursive: true, force: true });
  });
  return client;
}

describe('XenstoreClient framing', () => {
  it('matches pipelined replies by req_id, out of order, split, with watch events in between', async () => {
    const events: string[] = [];
    const client = await setup((sock, msgs) => {
      if (msgs.length < 4) return;
      const watch = msgs.find((m) => m.type === XsType.WATCH) as XsMessage;
      const reads = msgs.filter((m) => m.type === XsType.READ).reverse();
      const out = [
        encodeMessage(XsType.WATCH_EVENT, 0, 0, '/w\0tok\0'),
        encodeMessage(XsType.WATCH, watch.reqId, 0, 'OK\0'),
        ...reads.flatMap((m) => [
          encodeMessage(XsType.WATCH_EVENT, 0, 0, `/w/${m.reqId}\0tok\0`),
          encodeMessage(XsType.READ, m.reqId, 0, `value-of-${m.payload.toString('latin1', 0, m.payload.length - 1)}`),
        ]),
      ];
      // Dribble the bytes out in odd-sized pieces so headers and payloads straddle chunks.
      const all = Buffer.concat(out);
      let i = 0;
      const tick = (): void => {
        if (i >= all.length) return;
        sock.write(all.subarray(i, i + 7));
        i += 7;
        setImmediate(tick);
      };
      tick();
    });
    const w = client.watch('/w', 'tok', (p) => events.push(p));
    const r = Promise.all([client.read('/a'), client.read('/b'), client.read('/c')]);
    await w;
    expect(await r).toEqual(['value-of-/a', 'value-of-/b', 'value-of-/c']);
    expect(events[0]).toBe('/w');
    expect(events).toHaveLength(4);
  });

  it('turns error replies into typed errors carrying the xenstore name', async () => {
    const client = await setup((sock, msgs) => {
      const m = msgs.at(-1) as XsMessage;
      sock.write(encodeMessage(XsType.ERROR, m.reqId, m.txId, 'ENOENT\0'));
    });
    const err = await client.read('/missing').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(XenstoreError);
    expect(err).toMatchObject({ code: 'ENOENT', op: 'READ', path: '/missing' });
  });

  it('rejects a reply of the wrong type as EPROTO', async () => {
    const client = await setup((sock, msgs) => {
      const m = msgs.at(-1) as XsMessage;
      sock.write(encodeMessage(XsType.DIRECTORY, m.reqId, 0, ''));
    });
    await expect(client.read('/x')).rejects.toMatchObject({ code: 'EPROTO' });
  });

  it('fails outstanding requests with ECONNRESET when the server hangs up', async () => {
    const client = await setup((sock) => sock.destroy());
    await expect(client.read('/x')).rejects.toMatchObject({ code: 'ECONNRESET' });
    await expect(client.read('/y')).rejects.toMatchObject({ code: 'ECONNRESET' });
  });

  it('refuses locally to send a payload above 4096 bytes', async () => {
    const client = await setup(() => undefined);
    await expect(client.write('/x', Buffer.alloc(5000))).rejects.toMatchObject({ code: 'E2BIG' });
  });

  it('retries the whole transaction body on EAGAIN', async () => {
    let commits = 0;
    const client = await setup((sock, msgs) => {
      const m = msgs.at(-1) as XsMessage;
      if (m.type === XsType.TRANSACTION_START) sock.write(encodeMessage(m.type, m.reqId, 0, '42\0'));
      else if (m.type === XsType.TRANSACTION_END) {
        commits++;
        sock.write(encodeMessage(commits < 3 ? XsType.ERROR : m.type, m.reqId, m.txId, commits < 3 ? 'EAGAIN\0' : 'OK\0'));
      } else sock.write(encodeMessage(m.type, m.reqId, m.txId, m.txId === 42 ? 'in-tx' : 'outside'));
    });
    let runs = 0;
    const v = await client.transaction(async (tx) => {
      runs++;
      return tx.read('/k');
    });
    expect(v).toBe('in-tx');
    expect(runs).toBe(3);
    expect(commits).toBe(3);
  });

  it('aborts the transaction when the body throws', async () => {
    const ends: string[] = [];
    const client = await setup((sock, msgs) => {
      const m = msgs.at(-1) as XsMessage;
      if (m.type === XsType.TRANSACTION_START) sock.write(encodeMessage(m.type, m.reqId, 0, '7\0'));
      else {
        if (m.type === XsType.TRANSACTION_END) ends.push(m.payload.toString('latin1'));
        sock.write(encodeMessage(m.type, m.reqId, m.txId, 'OK\0'));
      }
    });
    await expect(client.transaction(async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(ends).toEqual(['F\0']);
  });
});
