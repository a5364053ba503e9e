// The API for starting xenstored, used by main.ts (the xenstored domain) and by the tests: it opens the
// privileged socket, wires each connection to the request handlers, and returns a handle for
// introducing and releasing domains and inspecting the server without speaking the wire protocol.
import type { Server } from 'node:net';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { XenstoredCore } from './core.js';
import { handleMessage } from './handlers.js';
import { closeUnix, listenUnix } from './listen.js';
import { resolveQuotas, type XenstoredQuotas } from './quota.js';
import type { ConnectionHooks, ConnectionInfo } from './connection.js';

export type { XenstoredQuotas } from './quota.js';
export { DEFAULT_QUOTAS } from './quota.js';
export type { ConnectionInfo } from './connection.js';

export interface XenstoredOptions {
  // Every connection here is dom0 and privileged, like real xenstored's Unix socket.
  privilegedSocket: string;
  // Gets one socket per introduced domain: domain-<domid>.sock, mode 0600.
  domainSocketDir: string;
  log?: (msg: string) => void;
  quotas?: Partial<XenstoredQuotas>;
}

export interface XenstoredHandle {
  readonly privilegedSocket: string;
  domainSocketPath(domid: number): string;
  // Same effect as INTRODUCE/RELEASE from dom0, including @introduceDomain/@releaseDomain watches.
  introduce(domid: number, mfn?: number, port?: number): Promise<void>;
  // Resolves false when the domain was not introduced.
  release(domid: number): Promise<boolean>;
  isIntroduced(domid: number): boolean;
  connections(): ConnectionInfo[];
  // Nodes in the store, and nodes owned by a domain (its quota usage).
  nodeCount(domid?: number): number;
  close(): Promise<void>;
}

function defaultLog(msg: string): void {
  process.stderr.write(`xenstored: ${msg}\n`);
}

export async function startXenstored(opts: XenstoredOptions): Promise<XenstoredHandle> {
  const log = opts.log ?? defaultLog;
  const quotas = resolveQuotas(opts.quotas);
  await mkdir(opts.domainSocketDir, { recursive: true, mode: 0o700 });
  await mkdir(dirname(opts.privilegedSocket), { recursive: true, mode: 0o700 });

  // Hooks and core refer to each other; the hooks only run once connections exist.
  let core: XenstoredCore | undefined;
  const hooks: ConnectionHooks = {
    handle: (conn, msg) => handleMessage(core as XenstoredCore, conn, msg),
    closed: (conn) => core?.connectionClosed(conn),
    log,
  };
  const c = new XenstoredCore(quotas, log, opts.domainSocketDir, hooks);
  core = c;
  const privileged: Server = await listenUnix(opts.privilegedSocket, (s) => c.acceptPrivileged(s));
  privileged.on('error', (e) => log(`privileged socket error: ${e.message}`));
  let closing: Promise<void> | undefined;

  return {
    privilegedSocket: opts.privilegedSocket,
    domainSocketPath: (domid) => c.domains.socketPath(domid),
    introduce: async (domid, mfn = 0, port = 0) => {
      if (!Number.isInteger(domid) || domid < 1 || domid > 0x7fef) throw new RangeError(`invalid domid ${domid}`);
      await c.introduce(domid, String(mfn), String(port));
    },
    release: (domid) => c.release(domid),
    isIntroduced: (domid) => c.domains.has(domid),
    connections: () => c.allConnections().map((x) => x.info()),
    nodeCount: (domid) => (domid === undefined ? c.store.size : c.store.owned(domid)),
    close: () => {
      closing ??= (async () => {
        const stopped = closeUnix(privileged, opts.privilegedSocket);
        for (const conn of [...c.privilegedConns]) conn.kill('xenstored shutting down');
        await stopped;
        await Promise.all(c.domains.all().map((d) => c.domains.release(d.domid, (r) => {
          for (const conn of [...r.conns]) conn.kill('xenstored shutting down');
        })));
      })();
      return closing;
    },
  };
}
