// What each tree request does to the nodes. Kept free of the wire and written against TreeView, so the
// same rules apply to the live store and to a transaction's overlay.
import { baseName, childPath, joinStrings, parentPath, PAYLOAD_MAX } from '../../src/xenstore/wire.js';
import type { XsPerm } from '../../src/xenstore/perms.js';
import { accessFor, canRead, canWrite, type Identity } from './permissions.js';
import type { NodeData, TreeView, XsNode } from './store.js';
import type { ChangeEvent } from './change.js';
import type { XenstoredQuotas } from './quota.js';
import { XsOpError } from './operror.js';

// Tree operations with Xen's permission, creation and quota rules, independent of where the nodes live
// (live tree or transaction) and of the wire.
export interface OpContext {
  readonly view: TreeView;
  readonly who: Identity;
  readonly quotas: XenstoredQuotas;
  emit(ev: ChangeEvent): void;
}

const EMPTY = Buffer.alloc(0);

// For a missing node, say ENOENT only to someone who could have seen that it is missing: the nearest
// existing ancestor must be readable, otherwise EACCES (no probing of hidden subtrees).
function missingError(ctx: OpContext, path: string): XsOpError {
  for (let p = parentPath(path); p !== undefined; p = parentPath(p)) {
    const n = ctx.view.get(p);
    if (n) return new XsOpError(canRead(ctx.who, n.perms) ? 'ENOENT' : 'EACCES');
  }
  return new XsOpError('ENOENT');
}

function need(ctx: OpContext, path: string, what: 'read' | 'write' | 'owner'): XsNode {
  const node = ctx.view.get(path);
  if (!node) throw missingError(ctx, path);
  if (!accessFor(ctx.who, node.perms)[what]) throw new XsOpError('EACCES');
  return node;
}

function checkEntrySize(ctx: OpContext, value: Buffer): void {
  if (!ctx.who.privileged && value.length > ctx.quotas.entrySize) {
    throw new XsOpError('E2BIG', `value of ${value.length} bytes exceeds the ${ctx.quotas.entrySize}-byte entry quota`);
  }
}

// New nodes copy their parent's permissions; a node made by an unprivileged domain is owned by it (and
// counts against its quota), as in Xen.
function inheritPerms(who: Identity, parent: readonly XsPerm[]): XsPerm[] {
  const perms = parent.map((p) => ({ ...p }));
  if (!who.privileged) perms[0] = { id: who.domid, perm: perms[0].perm };
  return perms;
}

// Creates `path` and any missing ancestors; the nearest existing ancestor must be writable since its
// child list changes.
function create(ctx: OpContext, path: string, value: Buffer): void {
  const missing: string[] = [path];
  let top = parentPath(path);
  let anchor: XsNode | undefined;
  while (top !== undefined && !(anchor = ctx.view.get(top))) {
    missing.push(top);
    top = parentPath(top);
  }
  if (top === undefined || !anchor) throw new XsOpError('ENOENT');
  if (!canWrite(ctx.who, anchor.perms)) throw new XsOpError('EACCES');
  const perms = inheritPerms(ctx.who, anchor.perms);
  if (!ctx.who.privileged && ctx.view.owned(perms[0].id) + missing.length > ctx.quotas.nodesPerDomain) {
    throw new XsOpError('ENOSPC', `domain ${ctx.who.domid} would exceed ${ctx.quotas.nodesPerDomain} nodes`);
  }
  let child: string | undefined;
  for (const p of missing) {
    ctx.view.put(p, { value: p === path ? value : EMPTY, perms, children: child === undefined ? [] : [child] });
    child = baseName(p);
  }
  ctx.view.put(top, withChildren(anchor, [...anchor.children, baseName(missing[missing.length - 1])]));
  ctx.emit({ path, perms: [perms], exact: false });
}

function withChildren(node: NodeData, children: readonly string[]): NodeData {
  return { value: node.value, perms: node.perms, children };
}

export function opRead(ctx: OpContext, path: string): Buffer {
  return need(ctx, path, 'read').value;
}

