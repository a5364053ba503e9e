// Xenstore transactions (TRANSACTION_START/END, docs/misc/xenstore.txt): a private overlay on the live
// store that is either written back whole or refused. Conflicts are judged by generation on the nodes
// the transaction touched, so an unrelated change elsewhere in the tree does not force a retry.
import { ownerOf, type NodeData, type Store, type TreeView, type XsNode } from './store.js';
import type { ChangeEvent } from './change.js';
import { XsOpError } from './operror.js';

const ABSENT = -1;

interface Entry {
  // Live generation when the transaction first touched the path (ABSENT if there was no node).
  readonly baseGen: number;
  node: XsNode | undefined;
  dirty: boolean;
}

// Optimistic transaction: every path touched is remembered with the generation it had, reads and writes
// go to a private overlay, and commit succeeds only if none of those paths changed in the live tree.
export class Transaction implements TreeView {
  private readonly entries = new Map<string, Entry>();
  private readonly ownedDelta = new Map<number, number>();
  readonly events: ChangeEvent[] = [];

  constructor(
    readonly id: number,
    private readonly store: Store,
    // Bound on paths touched (XSA-326); undefined for privileged connections.
    private readonly maxNodes: number | undefined,
  ) {}

  get(path: string): XsNode | undefined {
    return this.entry(path).node;
  }

  put(path: string, data: NodeData): void {
    const e = this.entry(path);
    const node: XsNode = { value: data.value, perms: data.perms, children: data.children, gen: this.store.nextGen() };
    this.account(e.node, node);
    e.node = node;
    e.dirty = true;
  }

  remove(path: string): void {
    const e = this.entry(path);
    this.account(e.node, undefined);
    e.node = undefined;
    e.dirty = true;
  }

  owned(domid: number): number {
    return this.store.owned(domid) + (this.ownedDelta.get(domid) ?? 0);
  }

  // Owners whose node count this transaction raises, with the increase.
  growth(): [number, number][] {
    return [...this.ownedDelta].filter(([, d]) => d > 0);
  }

  get touched(): number {
    return this.entries.size;
  }

  conflicts(): boolean {
    for (const [path, e] of this.entries) {
      const live = this.store.get(path);
      if ((live ? live.gen : ABSENT) !== e.baseGen) return true;
    }
    return false;
  }

  // Caller checks conflicts() first. Without conflicts every touched path is as the transaction first
  // saw it, so writing the dirty entries yields a consistent tree (parents' child lists included).
  // A node created and then removed inside the transaction (XSA-421) is just an absent entry here.
  commit(): void {
    for (const [path, e] of this.entries) {
      if (!e.dirty) continue;
      if (e.node) this.store.setNode(path, { ...e.node, gen: this.store.nextGen() });
      else this.store.remove(path);
    }
    this.entries.clear();
  }

  private entry(path: string): Entry {
    let e = this.entries.get(path);
    if (e) return e;
    if (this.maxNodes !== undefined && this.entries.size >= this.maxNodes) {
      throw new XsOpError('ENOSPC', `transaction ${this.id} touches more than ${this.maxNodes} nodes`);
    }
    const live = this.store.get(path);
    e = { baseGen: live ? live.gen : ABSENT, node: live, dirty: false };
    this.entries.set(path, e);
    return e;
  }

  private account(before: NodeData | undefined, after: NodeData | undefined): void {
    if (before) this.bump(ownerOf(before), -1);
    if (after) this.bump(ownerOf(after), +1);
  }

  private bump(domid: number, d: number): void {
    this.ownedDelta.set(domid, (this.ownedDelta.get(domid) ?? 0) + d);
  }
}
