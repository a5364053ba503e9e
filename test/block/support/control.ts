// The JSON-line control socket a block test domain obeys (like the probe domain's), and the
// test-side client for it.
import { serveCommands, type Command } from '../../domains/serve.js';
import { CommandClient } from '../../../src/control/command-client.js';
import { waitForSocket } from '../../../src/control/unix.js';

export type { Command } from '../../domains/serve.js';

/** The block test domains' replies carry the result nested: { ok, result }. */
export function serveControl(path: string, run: (c: Command) => Promise<unknown>, ready: () => void): void {
  serveCommands(path, run, ready, 'nested');
}

export class Control {
  private constructor(private readonly client: CommandClient) {}

  static async connect(path: string, ms = 20_000): Promise<Control> {
    return new Control(new CommandClient(await waitForSocket(path, ms, 'control socket')));
  }

  /** runs a command in the domain; throws with the domain's error message */
  async cmd<T = unknown>(cmd: string, args: Record<string, unknown> = {}): Promise<T> {
    const r = await this.client.request(cmd, args);
    if (!r.ok) throw new Error(String(r.error));
    return r.result as T;
  }

  close(): void {
    this.client.close();
  }
}
