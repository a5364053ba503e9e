import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { stat } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { RawConn, startTestServer, type TestServer } from './testkit.js';
import { waitFor } from '../../src/testing/until.js';
import { encodeMessage, XsType } from '../../src/xenstore/wire.js';
import type { XenstoreClient } from '../../src/xenstore/client.js';

let t: TestServer;
beforeEach(async () => {
  t = await startTestServer();
});
afterEach(async () => {
  await t.close();
});

const codeOf = (p: Promise<unknown>): Promise<string | undefined> =>
  p.then(
    () => undefined,
    (e: unknown) => (e as { code?: string }).code,
  );

function recorder(): { events: string[]; cb: (path: string) => void } {
  const events: string[] = [];
  return { events, cb: (path) => events.push(path) };
}

// dom0 sets up a guest home the way libxl does: /local/domain/N is n0,rN with a writable data dir.
async function guestHome(c: XenstoreClient, domid: number): Promise<void> {
  await c.mkdir(`/local/domain/${domid}`);
  await c.setPerms(`/local/domain/${domid}`, `n0,r${domid}`);
  await c.mkdir(`/local/domain/${domid}/data`);
  await c.setPerms(`/local/domain/${domid}/data`, `n${domid}`);
}

describe('basic operations over the privileged socket', () => {
  it('reads, writes, lists, removes', async () => {
    const c = await t.priv();
    await c.write('/a/b/c', 'hello');
    expect(await c.read('/a/b/c')).toBe('hello');
    expect(await c.read('/a/b')).toBe('');
    expect(await c.directory('/a')).toEqual(['b']);
    await c.write('/a/b/d', Buffer.from([0, 1, 2, 255]));
    expect(await c.readBuffer('/a/b/d')).toEqual(Buffer.from([0, 1, 2, 255]));
    expect(await c.getPerms('/a/b/c')).toEqual([{ id: 0, perm: 'n' }]);
    await c.rm('/a/b/nothing');
    expect(await codeOf(c.rm('/a/x/y'))).toBe('ENOENT');
    expect(await codeOf(c.rm('/'))).toBe('EINVAL');
    expect(await codeOf(c.read('/nope'))).toBe('ENOENT');
    await c.rm('/a');
    expect(await c.exists('/a/b/c')).toBe(false);
    expect(await c.getDomainPath(7)).toBe('/local/domain/7');
    expect(await c.isDomainIntroduced(0)).toBe(true);
    expect(await c.isDomainIntroduced(7)).toBe(false);
    expect(await c.read('rel/x').catch(() => 'none')).toBe('none');
    await c.write('rel/x', '1');
    expect(await c.read('/local/domain/0/rel/x')).toBe('1');
  });

  it('pages directories longer than one message with DIRECTORY_PART', async () => {
    const c = await t.priv();
    const names = Array.from({ length: 500 }, (_, i) => `entry-with-a-long-name-${i}`);
    await c.transaction(async (tx) => {
      for (const n of names) await tx.write(`/big/${n}`, '');
    });
    expect(await c.directory('/big')).toEqual(names);
  });
});

