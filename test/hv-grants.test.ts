import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GNTST, GNTCOPY_source_gref, GNTCOPY_dest_gref, DOMID_SELF } from '../src/abi/grant.js';
import { TestPlatform, type Probe } from './support/platform.js';
import { until } from './support/until.js';

describe('grant tables across domain processes', () => {
  let t: TestPlatform;
  let a: Probe; // grantor
  let b: Probe; // the grantee
  let c: Probe; // a third domain with no grants

  beforeAll(async () => {
    t = new TestPlatform();
    a = await t.probe('grantor');
    b = await t.probe('grantee');
    c = await t.probe('bystander');
  });
  afterAll(async () => t?.close());

  it('maps a granted frame read-write and shares its bytes', async () => {
    const { gfn } = await a.cmd('alloc');
    await a.cmd('fill', { gfn, value: 0x5a });
    const { ref } = await a.cmd('grant', { domid: b.domid, gfn });
    const m = await b.cmd('map', { dom: a.domid, refs: [ref] });
    expect(m.first).toBe(0x5a);
    await b.cmd('write', { id: m.id, offset: 10, value: 0x77 });
    expect((await a.cmd('peek', { gfn, offset: 10 })).value).toBe(0x77);
    // Revoke while mapped is refused, as in Xen; after unmap it succeeds.
    expect((await a.cmd('endAccess', { ref })).ok).toBe(false);
    await b.cmd('unmap', { id: m.id });
    expect((await a.cmd('endAccess', { ref })).ok).toBe(true);
  });

  it('gives permission_denied to a domain that maps a ref not granted to it', async () => {
    const { gfn } = await a.cmd('alloc');
    const { ref } = await a.cmd('grant', { domid: b.domid, gfn });
    const r = await c.cmd('map', { dom: a.domid, refs: [ref] });
    expect(r.status).toBe(GNTST.permission_denied);
    // An entry never written is not a grant at all.
    expect((await c.cmd('map', { dom: a.domid, refs: [200] })).status).toBe(GNTST.permission_denied);
    expect((await c.cmd('map', { dom: a.domid, refs: [1 << 20] })).status).toBe(GNTST.bad_gntref);
    expect((await c.cmd('map', { dom: 999, refs: [8] })).status).toBe(GNTST.bad_domain);
  });

  it('refuses a writable map of a read-only grant and hands a read-only frame for it', async () => {
    const { gfn } = await a.cmd('alloc');
    await a.cmd('fill', { gfn, value: 9 });
    const { ref } = await a.cmd('grant', { domid: b.domid, gfn, readonly: true });
    expect((await b.cmd('map', { dom: a.domid, refs: [ref] })).status).toBe(GNTST.permission_denied);
    const m = await b.cmd('map', { dom: a.domid, refs: [ref], readonly: true });
    expect(m.first).toBe(9);
    expect((await b.cmd('read', { id: m.id, offset: 0 })).value).toBe(9);
  });

  it('kills the mapper in the kernel when it writes to a read-only mapping', async () => {
    const victim = await t.probe('ro-writer');
    const { gfn } = await a.cmd('alloc');
    await a.cmd('fill', { gfn, value: 3 });
    const { ref } = await a.cmd('grant', { domid: victim.domid, gfn, readonly: true });
    const m = await victim.cmd('map', { dom: a.domid, refs: [ref], readonly: true });
    void victim.cmd('write', { id: m.id, offset: 0, value: 0xff });
    const ev = await t.waitEvent((e) => e.event === 'domain_died' && e.domid === victim.domid);
    expect(ev.event === 'domain_died' && ev.signal).toMatch(/SIGSEGV|SIGBUS/);
    expect((await a.cmd('peek', { gfn, offset: 0 })).value).toBe(3);
    // hv dropped the dead domain's mapping, so the grant can be revoked.
    expect((await a.cmd('endAccess', { ref })).ok).toBe(true);
  });

  it('maps several refs as one contiguous view', async () => {
    const refs: number[] = [];
    for (let i = 0; i < 4; i++) {
      const { gfn } = await a.cmd('alloc');
      await a.cmd('fill', { gfn, value: 0x10 + i });
      refs.push((await a.cmd('grant', { domid: b.domid, gfn })).ref);
    }
    const m = await b.cmd('map', { dom: a.domid, refs });
    for (let i = 0; i < 4; i++) expect((await b.cmd('read', { id: m.id, offset: i * 4096 + 5 })).value).toBe(0x10 + i);
    await b.cmd('unmap', { id: m.id });
  });

  it('copies through grants and rejects copies outside the 4096-byte frame', async () => {
    const { gfn } = await a.cmd('alloc');
    await a.cmd('fill', { gfn, value: 0x42 });
    const { ref } = await a.cmd('grant', { domid: b.domid, gfn });
    const own = (await b.cmd('alloc')).gfn;
    const ok = await b.cmd('copy', {
      ops: [{ source: { ref, domid: a.domid, offset: 0 }, dest: { ref: own, domid: DOMID_SELF, offset: 100 }, len: 64, flags: GNTCOPY_source_gref }],
    });
    expect(ok.statuses).toEqual([GNTST.okay]);
    expect((await b.cmd('peek', { gfn: own, offset: 100 })).value).toBe(0x42);
    const bad = await b.cmd('copy', {
      ops: [
        { source: { ref, domid: a.domid, offset: 4000 }, dest: { ref: own, domid: DOMID_SELF, offset: 0 }, len: 200, flags: GNTCOPY_source_gref },
        { source: { ref: own, domid: DOMID_SELF, offset: 0 }, dest: { ref, domid: a.domid, offset: 0 }, len: 4097, flags: GNTCOPY_dest_gref },
        { source: { ref: 0, domid: a.domid, offset: 0 }, dest: { ref: own, domid: DOMID_SELF, offset: 0 }, len: 8, flags: 0 },
      ],
    });
    expect(bad.statuses).toEqual([GNTST.bad_copy_arg, GNTST.bad_copy_arg, GNTST.permission_denied]);
  });

  it('runs the same copies through a grant-copy ring, with the same statuses', async () => {
    const { gfn } = await a.cmd('alloc');
    await a.cmd('fill', { gfn, value: 0x5a });
    const { ref } = await a.cmd('grant', { domid: b.domid, gfn });
    const own = (await b.cmd('alloc')).gfn;
    const ops = [
      { source: { ref, domid: a.domid, offset: 0 }, dest: { ref: own, domid: DOMID_SELF, offset: 8 }, len: 64, flags: GNTCOPY_source_gref },
      { source: { ref, domid: a.domid, offset: 4000 }, dest: { ref: own, domid: DOMID_SELF, offset: 0 }, len: 200, flags: GNTCOPY_source_gref },
      { source: { ref, domid: a.domid, offset: 0 }, dest: { ref: own, domid: DOMID_SELF, offset: 0 }, len: 8, flags: GNTCOPY_source_gref | GNTCOPY_dest_gref },
      { source: { ref: 0, domid: c.domid, offset: 0 }, dest: { ref: own, domid: DOMID_SELF, offset: 0 }, len: 8, flags: GNTCOPY_source_gref },
    ];
    const r = await b.cmd('copyRing', { ops });
    // past the frame's end; a destination grant of DOMID_SELF names no grantor; c granted b nothing
    expect(r.statuses).toEqual([GNTST.okay, GNTST.bad_copy_arg, GNTST.bad_domain, GNTST.permission_denied]);
    expect((await b.cmd('copy', { ops })).statuses).toEqual(r.statuses);
    expect((await b.cmd('peek', { gfn: own, offset: 8 })).value).toBe(0x5a);
  });

  it('gives the control domain no copy ring and a domain at most four', async () => {
    await expect(t.dom0.call('gnttab_copy_ring', {})).rejects.toThrow(/the control domain copies no guest memory/);
    const r = await c.cmd('openCopyRings');
    expect(r).toMatchObject({ opened: 4, error: expect.stringMatching(/at most 4 grant-copy rings/) });
  });

  it('cuts off a domain that tells hv its ring holds more than it does; the others carry on', async () => {
    const bad = await t.probe('ring-liar');
    await bad.cmd('lieAboutCopyCount', { count: 0xffffffff });
    await until('hv to cut off the ring liar', () => t.logs.join('\n'), (l) => /killing dom\d+ \(ring-liar\): grant-copy ring: batch of 4294967295 ops, the ring holds 2048/.test(l));
    const { gfn } = await a.cmd('alloc');
    expect(gfn).toBeGreaterThanOrEqual(0);
  });

  it('forbids the control domain to map guest memory, and logs the denial', async () => {
    const { gfn } = await a.cmd('alloc');
    const { ref } = await a.cmd('grant', { domid: 0, gfn });
    const { result } = await t.dom0.call('gnttab_map', { ops: [{ dom: a.domid, ref, flags: 2 }] });
    expect(result.results[0].status).toBe(GNTST.permission_denied);
    expect(t.logs.some((l) => /policy: denied dom0 .*gnttab_map target dom\d+: the control domain maps no guest memory/.test(l))).toBe(true);
  });
});
