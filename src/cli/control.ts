// The CLI's connection to a running system's control domain.
import { connect, type Socket } from 'node:net';
import { existsSync } from 'node:fs';
import { request, type ControlReply, type ControlRequest } from '../control/wire.js';
import { statePaths } from './paths.js';
import { CliError } from './errors.js';

export async function connectControl(stateDir: string): Promise<Socket> {
  const p = statePaths(stateDir);
  if (!existsSync(p.control)) throw new CliError(`no running system in ${p.dir} (no control.sock): start one with 'ringside up'`);
  return new Promise((resolve, reject) => {
    const s = connect(p.control);
    s.once('connect', () => resolve(s));
    s.once('error', (e) =>
      reject(new CliError(`cannot reach the control domain at ${p.control} (${(e as NodeJS.ErrnoException).code}): the system is not running; remove ${p.dir} or run 'ringside up'`)),
    );
  });
}

export async function control(stateDir: string, req: ControlRequest, onProgress?: (line: string) => void): Promise<ControlReply & { ok: true }> {
  const s = await connectControl(stateDir);
  try {
    const r = await request(s, req, onProgress);
    if (!r.ok) throw new CliError(r.error);
    return r;
  } finally {
    s.destroy();
  }
}
