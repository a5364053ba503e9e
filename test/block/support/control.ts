// The JSON-line control socket a block test domain obeys (like the probe domain's), and the
// test-side client for it.
import type { Socket } from 'node:net';
import { serveCommands, type Command } from '../../domains/serve.js';
import { readLines } from '../../../src/control/lines.js';
import { waitForSocket } from '../../../src/control/unix.js';

export type { Command } from '../../domains/serve.js';

/** The block test domains' replies carry the result nested: { ok, result }. */
export function serveControl(path: string, run: (c: Command) => Promise<unknown>, ready: () => void): void {
  serveCommands(path, run, ready, 'nested');
}

export class Control {
  private waiters: ((v: { ok: boolean; result?: unknown; error?: string }) => void)[] = [];
  private constructor(private readonly sock: Socket) {
    readLines(sock, (l) => this.waiters.shift()?.(JSON.parse(l) as { ok: boolean; result?: unknown; error?: string }));
    sock.on('close', () => {
      for (const w of this.waiters.splice(0)) w({ ok: false, error: 'control socket closed (domain died?)' });
    });
  }

  static async connect(path: string, ms = 20_000): Promise<Control> {
    return new Control(await waitForSocket(path, ms, 'control socket'));
  }

  /** runs a command in the domain; throws with the domain's error message */
  async cmd<T = unknown>(cmd: string, args: Record<string, unknown> = {}): Promise<T> {
    const r = await new Promise<{ ok: boolean; result?: unknown; error?: string }>((resolve) => {
      this.waiters.push(resolve);
      this.sock.write(JSON.stringify({ cmd, ...args }) + '\n');
    });
    if (!r.ok) throw new Error(r.error);
    return r.result as T;
  }

  close(): void {
    this.sock.destroy();
  }
}
