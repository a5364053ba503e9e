// Watch registration and event delivery (WATCH/WATCH_EVENT, docs/misc/xenstore.txt). A change fires the
// watches on its path and on every ancestor, but only for watchers allowed to read the node (XSA-115),
// so a watch cannot reveal changes to nodes its owner may not see.
import { parentPath, relativeTo } from '../../src/xenstore/wire.js';
import type { XsPerm } from '../../src/xenstore/perms.js';
import { canRead, type Identity } from './permissions.js';
import type { ChangeEvent } from './change.js';

// The connection side of a watch: who it is (for XSA-115 filtering) and how to deliver.
export interface WatchSink {
  readonly identity: Identity;
  sendWatchEvent(path: string, token: string): void;
}

export interface Watch {
  readonly sink: WatchSink;
  // Absolute path or @special name.
  readonly path: string;
  readonly token: string;
  // Registered relative to the domain's home: events are reported relative too.
  readonly relative: boolean;
  readonly home: number;
}

// Watches indexed by path so a change looks up only its own path and its ancestors.
export class WatchRegistry {
  private readonly byPath = new Map<string, Set<Watch>>();
  private readonly bySink = new Map<WatchSink, Watch[]>();

  add(sink: WatchSink, path: string, token: string, relative: boolean): Watch | undefined {
    const mine = this.bySink.get(sink) ?? [];
    if (mine.some((w) => w.path === path && w.token === token)) return undefined;
    const w: Watch = { sink, path, token, relative, home: sink.identity.domid };
    mine.push(w);
    this.bySink.set(sink, mine);
    let set = this.byPath.get(path);
    if (!set) this.byPath.set(path, (set = new Set()));
    set.add(w);
    return w;
  }

  remove(sink: WatchSink, path: string, token: string): boolean {
    const mine = this.bySink.get(sink);
    const i = mine ? mine.findIndex((w) => w.path === path && w.token === token) : -1;
    if (!mine || i < 0) return false;
    this.unindex(mine[i]);
    mine.splice(i, 1);
    if (mine.length === 0) this.bySink.delete(sink);
    return true;
  }

  removeAll(sink: WatchSink): number {
    const mine = this.bySink.get(sink);
    if (!mine) return 0;
    for (const w of mine) this.unindex(w);
    this.bySink.delete(sink);
    return mine.length;
  }

  count(sink: WatchSink): number {
    return this.bySink.get(sink)?.length ?? 0;
  }

  // The path the watcher sees: relative watches get relative paths back.
  static reportedPath(w: Watch, abs: string): string {
    return w.relative ? relativeTo(abs, w.home) : abs;
  }

  fire(ev: ChangeEvent): void {
    if (ev.exact) {
      this.deliver(this.byPath.get(ev.path), ev.path, ev.perms);
      return;
    }
    for (let p: string | undefined = ev.path; p !== undefined; p = parentPath(p)) {
      this.deliver(this.byPath.get(p), ev.path, ev.perms);
    }
  }

  fireSpecial(name: string, perms: readonly XsPerm[]): void {
    this.deliver(this.byPath.get(name), name, [perms]);
  }

  private deliver(set: Set<Watch> | undefined, abs: string, perms: readonly (readonly XsPerm[])[]): void {
    if (!set) return;
    // Copy: a delivery may tear down a connection and with it its watches.
    for (const w of [...set]) {
      // XSA-115: a watch must not reveal changes to nodes its owner cannot read.
      if (!perms.some((ps) => canRead(w.sink.identity, ps))) continue;
      w.sink.sendWatchEvent(WatchRegistry.reportedPath(w, abs), w.token);
    }
  }

  private unindex(w: Watch): void {
    const set = this.byPath.get(w.path);
    if (!set) return;
    set.delete(w);
    if (set.size === 0) this.byPath.delete(w.path);
  }
}
