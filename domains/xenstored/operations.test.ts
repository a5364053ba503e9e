import { describe, expect, it } from 'vitest';
import { Store } from './store.js';
import { DEFAULT_QUOTAS, type XenstoredQuotas } from './quota.js';
import { accessFor, revokeDomain, type Identity } from './permissions.js';
import type { ChangeEvent } from './change.js';
import { opDirectory, opDirectoryPart, opGetPerms, opMkdir, opRead, opRm, opSetPerms, opWrite, type OpContext } from './operations.js';
import { parsePermList } from '../../src/xenstore/perms.js';
import { Transaction } from './transaction.js';
import type { TreeView } from './store.js';

const dom0: Identity = { domid: 0, privileged: true, target: undefined };
const dom = (domid: number, target?: number): Identity => ({ domid, privileged: false, target });

function ctx(view: TreeView, who: Identity, events: ChangeEvent[] = [], quotas: Partial<XenstoredQuotas> = {}): OpContext {
  return { view, who, quotas: { ...DEFAULT_QUOTAS, ...quotas }, emit: (e) => events.push(e) };
}

function code(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (e) {
    return (e as { code?: string }).code;
  }
}

describe('permission rule', () => {
  const perms = parsePermList('r5,w6,n7,b8');
  it('gives privileged domains and the owner everything', () => {
    expect(accessFor(dom0, perms)).toEqual({ read: true, write: true, owner: true });
    expect(accessFor(dom(5), perms)).toEqual({ read: true, write: true, owner: true });
  });
  it('uses the first matching entry after the owner, else entry 0', () => {
    expect(accessFor(dom(6), perms)).toMatchObject({ read: false, write: true, owner: false });
    expect(accessFor(dom(7), perms)).toMatchObject({ read: false, write: false });
    expect(accessFor(dom(8), perms)).toMatchObject({ read: true, write: true, owner: false });
    expect(accessFor(dom(9), perms)).toMatchObject({ read: true, write: false });
    expect(accessFor(dom(9), parsePermList('n0,r9,n9'))).toMatchObject({ read: true });
  });
  it('lets a SET_TARGET domain act for its target', () => {
    expect(accessFor(dom(20, 5), perms).owner).toBe(true);
    expect(accessFor(dom(20, 6), perms)).toMatchObject({ write: true, owner: false });
  });
  it('revokes a released domain (XSA-322)', () => {
    expect(revokeDomain(parsePermList('n5,r6,b5'), 5)).toEqual(parsePermList('n0,r6'));
    expect(revokeDomain(parsePermList('n0,r6'), 5)).toBeUndefined();
  });
});

