// Unix listening sockets for xenstored. Connecting to one of these sockets grants an identity (dom0 or
// an introduced domain), so they are made owner-only (umask at bind, then chmod), and a path holding
// anything other than a socket is never removed to make room.
import { createServer, type Server, type Socket } from 'node:net';
import { chmod, lstat, unlink } from 'node:fs/promises';

async function removeStaleSocket(path: string): Promise<void> {
  try {
    const st = await lstat(path);
    // Only ever remove a socket: a mistyped path must not delete someone's file.
    if (!st.isSocket()) throw new Error(`${path} exists and is not a socket; refusing to replace it`);
    await unlink(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

// The socket is the credential (whoever can connect acts as that domain), so it must never be
// reachable by other users, not even for the instant between bind() and chmod().
function withPrivateUmask<T>(fn: () => T): T {
  let old: number | undefined;
  try {
    old = process.umask(0o177);
  } catch {
    old = undefined; // worker threads cannot change the umask; the chmod below still applies
  }
  try {
    return fn();
  } finally {
    if (old !== undefined) process.umask(old);
  }
}

export async function listenUnix(path: string, onConnection: (s: Socket) => void): Promise<Server> {
  await removeStaleSocket(path);
  const server = createServer(onConnection);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    withPrivateUmask(() => server.listen(path, () => {
      server.off('error', reject);
      resolve();
    }));
  });
  await chmod(path, 0o600);
  return server;
}

export async function closeUnix(server: Server, path: string): Promise<void> {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  try {
    await unlink(path);
  } catch {
    // already gone (net.Server removes its own socket file on close)
  }
}
