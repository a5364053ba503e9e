// Access decisions over xenstore permission lists, following the rules in docs/misc/xenstore.txt. One
// place for them so tree operations, special @nodes and watch filtering all judge access the same way.
import { kindAllowsRead, kindAllowsWrite, type XsPerm } from '../../src/xenstore/perms.js';

// Who is asking. `target` is set by SET_TARGET: a device-model style domain that acts with the rights of
// the domain it serves.
export interface Identity {
  readonly domid: number;
  readonly privileged: boolean;
  readonly target: number | undefined;
}

export interface Access {
  read: boolean;
  write: boolean;
  owner: boolean;
}

const ALL: Access = Object.freeze({ read: true, write: true, owner: true });
const NONE: Access = Object.freeze({ read: false, write: false, owner: false });

function matches(who: Identity, id: number): boolean {
  return id === who.domid || (who.target !== undefined && id === who.target);
}

// Xen's rule: privileged or owner -> everything; else the first matching entry after the owner's;
// else the owner entry's letter as the default.
export function accessFor(who: Identity, perms: readonly XsPerm[]): Access {
  if (who.privileged) return ALL;
  if (perms.length === 0) return NONE;
  if (matches(who, perms[0].id)) return ALL;
  let kind = perms[0].perm;
  for (let i = 1; i < perms.length; i++) {
    if (matches(who, perms[i].id)) {
      kind = perms[i].perm;
      break;
    }
  }
  return { read: kindAllowsRead(kind), write: kindAllowsWrite(kind), owner: false };
}

export function canRead(who: Identity, perms: readonly XsPerm[]): boolean {
  return accessFor(who, perms).read;
}

export function canWrite(who: Identity, perms: readonly XsPerm[]): boolean {
  return accessFor(who, perms).write;
}

export function isOwner(who: Identity, perms: readonly XsPerm[]): boolean {
  return accessFor(who, perms).owner;
}

// XSA-322: rights granted to a domid must not pass to the next domain that gets the same id. Drops the
// domain's entries and hands its ownership to dom0; returns undefined when nothing changes.
export function revokeDomain(perms: readonly XsPerm[], domid: number): XsPerm[] | undefined {
  if (!perms.some((p) => p.id === domid)) return undefined;
  const owner = perms[0].id === domid ? { id: 0, perm: perms[0].perm } : perms[0];
  return [owner, ...perms.slice(1).filter((p) => p.id !== domid)];
}
