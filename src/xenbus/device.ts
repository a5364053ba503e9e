// One end of a XenBus split device: our own directory in xenstore, the other end's directory
// (taken from our `backend` / `frontend` key, which the toolstack wrote), and the state machine
// both ends walk through. Values read from the other end are hostile: parse, bound, and check.
import { XenbusState, parseXenbusState } from '../abi/xenbus.js';
import { isXenstoreError, type XenstoreClient, type XsOps } from '../xenstore/client.js';

let tokens = 0;
export const watchToken = (what: string) => `ringside-${process.pid}-${++tokens}-${what}`;

export interface XenbusEnd {
  path: string;
  domid: number;
}

export class XenbusError extends Error {}

export class XenbusDevice {
  private unwatchers: (() => Promise<void>)[] = [];

  constructor(
    readonly xs: XenstoreClient,
    readonly path: string,
    readonly other: XenbusEnd,
  ) {}

  /** The backend end of a device at `path` (…/backend/<type>/<frontend-id>/<devid>). */
  static async backend(xs: XenstoreClient, path: string): Promise<XenbusDevice> {
    return new XenbusDevice(xs, path, await readEnd(xs, path, 'frontend'));
  }

  /** The frontend end of a device at `path` (…/device/<type>/<devid>). */
  static async frontend(xs: XenstoreClient, path: string): Promise<XenbusDevice> {
    return new XenbusDevice(xs, path, await readEnd(xs, path, 'backend'));
  }

  read(key: string): Promise<string> {
    return this.xs.read(`${this.path}/${key}`);
  }
  tryRead(key: string): Promise<string | undefined> {
    return this.xs.tryRead(`${this.path}/${key}`);
  }
  readOther(key: string): Promise<string | undefined> {
    return this.xs.tryRead(`${this.other.path}/${key}`);
  }

  /** Reads an unsigned integer the other end wrote; absent -> `dflt`, garbage -> XenbusError. */
  async readOtherUint(key: string, dflt: number | undefined, max: number): Promise<number> {
    const v = await this.readOther(key);
    if (v === undefined) {
      if (dflt === undefined) throw new XenbusError(`${this.other.path}/${key} is missing`);
      return dflt;
    }
    if (!/^\d{1,10}$/.test(v) || Number(v) > max) throw new XenbusError(`${this.other.path}/${key} = ${JSON.stringify(v.slice(0, 32))} is not an integer in 0..${max}`);
    return Number(v);
  }

  /** Writes several keys under our directory atomically. */
  async writeKeys(kv: Record<string, string | number>, extra?: (tx: XsOps) => Promise<void>): Promise<void> {
    await this.xs.transaction(async (tx) => {
      for (const [k, v] of Object.entries(kv)) await tx.write(`${this.path}/${k}`, String(v));
      if (extra) await extra(tx);
    });
  }

  /**
   * Reads every key under the other end's directory (two levels, for queue-N/ subdirectories)
   * into a synchronous lookup, so negotiation code can parse a consistent set of values.
   */
  async snapshotOther(maxNodes = 512): Promise<(key: string) => string | undefined> {
    return snapshot(this.xs, this.other.path, maxNodes);
  }

  async snapshotSelf(maxNodes = 512): Promise<(key: string) => string | undefined> {
    return snapshot(this.xs, this.path, maxNodes);
  }

  async state(): Promise<XenbusState> {
    return parseXenbusState(await this.tryRead('state'));
  }

  async otherState(): Promise<XenbusState> {
    return parseXenbusState(await this.readOther('state'));
  }

  async switchState(s: XenbusState): Promise<void> {
    await this.xs.write(`${this.path}/state`, String(s));
  }

  /** Calls `cb` with the other end's state now and on every change, until close(). */
  async onOtherState(cb: (s: XenbusState) => void): Promise<void> {
    const token = watchToken('otherend');
    const p = `${this.other.path}/state`;
    let last = -1;
    await this.xs.watch(p, token, () => {
      void this.otherState().then((s) => {
        if (s !== last) {
          last = s;
          cb(s);
        }
      }, () => undefined);
    });
    this.unwatchers.push(() => this.xs.unwatch(p, token));
  }

  /** Resolves with the other end's state once `pred` holds; rejects after `timeoutMs`. */
  waitOtherState(pred: (s: XenbusState) => boolean, timeoutMs: number): Promise<XenbusState> {
    return waitState(this.xs, `${this.other.path}/state`, pred, timeoutMs);
  }

  async close(): Promise<void> {
    const u = this.unwatchers;
    this.unwatchers = [];
    for (const f of u) await f().catch(() => undefined);
  }
}

