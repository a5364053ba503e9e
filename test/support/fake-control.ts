// A stand-in for another ringside host's dom0: a control socket in a state directory of its own
// that answers each request as the test says, with any bytes at all, so a test can play a peer
// or a migration destination that lies.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { statePaths } from '../../src/control/paths.js';
import { FrameReader } from '../../src/control/wire.js';

export interface FakeHost {
  /** its state directory: what host.cfg's peers or `ringside migrate NAME DEST` name */
  dir: string;
  /** every request it was sent, decoded */
  requests: unknown[];
  close(): void;
}

/** `answer` gets each decoded request and the connection, and writes what it likes (encodeFrame for a well-formed reply). */
export async function fakeHost(answer: (req: unknown, s: Socket) => void): Promise<FakeHost> {
  const dir = mkdtempSync(join(tmpdir(), 'rs-fake-host-'));
  const requests: unknown[] = [];
  const srv = createServer((s) => {
    s.on('error', () => {});
    const reader = new FrameReader();
    s.on('data', (d) =>
      reader.push(d, (req) => {
        requests.push(req);
        answer(req, s);
      }),
    );
  });
  await new Promise<void>((r) => srv.listen(statePaths(dir).control, r));
  return {
    dir,
    requests,
    close: () => {
      srv.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
