// The live xenstore tree: a flat map from absolute path to immutable node, plus per-owner node counts
// kept current so quota checks need not walk the tree. Each write stamps a new generation, which is how
// transactions and DIRECTORY_PART notice that something changed.
import type { XsPerm } from '../../src/xenstore/perms.js';

// Nodes are immutable values: a transaction can hold the exact node it saw without copying, and a
// change always means a new object with a new generation.
export interface NodeData {
  readonly value: Buffer;
  readonly perms: readonly XsPerm[];
  readonly children: readonly string[];
}

export interface XsNode extends NodeData {
  // Global, strictly increasing; equal generations mean "unchanged", which transaction conflict
  // detection and DIRECTORY_PART consistency checks rely on.
  readonly gen: number;
}

// A place nodes can be read from and written to: the live tree or a transaction overlay. Operations are
// written once against this interface.
export interface TreeView {
  get(path: string): XsNode | undefined;
  put(path: string, data: NodeData): void;
  remove(path: string): void;
  // Nodes owned by `domid` as this view sees them (quota accounting).
  owned(domid: number): number;
}

export const ROOT_PERMS: readonly XsPerm[] = Object.freeze([{ id: 0, perm: 'n' }]);

export function ownerOf(node: NodeData): number {
  return node.perms[0].id;
}

export class Store implements TreeView {
  private readonly nodes = new Map<string, XsNode>();
  private readonly ownedCounts = new Map<number, number>();
  private genCounter = 0;

  constructor() {
    this.put('/', { value: Buffer.alloc(0), perms: ROOT_PERMS, children: [] });
  }

  nextGen(): number {
    return ++this.genCounter;
  }

  get size(): number {
    return this.nodes.size;
  }

  get(path: string): XsNode | undefined {
    return this.nodes.get(path);
  }

  put(path: string, data: NodeData): void {
    this.setNode(path, { value: data.value, perms: data.perms, children: data.children, gen: this.nextGen() });
  }

  // Used by transaction commit, which stamps its own generations.
  setNode(path: string, node: XsNode): void {
    const old = this.nodes.get(path);
    if (old) this.count(ownerOf(old), -1);
    this.count(ownerOf(node), +1);
    this.nodes.set(path, node);
  }

  remove(path: string): void {
    const old = this.nodes.get(path);
    if (!old) return;
    this.count(ownerOf(old), -1);
    this.nodes.delete(path);
  }

  owned(domid: number): number {
    return this.ownedCounts.get(domid) ?? 0;
  }

  entries(): IterableIterator<[string, XsNode]> {
    return this.nodes.entries();
  }

  private count(domid: number, delta: number): void {
    const n = (this.ownedCounts.get(domid) ?? 0) + delta;
    if (n === 0) this.ownedCounts.delete(domid);
    else this.ownedCounts.set(domid, n);
  }
}