export function opWrite(ctx: OpContext, path: string, value: Buffer): void {
  const node = ctx.view.get(path);
  if (!node) {
    checkEntrySize(ctx, value);
    create(ctx, path, value);
    return;
  }
  if (!canWrite(ctx.who, node.perms)) throw new XsOpError('EACCES');
  checkEntrySize(ctx, value);
  ctx.view.put(path, { value, perms: node.perms, children: node.children });
  ctx.emit({ path, perms: [node.perms], exact: false });
}

export function opMkdir(ctx: OpContext, path: string): void {
  const node = ctx.view.get(path);
  if (node) {
    if (!canWrite(ctx.who, node.perms)) throw new XsOpError('EACCES');
    return;
  }
  create(ctx, path, EMPTY);
}

export function opRm(ctx: OpContext, path: string): void {
  const parent = parentPath(path);
  if (parent === undefined) throw new XsOpError('EINVAL', 'cannot remove /');
  const node = ctx.view.get(path);
  if (!node) {
    const pnode = ctx.view.get(parent);
    if (!pnode) throw missingError(ctx, path);
    if (!canRead(ctx.who, pnode.perms)) throw new XsOpError('EACCES');
    return; // Xen: removing a missing child of an existing node succeeds
  }
  if (!canWrite(ctx.who, node.perms)) throw new XsOpError('EACCES');

  // Post-order without recursion: paths can be ~1500 levels deep.
  const order: [string, XsNode][] = [];
  const stack: [string, XsNode][] = [[path, node]];
  while (stack.length > 0) {
    const item = stack.pop() as [string, XsNode];
    order.push(item);
    for (const c of item[1].children) {
      const cp = childPath(item[0], c);
      const cn = ctx.view.get(cp);
      if (cn) stack.push([cp, cn]);
    }
  }
  for (let i = order.length - 1; i >= 1; i--) {
    const [p, n] = order[i];
    ctx.view.remove(p);
    ctx.emit({ path: p, perms: [n.perms], exact: true });
  }
  ctx.view.remove(path);
  const pnode = ctx.view.get(parent);
  if (pnode) {
    const name = baseName(path);
    ctx.view.put(parent, withChildren(pnode, pnode.children.filter((c) => c !== name)));
  }
  ctx.emit({ path, perms: [node.perms], exact: false });
}

export function opDirectory(ctx: OpContext, path: string): Buffer {
  const payload = joinStrings(need(ctx, path, 'read').children);
  if (payload.length > PAYLOAD_MAX) throw new XsOpError('E2BIG');
  return payload;
}

// Reply: "<gen>\0" then the child list from byte `offset`, as many whole names as fit; a final extra
// NUL marks the end. Clients compare generations across parts to detect a list changing under them.
export function opDirectoryPart(ctx: OpContext, path: string, offset: number): Buffer {
  const node = need(ctx, path, 'read');
  const gen = Buffer.from(`${node.gen}\0`, 'latin1');
  const all = joinStrings(node.children);
  if (offset >= all.length) return Buffer.concat([gen, Buffer.from([0])]);
  const rest = all.subarray(offset);
  const room = PAYLOAD_MAX - gen.length - 1;
  let len = 0;
  while (len < rest.length) {
    const next = rest.indexOf(0, len) + 1;
    if (next > room) break;
    len = next;
  }
  if (len === 0) throw new XsOpError('E2BIG');
  const parts = [gen, rest.subarray(0, len)];
  if (len === rest.length) parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

export function opGetPerms(ctx: OpContext, path: string): readonly XsPerm[] {
  return need(ctx, path, 'read').perms;
}

export function checkNewPerms(ctx: OpContext, current: readonly XsPerm[], perms: readonly XsPerm[]): void {
  if (ctx.who.privileged) return;
  if (perms[0].id !== current[0].id) throw new XsOpError('EPERM', 'unprivileged domains may not change the owner');
  if (perms.length > ctx.quotas.permsPerNode) {
    throw new XsOpError('ENOSPC', `more than ${ctx.quotas.permsPerNode} permission entries`);
  }
}

export function opSetPerms(ctx: OpContext, path: string, perms: readonly XsPerm[]): void {
  const node = need(ctx, path, 'owner');
  checkNewPerms(ctx, node.perms, perms);
  ctx.view.put(path, { value: node.value, perms, children: node.children });
  ctx.emit({ path, perms: [node.perms, perms], exact: false });
}