describe('domains', () => {
  it('introduces a domain with its own 0600 socket and fires @introduceDomain/@releaseDomain', async () => {
    const c = await t.priv();
    const intro = recorder();
    const rel = recorder();
    await c.watch('@introduceDomain', 'i', intro.cb);
    await c.watch('@releaseDomain', 'r', rel.cb);
    await c.introduce(5, 1234, 7);
    const st = await stat(t.h.domainSocketPath(5));
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
    expect(await c.isDomainIntroduced(5)).toBe(true);
    const d = await t.dom(5);
    expect(await d.getDomainPath(5)).toBe('/local/domain/5');
    await waitFor(() => intro.events.length === 2);
    expect(await codeOf(d.introduce(6))).toBe('EACCES');
    expect(await codeOf(d.release(5))).toBe('EACCES');
    await c.release(5);
    await d.closed;
    await waitFor(() => rel.events.length === 2);
    expect(existsSync(t.h.domainSocketPath(5))).toBe(false);
    expect(await codeOf(c.release(5))).toBe('ENOENT');
    expect(await c.isDomainIntroduced(5)).toBe(false);
  });

  it('treats a domain socket connection as that unprivileged domain', async () => {
    const c = await t.priv();
    await t.h.introduce(5);
    await guestHome(c, 5);
    await c.write('/local/domain/5/name', 'guest5');
    await c.write('/secret', 'x');
    const d = await t.dom(5);
    expect(await d.read('name')).toBe('guest5');
    expect(await codeOf(d.read('/secret'))).toBe('EACCES');
    expect(await codeOf(d.write('name', 'evil'))).toBe('EACCES');
    expect(await codeOf(d.write('new', 'x'))).toBe('EACCES');
    await d.write('data/x/y', 'mine');
    expect(await c.getPerms('/local/domain/5/data/x/y')).toEqual([{ id: 5, perm: 'n' }]);
    expect(await codeOf(d.setPerms('data/x', 'n6'))).toBe('EPERM');
    await d.setPerms('data/x', 'n5,r6');
    // The nearest existing ancestor (/local/domain) is unreadable, so not even absence is revealed.
    expect(await codeOf(d.read('/local/domain/6/anything'))).toBe('EACCES');
  });

  it('revokes a released domain\'s rights so a reused domid gets nothing (XSA-322)', async () => {
    const c = await t.priv();
    await t.h.introduce(5);
    await guestHome(c, 5);
    await c.write('/shared', 'v');
    await c.setPerms('/shared', 'n0,r5');
    const d = await t.dom(5);
    expect(await d.read('/shared')).toBe('v');
    await d.write('data/own', '1');
    await t.h.release(5);
    expect(await c.getPerms('/shared')).toEqual([{ id: 0, perm: 'n' }]);
    expect(await c.getPerms('/local/domain/5/data/own')).toEqual([{ id: 0, perm: 'n' }]);
    expect(t.h.nodeCount(5)).toBe(0);
    await t.h.introduce(5);
    const d2 = await t.dom(5);
    expect(await codeOf(d2.read('/shared'))).toBe('EACCES');
  });

  it('lets a SET_TARGET domain act for its target', async () => {
    const c = await t.priv();
    await t.h.introduce(5);
    await t.h.introduce(9);
    await guestHome(c, 5);
    await c.write('/local/domain/5/data/v', 'x');
    const dm = await t.dom(9);
    expect(await codeOf(dm.read('/local/domain/5/data/v'))).toBe('EACCES');
    await c.setTarget(9, 5);
    expect(await dm.read('/local/domain/5/data/v')).toBe('x');
    expect(await codeOf(c.setTarget(9, 77))).toBe('ENOENT');
  });
});

describe('watches', () => {
  it('fires once at registration and then for the node and its descendants', async () => {
    const c = await t.priv();
    const w = recorder();
    await c.watch('/w', 'tok', w.cb);
    await c.write('/w/a/b', '1');
    await c.write('/w', '2');
    await c.write('/other', '3');
    await c.rm('/w/a');
    await waitFor(() => w.events.length === 4);
    expect(w.events).toEqual(['/w', '/w/a/b', '/w', '/w/a']);
    await c.unwatch('/w', 'tok');
    await c.write('/w/z', '1');
    await c.read('/w/z');
    expect(w.events).toHaveLength(4);
  });

  it('fires watches on descendants of a removed node with their own path', async () => {
    const c = await t.priv();
    await c.write('/dev/vbd/51712/state', '4');
    const w = recorder();
    await c.watch('/dev/vbd/51712/state', 'st', w.cb);
    await c.rm('/dev');
    await waitFor(() => w.events.length === 2);
    expect(w.events).toEqual(['/dev/vbd/51712/state', '/dev/vbd/51712/state']);
  });

  it('resolves relative watches against the home and reports them relative', async () => {
    const c = await t.priv();
    await t.h.introduce(5);
    await guestHome(c, 5);
    const d = await t.dom(5);
    const w = recorder();
    await d.watch('data', 'rel', w.cb);
    await c.write('/local/domain/5/data/k', 'v');
    await waitFor(() => w.events.length === 2);
    expect(w.events).toEqual(['data', 'data/k']);
    expect(await codeOf(d.watch('data', 'rel', () => undefined))).toBe('EEXIST');
  });

  it('does not tell a domain about nodes it cannot read (XSA-115)', async () => {
    const c = await t.priv();
    await t.h.introduce(5);
    await guestHome(c, 5);
    const d = await t.dom(5);
    const w = recorder();
    await d.watch('/', 'all', w.cb);
    const intro = recorder();
    await d.watch('@introduceDomain', 'i', intro.cb);
    await c.write('/private/thing', 'x');
    await c.write('/local/domain/5/data/visible', 'y');
    await t.h.introduce(6);
    await waitFor(() => w.events.length === 2);
    await d.read('data/visible');
    expect(w.events).toEqual(['/', '/local/domain/5/data/visible']);
    expect(intro.events).toEqual(['@introduceDomain']);
    // dom0 may open the special node to a domain.
    await c.setPerms('@introduceDomain', 'n0,r5');
    await t.h.introduce(7);
    await waitFor(() => intro.events.length === 2);
  });

  it('resets watches and transactions on RESET_WATCHES', async () => {
    const c = await t.priv();
    const w = recorder();
    await c.watch('/r', 'x', w.cb);
    const tx = await c.transactionStart();
    await c.resetWatches();
    await c.write('/r/1', '');
    expect(await codeOf(c.transactionEnd(tx, true))).toBe('ENOENT');
    expect(w.events).toEqual(['/r']);
  });

  it('drops over-long watch events instead of sending them (XSA-324)', async () => {
    const c = await t.priv();
    const w = recorder();
    const token = 't'.repeat(3000);
    await c.watch('/', token, w.cb);
    await c.write(`/${'p'.repeat(2000)}`, 'x');
    await c.write('/short', 'x');
    await waitFor(() => w.events.length === 2);
    expect(w.events).toEqual(['/', '/short']);
    expect(t.logs.some((l) => l.includes('dropped watch event'))).toBe(true);
  });
});

