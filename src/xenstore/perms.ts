// Xenstore permission entries: a letter (n none, r read, w write, b both) followed by a domid. The
// first entry names the owner and doubles as the default for domains not listed after it.

export type XsPermKind = 'n' | 'r' | 'w' | 'b';

export interface XsPerm {
  id: number;
  perm: XsPermKind;
}

export const DOMID_MAX = 0xffff;

const PERM_RE = /^([nrwb])([0-9]{1,5})$/;

export function parsePerm(s: string): XsPerm | null {
  const m = PERM_RE.exec(s);
  if (!m) return null;
  const id = Number(m[2]);
  if (id > DOMID_MAX) return null;
  return { id, perm: m[1] as XsPermKind };
}

export function formatPerm(p: XsPerm): string {
  return `${p.perm}${p.id}`;
}

// Accepts the list forms people write by hand ("n0,r5" or "n0 r5"); throws on any bad entry so a typo
// never silently widens access.
export function parsePermList(s: string): XsPerm[] {
  const parts = s.split(/[,\s]+/).filter((x) => x.length > 0);
  if (parts.length === 0) throw new Error('empty permission list');
  return parts.map((part) => {
    const p = parsePerm(part);
    if (!p) throw new Error(`invalid permission entry '${part}' (expected n|r|w|b followed by a domid)`);
    return p;
  });
}

export function formatPermList(perms: readonly XsPerm[], sep = ','): string {
  return perms.map(formatPerm).join(sep);
}

export function kindAllowsRead(k: XsPermKind): boolean {
  return k === 'r' || k === 'b';
}

export function kindAllowsWrite(k: XsPermKind): boolean {
  return k === 'w' || k === 'b';
}

export function samePerms(a: readonly XsPerm[], b: readonly XsPerm[]): boolean {
  return a.length === b.length && a.every((p, i) => p.id === b[i].id && p.perm === b[i].perm);
}