describe('tree operations', () => {
  it('creates missing parents on write and mkdir, inheriting perms', () => {
    const s = new Store();
    opWrite(ctx(s, dom0), '/a', Buffer.from(''));
    opSetPerms(ctx(s, dom0), '/a', parsePermList('n0,r5'));
    opWrite(ctx(s, dom0), '/a/b/c', Buffer.from('v'));
    expect(opRead(ctx(s, dom0), '/a/b')).toEqual(Buffer.alloc(0));
    expect(opGetPerms(ctx(s, dom0), '/a/b/c')).toEqual(parsePermList('n0,r5'));
    opMkdir(ctx(s, dom0), '/m/n');
    expect(opDirectory(ctx(s, dom0), '/').toString()).toBe('a\0m\0');
  });

  it('makes an unprivileged creator the owner and needs write on the nearest existing ancestor', () => {
    const s = new Store();
    opWrite(ctx(s, dom0), '/local/domain/5', Buffer.from(''));
    opSetPerms(ctx(s, dom0), '/local/domain/5', parsePermList('n0,r5'));
    expect(code(() => opWrite(ctx(s, dom(5)), '/local/domain/5/x', Buffer.from('1')))).toBe('EACCES');
    opSetPerms(ctx(s, dom0), '/local/domain/5', parsePermList('n0,b5,r6'));
    opWrite(ctx(s, dom(5)), '/local/domain/5/x/y', Buffer.from('1'));
    expect(opGetPerms(ctx(s, dom0), '/local/domain/5/x/y')).toEqual(parsePermList('n5,b5,r6'));
    expect(s.owned(5)).toBe(2);
    expect(opRead(ctx(s, dom(6)), '/local/domain/5/x/y').toString()).toBe('1');
    expect(code(() => opWrite(ctx(s, dom(6)), '/local/domain/5/x/y', Buffer.from('2')))).toBe('EACCES');
  });

  it('says ENOENT only to those who may read the nearest ancestor', () => {
    const s = new Store();
    opMkdir(ctx(s, dom0), '/secret');
    opMkdir(ctx(s, dom0), '/open');
    opSetPerms(ctx(s, dom0), '/open', parsePermList('n0,r5'));
    expect(code(() => opRead(ctx(s, dom(5)), '/secret/x'))).toBe('EACCES');
    expect(code(() => opRead(ctx(s, dom(5)), '/open/x/y'))).toBe('ENOENT');
    expect(code(() => opRead(ctx(s, dom(5)), '/secret'))).toBe('EACCES');
  });

  it('removes subtrees, tolerates a missing child of an existing node, refuses /', () => {
    const s = new Store();
    const ev: ChangeEvent[] = [];
    opWrite(ctx(s, dom0), '/a/b/c', Buffer.from('1'));
    opWrite(ctx(s, dom0), '/a/d', Buffer.from('2'));
    opRm(ctx(s, dom0, ev), '/a');
    expect(s.get('/a/b/c')).toBeUndefined();
    expect(s.size).toBe(1);
    expect(ev.map((e) => [e.path, e.exact])).toEqual(
      expect.arrayContaining([['/a/b/c', true], ['/a/b', true], ['/a/d', true], ['/a', false]]),
    );
    expect(ev.at(-1)?.path).toBe('/a');
    expect(code(() => opRm(ctx(s, dom0), '/a'))).toBeUndefined();
    expect(code(() => opRm(ctx(s, dom0), '/x/y'))).toBe('ENOENT');
    expect(code(() => opRm(ctx(s, dom0), '/'))).toBe('EINVAL');
  });

  it('enforces owner-only SET_PERMS, no owner change and the perms quota for domains', () => {
    const s = new Store();
    opWrite(ctx(s, dom0), '/d', Buffer.from(''));
    opSetPerms(ctx(s, dom0), '/d', parsePermList('n5,w6'));
    expect(code(() => opSetPerms(ctx(s, dom(6)), '/d', parsePermList('n5')))).toBe('EACCES');
    expect(code(() => opSetPerms(ctx(s, dom(5)), '/d', parsePermList('n6')))).toBe('EPERM');
    expect(code(() => opSetPerms(ctx(s, dom(5)), '/d', parsePermList('n5,r1,r2,r3,r4,r6')))).toBe('ENOSPC');
    opSetPerms(ctx(s, dom(5)), '/d', parsePermList('n5,r1,r2,r3,r4'));
    expect(s.owned(5)).toBe(1);
  });

  it('enforces node and entry-size quotas on unprivileged domains only', () => {
    const s = new Store();
    opWrite(ctx(s, dom0), '/q', Buffer.from(''));
    opSetPerms(ctx(s, dom0), '/q', parsePermList('n0,b5'));
    const small = { nodesPerDomain: 3, entrySize: 8 };
    opWrite(ctx(s, dom(5), [], small), '/q/a/b', Buffer.from('12345678'));
    expect(code(() => opWrite(ctx(s, dom(5), [], small), '/q/c/d', Buffer.from('')))).toBe('ENOSPC');
    opWrite(ctx(s, dom(5), [], small), '/q/c', Buffer.from(''));
    expect(code(() => opWrite(ctx(s, dom(5), [], small), '/q/a', Buffer.from('123456789')))).toBe('E2BIG');
    opWrite(ctx(s, dom0, [], small), '/q/a/x/y/z', Buffer.from('123456789'));
  });

  it('pages long directories with a generation and an end marker', () => {
    const s = new Store();
    for (let i = 0; i < 300; i++) opWrite(ctx(s, dom0), `/big/child-number-${i}`, Buffer.from(''));
    expect(code(() => opDirectory(ctx(s, dom0), '/big'))).toBe('E2BIG');
    const names: string[] = [];
    let offset = 0;
    const gens = new Set<string>();
    for (;;) {
      const part = opDirectoryPart(ctx(s, dom0), '/big', offset);
      expect(part.length).toBeLessThanOrEqual(4096);
      const list = part.toString('latin1').split('\0');
      gens.add(list[0]);
      const chunk = list.slice(1, -1);
      const done = chunk.at(-1) === '';
      for (const n of chunk) if (n !== '') names.push(n);
      offset += chunk.filter((n) => n !== '').reduce((a, n) => a + n.length + 1, 0);
      if (done) break;
    }
    expect(names).toHaveLength(300);
    expect(gens.size).toBe(1);
    expect(opDirectoryPart(ctx(s, dom0), '/big', 1e6).toString('latin1')).toMatch(/^\d+\0\0$/);
  });
});

describe('transactions', () => {
  it('detects conflicts on anything read or written', () => {
    const s = new Store();
    opWrite(ctx(s, dom0), '/a', Buffer.from('1'));
    const t = new Transaction(1, s, undefined);
    opRead(ctx(t, dom0), '/a');
    expect(t.conflicts()).toBe(false);
    opWrite(ctx(s, dom0), '/a', Buffer.from('2'));
    expect(t.conflicts()).toBe(true);

    const t2 = new Transaction(2, s, undefined);
    expect(code(() => opRead(ctx(t2, dom0), '/nope'))).toBe('ENOENT');
    opWrite(ctx(s, dom0), '/nope', Buffer.from(''));
    expect(t2.conflicts()).toBe(true);
  });

  it('commits creation followed by deletion of the same node as nothing (XSA-421)', () => {
    const s = new Store();
    opWrite(ctx(s, dom0), '/q', Buffer.from(''));
    opSetPerms(ctx(s, dom0), '/q', parsePermList('n0,b5'));
    const before = s.size;
    const t = new Transaction(3, s, 1024);
    for (let i = 0; i < 50; i++) {
      opWrite(ctx(t, dom(5), [], { nodesPerDomain: 10 }), `/q/n${i}/deep`, Buffer.from('x'));
      opRm(ctx(t, dom(5), [], { nodesPerDomain: 10 }), `/q/n${i}`);
    }
    expect(t.owned(5)).toBe(0);
    expect(t.conflicts()).toBe(false);
    t.commit();
    expect(s.size).toBe(before);
    expect(s.owned(5)).toBe(0);
    expect(opDirectory(ctx(s, dom0), '/q').length).toBe(0);
  });

  it('bounds the nodes one transaction may touch', () => {
    const s = new Store();
    const t = new Transaction(4, s, 5);
    expect(code(() => opWrite(ctx(t, dom0), '/a/b/c/d/e/f', Buffer.from('')))).toBe('ENOSPC');
  });
});
