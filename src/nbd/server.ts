// An NBD server on a Unix socket, serving VirtualDisks (blkfront in a guest, anything else in
// tests). Several clients at once; each is its own NbdConnection.
import { createServer, type Server } from 'node:net';
import { existsSync, unlinkSync, lstatSync } from 'node:fs';
import type { VirtualDisk } from '../blkif/disk.js';
import { BufferPool } from './buffers.js';
import { NbdConnection, type NbdExport } from './connection.js';

export interface NbdServerOptions {
  /** Unix socket path; a stale socket file there is replaced, anything else is an error */
  socketPath: string;
  /** the first export is also the default (empty name) */
  exports: NbdExport[];
  log?: (line: string) => void;
  maxConnections?: number;
}

export class NbdServer {
  private readonly conns = new Set<NbdConnection>();
  private nextId = 1;

  private constructor(
    private readonly server: Server,
    readonly socketPath: string,
  ) {}

  static async start(opts: NbdServerOptions): Promise<NbdServer> {
    if (opts.exports.length === 0) throw new Error('nbd: nothing to export');
    if (existsSync(opts.socketPath)) {
      if (!lstatSync(opts.socketPath).isSocket()) throw new Error(`nbd: ${opts.socketPath} exists and is not a socket`);
      unlinkSync(opts.socketPath);
    }
    const log = opts.log ?? (() => undefined);
    const ctx = { exports: opts.exports, pool: new BufferPool(), log, rmwLock: new Map<VirtualDisk, Promise<void>>() };
    const max = opts.maxConnections ?? 64;
    let self: NbdServer | null = null;
    const server = createServer((sock) => {
      const s = self!;
      if (s.conns.size >= max) {
        log(`nbd: refusing a connection: ${max} clients already connected`);
        sock.destroy();
        return;
      }
      const c = new NbdConnection(s.nextId++, sock, ctx);
      s.conns.add(c);
      sock.on('close', () => s.conns.delete(c));
    });
    self = new NbdServer(server, opts.socketPath);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return self;
  }

  get connections(): number {
    return this.conns.size;
  }

  /** Stops listening, hangs up on every client and removes the socket file. */
  async close(): Promise<void> {
    for (const c of this.conns) c.drop(null);
    this.conns.clear();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    if (existsSync(this.socketPath)) {
      try {
        unlinkSync(this.socketPath);
      } catch {
        // already gone
      }
    }
  }
}

export type { NbdExport };
