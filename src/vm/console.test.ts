// The console's command protocol against a scripted "guest shell" on a Unix socket: markers that
// arrive, markers of which one copy is lost (what CI saw busybox's shell do), and none at all.
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VmConsole } from './console.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

/** A shell that answers each command line with `answer(id)`, echoing the line first as a tty would. */
async function shell(answer: (id: string, line: string) => string): Promise<VmConsole> {
  const dir = mkdtempSync(join(tmpdir(), 'rs-con-'));
  const path = join(dir, 'console.sock');
  const server: Server = createServer((s: Socket) => {
    let buf = '';
    s.on('data', (d) => {
      buf += d.toString();
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const id = /RSB (\S+);/.exec(line)?.[1];
        s.write(`vm# ${line}\r\n${id ? answer(id, line) : ''}`);
      }
    });
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(path, r));
  const con = await VmConsole.connect(path, { timeoutMs: 5000 });
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }), () => server.close(), () => con.close());
  return con;
}

describe('running a command on the VM console', () => {
  it('gives the output between the markers and the exit status', async () => {
    const con = await shell((id) => `RSB-${id}\nRSB-${id}\nhello\r\nRSE-${id} 3\nRSE-${id} 3\n`);
    expect(await con.run('echo hello; exit 3')).toEqual({ code: 3, output: 'hello\n' });
  });

  it('still does when the shell loses the first write of each marker', async () => {
    // every printf of a marker the command line asks for, bar the first, reaches us
    const copies = (line: string, m: string, id: string) => line.split(`${m} ${id}`).length - 2;
    const con = await shell((id, line) => `RSB-${id}\n`.repeat(copies(line, 'RSB', id)) + `hello\n` + `RSE-${id} 4\n`.repeat(copies(line, 'RSE', id)));
    expect(await con.run('echo hello; exit 4')).toEqual({ code: 4, output: 'hello\n' });
  });

  it('names the command whose end marker never came', async () => {
    const con = await shell((id) => `RSB-${id}\nRSB-${id}\nhello\n`);
    await expect(con.run('sleep 99', { timeoutMs: 300 })).rejects.toThrow(/VM command 'sleep 99' failed: VM console: no the end marker of 'sleep 99' within 300 ms/);
  });
});
