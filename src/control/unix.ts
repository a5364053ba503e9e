// Waiting for a Unix socket that another process is about to create (a domain's control or
// export socket): poll until it exists and accepts, or give up naming what did not appear.
import { existsSync } from 'node:fs';
import { connect, type Socket } from 'node:net';

/** Connects once; resolves null if nothing is listening. */
export function tryConnect(path: string): Promise<Socket | null> {
  if (!existsSync(path)) return Promise.resolve(null);
  return new Promise((resolve) => {
    const c = connect(path);
    c.once('connect', () => resolve(c));
    c.once('error', () => resolve(null));
  });
}

export async function waitForSocket(path: string, ms: number, what = 'socket'): Promise<Socket> {
  const end = Date.now() + ms;
  for (;;) {
    const s = await tryConnect(path);
    if (s) return s;
    if (Date.now() > end) throw new Error(`${what} ${path} did not appear within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