describe('transactions', () => {
  it('isolates changes until commit and fires watches only then', async () => {
    const c = await t.priv();
    const other = await t.priv();
    const w = recorder();
    await other.watch('/tx', 'w', w.cb);
    const id = await c.transactionStart();
    await c.write('/tx/a', '1', id);
    expect(await c.read('/tx/a', id)).toBe('1');
    expect(await codeOf(other.read('/tx/a'))).toBe('ENOENT');
    await other.read('/'); // flush
    expect(w.events).toEqual(['/tx']);
    await c.transactionEnd(id, true);
    expect(await other.read('/tx/a')).toBe('1');
    await waitFor(() => w.events.length === 2);
    expect(w.events[1]).toBe('/tx/a');
  });

  it('aborts on F and refuses unknown transaction ids', async () => {
    const c = await t.priv();
    const id = await c.transactionStart();
    await c.write('/ab', '1', id);
    await c.transactionEnd(id, false);
    expect(await c.exists('/ab')).toBe(false);
    expect(await codeOf(c.read('/ab', 999))).toBe('ENOENT');
    expect(await codeOf(c.transactionEnd(id, true))).toBe('ENOENT');
  });

  it('fails a commit with EAGAIN when something it read changed', async () => {
    const c = await t.priv();
    const other = await t.priv();
    await c.write('/cnt', '0');
    const id = await c.transactionStart();
    await c.read('/cnt', id);
    await other.write('/cnt', '5');
    await c.write('/cnt', '1', id);
    expect(await codeOf(c.transactionEnd(id, true))).toBe('EAGAIN');
    expect(await c.read('/cnt')).toBe('5');
  });

  it('keeps concurrent read-modify-write counters exact via transaction() retries', async () => {
    const a = await t.priv();
    const b = await t.priv();
    await a.write('/counter', '0');
    const bump = (c: XenstoreClient): Promise<void> =>
      c.transaction(async (tx) => {
        const v = Number(await tx.read('/counter'));
        await tx.write('/counter', String(v + 1));
      }, { maxAttempts: 1000 });
    await Promise.all(Array.from({ length: 20 }, (_, i) => bump(i % 2 ? a : b)));
    expect(await a.read('/counter')).toBe('20');
  });

  it('does not let a transaction see a node deleted under it as still there (XSA-421)', async () => {
    const c = await t.priv();
    const other = await t.priv();
    await c.write('/x/y', '1');
    const id = await c.transactionStart();
    await c.rm('/x', id);
    expect(await codeOf(c.read('/x/y', id))).toBe('ENOENT');
    await c.write('/x/y/z', 'new', id);
    await c.rm('/x/y', id);
    await c.transactionEnd(id, true);
    // /x was re-created as scaffolding for /x/y/z; /x/y and below were created and removed in the
    // transaction and leave nothing behind.
    expect(await other.directory('/x')).toEqual([]);
    expect(t.h.nodeCount()).toBe(2);
  });
});

