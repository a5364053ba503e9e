// The state one xenstored shares across its connections (tree, watches, known domains, permissions of
// the special @ nodes) and the INTRODUCE/RELEASE lifecycle. It is kept apart from message parsing so
// the wire handlers and server.ts's API drive the same code.
import type { Socket } from 'node:net';
import type { XsPerm } from '../../src/xenstore/perms.js';
import { Store } from './store.js';
import { WatchRegistry } from './watches.js';
import { DomainRegistry, type DomainRecord } from './domains.js';
import { Connection, type ConnectionHooks } from './connection.js';
import { revokeDomain } from './permissions.js';
import type { XenstoredQuotas } from './quota.js';

export const SPECIAL_NODES = ['@introduceDomain', '@releaseDomain'] as const;

// All shared server state and the domain lifecycle; request parsing lives in handlers.ts.
export class XenstoredCore {
  readonly store = new Store();
  readonly watches = new WatchRegistry();
  // Special watch paths have permissions of their own: only privileged watchers, or domains dom0 lets
  // read them, learn about other domains coming and going.
  readonly specialPerms = new Map<string, readonly XsPerm[]>(SPECIAL_NODES.map((n) => [n, [{ id: 0, perm: 'n' }]]));
  readonly privilegedConns = new Set<Connection>();
  readonly domains: DomainRegistry;
  private txCounter = 0;

  constructor(
    readonly quotas: XenstoredQuotas,
    readonly log: (msg: string) => void,
    socketDir: string,
    private readonly hooks: ConnectionHooks,
  ) {
    this.domains = new DomainRegistry(socketDir, (s, rec) => this.acceptDomain(s, rec));
  }

  acceptPrivileged(socket: Socket): void {
    const conn = new Connection(socket, 0, true, () => undefined, this.quotas, this.hooks);
    this.privilegedConns.add(conn);
  }

  private acceptDomain(socket: Socket, rec: DomainRecord): void {
    if (!this.domains.isCurrent(rec)) {
      socket.destroy();
      return;
    }
    if (rec.conns.size >= this.quotas.connectionsPerDomain) {
      this.log(`dom${rec.domid}: refused connection: ${this.quotas.connectionsPerDomain} already open`);
      socket.destroy();
      return;
    }
    const conn = new Connection(socket, rec.domid, false, () => rec.target, this.quotas, this.hooks);
    rec.conns.add(conn);
  }

  connectionClosed(conn: Connection): void {
    this.watches.removeAll(conn);
    if (conn.privileged) this.privilegedConns.delete(conn);
    else this.domains.get(conn.domid)?.conns.delete(conn);
  }

  allConnections(): Connection[] {
    return [...this.privilegedConns, ...this.domains.all().flatMap((d) => [...d.conns])];
  }

  // Quotas are per domain, summed over all its connections, so opening more sockets gains nothing.
  domainUsage(domid: number): { watches: number; transactions: number } {
    let watches = 0;
    let transactions = 0;
    for (const c of this.domains.get(domid)?.conns ?? []) {
      watches += this.watches.count(c);
      transactions += c.transactions.size;
    }
    return { watches, transactions };
  }

  allocTxId(conn: Connection): number {
    do {
      this.txCounter = (this.txCounter + 1) >>> 0;
    } while (this.txCounter === 0 || conn.transactions.has(this.txCounter));
    return this.txCounter;
  }

  async introduce(domid: number, mfn: string, port: string): Promise<void> {
    if (await this.domains.introduce(domid, mfn, port)) {
      this.log(`dom${domid}: introduced (socket ${this.domains.socketPath(domid)})`);
      this.fireSpecial('@introduceDomain');
    }
  }

  // Resolves false when the domain was not introduced.
  async release(domid: number): Promise<boolean> {
    const rec = await this.domains.release(domid, (r) => {
      for (const c of [...r.conns]) c.kill('domain released');
    });
    if (!rec) return false;
    this.revokeDomain(domid);
    for (const d of this.domains.all()) if (d.target === domid) d.target = undefined;
    this.log(`dom${domid}: released`);
    this.fireSpecial('@releaseDomain');
    return true;
  }

  private fireSpecial(name: string): void {
    this.watches.fireSpecial(name, this.specialPerms.get(name) ?? [{ id: 0, perm: 'n' }]);
  }

  // XSA-322: a later domain reusing this domid must not inherit its rights. Its permission entries go
  // and dom0 takes over what it owned (the toolstack re-grants on re-introduction if it wants to).
  private revokeDomain(domid: number): void {
    const changes: [string, XsPerm[]][] = [];
    for (const [path, node] of this.store.entries()) {
      const perms = revokeDomain(node.perms, domid);
      if (perms) changes.push([path, perms]);
    }
    for (const [path, perms] of changes) {
      const node = this.store.get(path);
      if (node) this.store.put(path, { value: node.value, perms, children: node.children });
    }
    for (const [name, perms] of this.specialPerms) {
      const next = revokeDomain(perms, domid);
      if (next) this.specialPerms.set(name, next);
    }
    if (changes.length > 0) this.log(`dom${domid}: revoked its permissions on ${changes.length} node(s)`);
  }
}
