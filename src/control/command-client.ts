// The client side of a JSON-lines command socket (test and bench domains answer one reply line per
// command line, in order): the one implementation the tests and `bench net` share. A peer that
// closes, or sends a line that is not JSON, answers every waiting command with ok: false.
import type { Socket } from 'node:net';
import { readLines } from './lines.js';

export type CommandReply = Record<string, unknown> & { ok?: boolean; error?: unknown };

export class CommandClient {
  private waiters: ((v: CommandReply) => void)[] = [];
  private closedWhy: string | null = null;

  constructor(private readonly sock: Socket) {
    readLines(sock, (l) => {
      let v: CommandReply;
      try {
        v = JSON.parse(l) as CommandReply;
      } catch {
        return this.fail(`the peer sent a line that is not JSON: ${l.slice(0, 120)}`);
      }
      this.waiters.shift()?.(v);
    });
    sock.on('close', () => this.fail('control socket closed (domain died?)'));
  }

  private fail(why: string): void {
    this.closedWhy ??= why;
    for (const w of this.waiters.splice(0)) w({ ok: false, error: why });
    this.sock.destroy();
  }

  /** Sends `{cmd, ...args}` and resolves with the reply line as the peer wrote it. */
  request(cmd: string, args: Record<string, unknown> = {}): Promise<CommandReply> {
    if (this.closedWhy !== null) return Promise.resolve({ ok: false, error: this.closedWhy });
    return new Promise((resolve) => {
      this.waiters.push(resolve);
      this.sock.write(JSON.stringify({ cmd, ...args }) + '\n');
    });
  }

  close(): void {
    this.sock.destroy();
  }
}