describe('quotas for unprivileged domains', () => {
  it('limits nodes, entry size, watches, transactions', async () => {
    await t.close();
    t = await startTestServer({ nodesPerDomain: 5, entrySize: 16, watchesPerDomain: 2, transactionsPerDomain: 2 });
    const c = await t.priv();
    await t.h.introduce(5);
    await guestHome(c, 5);
    const d = await t.dom(5);
    await d.write('data/a/b/c', '');
    expect(await codeOf(d.write('data/d/e/f', ''))).toBe('ENOSPC');
    expect(await codeOf(d.write('data/a', 'x'.repeat(17)))).toBe('E2BIG');
    await c.write('/local/domain/5/data/a', 'x'.repeat(100));
    await d.watch('data', '1', () => undefined);
    const d2 = await t.dom(5);
    await d2.watch('data', '2', () => undefined);
    expect(await codeOf(d2.watch('data', '3', () => undefined))).toBe('E2BIG');
    await d.transactionStart();
    await d2.transactionStart();
    expect(await codeOf(d.transactionStart())).toBe('ENOSPC');
    // dom0 is not limited
    for (let i = 0; i < 10; i++) await c.watch(`/w${i}`, 'x', () => undefined);
    for (let i = 0; i < 12; i++) await c.transactionStart();
  });

  it('counts nodes created inside a transaction against the quota at commit', async () => {
    await t.close();
    t = await startTestServer({ nodesPerDomain: 5 });
    const c = await t.priv();
    await t.h.introduce(5);
    await guestHome(c, 5); // data/ is owned by 5: 1 node
    const d = await t.dom(5);
    const id = await d.transactionStart();
    await d.write('data/a/b', '', id);
    await d.write('data/c/d', '', id);
    expect(await codeOf(d.write('data/e', '', id))).toBe('ENOSPC');
    await d.transactionEnd(id, false);

    const id2 = await d.transactionStart();
    await d.write('data/a/b', '', id2); // 3 as the transaction sees it
    // Meanwhile dom0 creates nodes owned by 5 elsewhere (not touched by the transaction: no conflict).
    await c.mkdir('/local/domain/5/other');
    await c.setPerms('/local/domain/5/other', 'n5');
    await c.write('/local/domain/5/other/x', '');
    await c.write('/local/domain/5/other/y', '');
    expect(t.h.nodeCount(5)).toBe(4);
    expect(await codeOf(d.transactionEnd(id2, true))).toBe('ENOSPC');
    expect(await d.exists('data/a')).toBe(false);
    expect(t.h.nodeCount(5)).toBe(4);
  });

  it('drops watch events for a domain that does not read them, and says so', async () => {
    await t.close();
    t = await startTestServer({ pendingWatchEvents: 8 });
    const c = await t.priv();
    await t.h.introduce(5);
    await guestHome(c, 5);
    const raw = await RawConn.connect(t.h.domainSocketPath(5));
    // Big events fill the kernel socket buffer quickly; then only 8 may queue in xenstored.
    raw.send(XsType.WATCH, `data\0${'t'.repeat(3000)}\0`);
    await raw.next();
    raw.socket.pause();
    for (let i = 0; i < 300; i++) await c.write('/local/domain/5/data/k', String(i));
    const info = t.h.connections().find((x) => x.domid === 5);
    expect(info?.pendingEvents).toBeLessThanOrEqual(8);
    expect(t.logs.some((l) => l.includes('dropping watch events'))).toBe(true);
    await raw.close();
  });

  it('stops reading from a domain that does not take its replies', async () => {
    await t.close();
    t = await startTestServer({ outstandingRequests: 4 });
    const c = await t.priv();
    await t.h.introduce(5);
    await guestHome(c, 5);
    await c.write('/local/domain/5/data/big', 'x'.repeat(4000));
    const raw = await RawConn.connect(t.h.domainSocketPath(5));
    raw.socket.pause();
    const req = Buffer.from('data/big\0');
    const burst = Buffer.concat(Array.from({ length: 2000 }, (_, i) => encodeMessage(XsType.READ, i, 0, req)));
    raw.sendRaw(burst);
    await waitFor(() => t.h.connections().some((x) => x.domid === 5 && x.paused));
    const info = t.h.connections().find((x) => x.domid === 5);
    expect(info?.outstanding).toBeLessThanOrEqual(4);
    expect(await c.read('/local/domain/5/data/big')).toHaveLength(4000); // others still served
    raw.socket.resume();
    let last = -1;
    for (let i = 0; i < 2000; i++) {
      const m = await raw.next();
      expect(m.reqId).toBe(last + 1);
      last = m.reqId;
    }
    await raw.close();
  });
});
