// The JSON-line control socket every test-only domain kind obeys: one command per line in, one
// reply per line out. `flat` replies spread the result into the reply ({ ok, ...result });
// `nested` ones carry it as { ok, result }. A line that is not JSON is ignored.
import { connect, createServer, type Socket } from 'node:net';
import { readLines } from '../../src/control/lines.js';

export type Command = Record<string, unknown> & { cmd: string };

/**
 * Serves commands on a socket at `path`: listening there, or with `dial` connecting to the test,
 * which then listens (a confined domain may not create a socket file, but may connect).
 */
export function serveCommands(path: string, run: (c: Command) => Promise<unknown>, ready: () => void, reply: 'flat' | 'nested' = 'flat', dial = false): void {
  const serve = (sock: Socket) => {
    readLines(sock, (line) => {
      let c: Command;
      try {
        c = JSON.parse(line) as Command;
      } catch {
        return;
      }
      run(c).then(
        (r) => sock.write(JSON.stringify(reply === 'flat' ? { ok: true, ...(r as object) } : { ok: true, result: r ?? null }) + '\n'),
        (e: unknown) => {
          const error = e instanceof Error ? e.message : String(e);
          const code = (e as { code?: unknown } | null)?.code;
          sock.write(JSON.stringify(reply === 'flat' ? { ok: false, code, error } : { ok: false, error }) + '\n');
        },
      );
    });
  };
  if (dial) serve(connect(path, ready));
  else createServer(serve).listen(path, ready);
}
