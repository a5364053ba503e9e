import { describe, expect, it } from 'vitest';
import { createConnection, createServer, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CommandClient } from './command-client.js';

/** A peer that answers each command line with `answer(line)` (null: say nothing). */
async function peer(answer: (cmd: Record<string, unknown>, sock: Socket) => string | null): Promise<{ client: CommandClient; done: () => void }> {
  const dir = mkdtempSync(join(tmpdir(), 'rs-cmdc-'));
  const path = join(dir, 's.sock');
  const srv = createServer((s) => {
    let buf = '';
    s.on('data', (d) => {
      buf += d.toString();
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const out = answer(JSON.parse(buf.slice(0, nl)) as Record<string, unknown>, s);
        buf = buf.slice(nl + 1);
        if (out !== null) s.write(out + '\n');
      }
    });
  });
  await new Promise<void>((r) => srv.listen(path, r));
  const sock = createConnection(path);
  await new Promise((r) => sock.once('connect', r));
  return { client: new CommandClient(sock), done: () => (srv.close(), rmSync(dir, { recursive: true, force: true })) };
}

describe('CommandClient', () => {
  it('matches replies to commands in order', async () => {
    const { client, done } = await peer((c) => JSON.stringify({ ok: true, echo: c.cmd, n: c.n }));
    const rs = await Promise.all([1, 2, 3].map((n) => client.request('ping', { n })));
    expect(rs.map((r) => r.n)).toEqual([1, 2, 3]);
    client.close();
    done();
  });

  it('a line that is not JSON fails every waiting command and ends the connection', async () => {
    const { client, done } = await peer(() => 'not json');
    const [a, b] = await Promise.all([client.request('x'), client.request('y')]);
    expect(a).toEqual({ ok: false, error: 'the peer sent a line that is not JSON: not json' });
    expect(b.ok).toBe(false);
    expect((await client.request('z')).ok).toBe(false);
    done();
  });

  it('a peer that closes answers what waits, and later commands, with ok: false', async () => {
    const { client, done } = await peer((_c, s) => (s.destroy(), null));
    expect(await client.request('x')).toEqual({ ok: false, error: 'control socket closed (domain died?)' });
    expect(await client.request('y')).toEqual({ ok: false, error: 'control socket closed (domain died?)' });
    done();
  });
});
