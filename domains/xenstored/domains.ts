// The domains xenstored has been introduced to. Instead of mapping a domain's ring page as Xen does (the
// mfn and port are only recorded), each domain gets its own Unix socket, and whoever connects there
// speaks as that domain.
import type { Server, Socket } from 'node:net';
import { join } from 'node:path';
import { closeUnix, listenUnix } from './listen.js';
import type { Connection } from './connection.js';

export interface DomainRecord {
  readonly domid: number;
  readonly mfn: string;
  readonly port: string;
  readonly socketPath: string;
  readonly conns: Set<Connection>;
  target: number | undefined;
  listener: Server | undefined;
}

// Domains xenstored knows about. Identity is the socket: each introduced domain gets its own listening
// socket and everything accepted there speaks as that domain.
export class DomainRegistry {
  private readonly domains = new Map<number, DomainRecord>();
  // Serialises introduce/release per domid; they await socket setup and teardown.
  private readonly busy = new Map<number, Promise<unknown>>();

  constructor(
    private readonly socketDir: string,
    private readonly accept: (socket: Socket, domain: DomainRecord) => void,
  ) {}

  socketPath(domid: number): string {
    return join(this.socketDir, `domain-${domid}.sock`);
  }

  get(domid: number): DomainRecord | undefined {
    return this.domains.get(domid);
  }

  has(domid: number): boolean {
    return this.domains.has(domid);
  }

  all(): DomainRecord[] {
    return [...this.domains.values()];
  }

  // Resolves true when the domain is new (callers fire @introduceDomain only then).
  introduce(domid: number, mfn: string, port: string): Promise<boolean> {
    return this.serial(domid, async () => {
      if (this.domains.has(domid)) return false;
      const rec: DomainRecord = {
        domid,
        mfn,
        port,
        socketPath: this.socketPath(domid),
        conns: new Set(),
        target: undefined,
        listener: undefined,
      };
      rec.listener = await listenUnix(rec.socketPath, (s) => this.accept(s, rec));
      this.domains.set(domid, rec);
      return true;
    });
  }

  // Forgets the domain; `drop` tears its live connections down (with their watches and transactions)
  // before the listener is closed, since a net.Server only finishes closing once its sockets are gone.
  release(domid: number, drop: (rec: DomainRecord) => void): Promise<DomainRecord | undefined> {
    return this.serial(domid, async () => {
      const rec = this.domains.get(domid);
      if (!rec) return undefined;
      this.domains.delete(domid);
      const listener = rec.listener;
      rec.listener = undefined;
      drop(rec);
      if (listener) await closeUnix(listener, rec.socketPath);
      return rec;
    });
  }

  isCurrent(rec: DomainRecord): boolean {
    return this.domains.get(rec.domid) === rec;
  }

  private serial<T>(domid: number, fn: () => Promise<T>): Promise<T> {
    const prev = this.busy.get(domid) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    this.busy.set(domid, settled);
    void settled.then(() => {
      if (this.busy.get(domid) === settled) this.busy.delete(domid);
    });
    return run;
  }
}