async function readEnd(xs: XenstoreClient, path: string, which: 'frontend' | 'backend'): Promise<XenbusEnd> {
  const p = await xs.tryRead(`${path}/${which}`);
  const id = await xs.tryRead(`${path}/${which}-id`);
  if (!p || !p.startsWith('/local/domain/')) throw new XenbusError(`${path}/${which} is missing or not a /local/domain path`);
  if (id === undefined || !/^\d{1,5}$/.test(id) || Number(id) > 0x7fef) throw new XenbusError(`${path}/${which}-id is missing or not a domain id`);
  return { path: p, domid: Number(id) };
}

async function snapshot(xs: XenstoreClient, dir: string, maxNodes: number): Promise<(key: string) => string | undefined> {
  const values = new Map<string, string>();
  const walk = async (rel: string, depth: number): Promise<void> => {
    let kids: string[];
    try {
      kids = await xs.directory(rel ? `${dir}/${rel}` : dir);
    } catch {
      return;
    }
    for (const k of kids) {
      if (values.size >= maxNodes) throw new XenbusError(`${dir} has more than ${maxNodes} nodes`);
      const key = rel ? `${rel}/${k}` : k;
      const v = await xs.tryRead(`${dir}/${key}`);
      if (v !== undefined) values.set(key, v);
      if (depth < 1) await walk(key, depth + 1);
    }
  };
  await walk('', 0);
  return (key) => values.get(key);
}

/** Waits for the state node at `statePath` to satisfy `pred`. */
export async function waitState(xs: XenstoreClient, statePath: string, pred: (s: XenbusState) => boolean, timeoutMs: number): Promise<XenbusState> {
  const token = watchToken('wait');
  return new Promise<XenbusState>((resolve, reject) => {
    let done = false;
    const finish = (err: Error | null, s?: XenbusState) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      void xs.unwatch(statePath, token).catch(() => undefined);
      if (err) reject(err);
      else resolve(s as XenbusState);
    };
    const timer = setTimeout(() => {
      void xs.tryRead(statePath).then((v) => finish(new XenbusError(`${statePath} still ${XenbusState[parseXenbusState(v)] ?? v} after ${timeoutMs} ms`)), () => finish(new XenbusError(`timed out on ${statePath}`)));
    }, timeoutMs);
    void xs
      .watch(statePath, token, () => {
        void xs.tryRead(statePath).then((v) => {
          const s = parseXenbusState(v);
          if (pred(s)) finish(null, s);
        }, (e: unknown) => (isXenstoreError(e) ? undefined : finish(e as Error)));
      })
      .catch((e: unknown) => finish(e as Error));
  });
}

/**
 * Follows a directory of device directories, `depth` levels deep (backend/vbd/<fe>/<devid> is
 * 2), and reports each leaf as it appears and disappears. Used by driver domains (like xl devd)
 * and frontends to find their devices.
 */
export class DeviceDirWatcher {
  private readonly known = new Set<string>();
  private readonly token = watchToken('devdir');
  private scanning: Promise<void> = Promise.resolve();
  private rescan = false;
  private closed = false;

  constructor(
    private readonly xs: XenstoreClient,
    private readonly base: string,
    private readonly depth: number,
    private readonly onAdd: (path: string) => void,
    private readonly onRemove: (path: string) => void,
  ) {}

  async start(): Promise<void> {
    await this.xs.watch(this.base, this.token, () => this.kick());
  }

  private kick(): void {
    // Coalesce bursts of watch events into one scan at a time (a frontend could flood us).
    if (this.rescan) return;
    this.rescan = true;
    this.scanning = this.scanning.then(async () => {
      this.rescan = false;
      if (!this.closed) await this.scan().catch(() => undefined);
    });
  }

  private async scan(): Promise<void> {
    const found = new Set<string>();
    const walk = async (p: string, level: number): Promise<void> => {
      let kids: string[];
      try {
        kids = await this.xs.directory(p);
      } catch {
        return;
      }
      for (const k of kids.slice(0, 1024)) {
        if (!/^\d{1,10}$/.test(k)) continue;
        if (level + 1 === this.depth) found.add(`${p}/${k}`);
        else await walk(`${p}/${k}`, level + 1);
      }
    };
    await walk(this.base, 0);
    for (const p of found) if (!this.known.has(p)) {
      this.known.add(p);
      this.onAdd(p);
    }
    for (const p of [...this.known]) if (!found.has(p)) {
      this.known.delete(p);
      this.onRemove(p);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.xs.unwatch(this.base, this.token).catch(() => undefined);
  }
}
