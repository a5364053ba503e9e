import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_READ, BLKIF_OP_WRITE, BLKIF_OP_WRITE_BARRIER, BLKIF_RSP_EOPNOTSUPP,
  BLKIF_RSP_ERROR, BLKIF_RSP_OKAY, writeBlkifDiscard, writeBlkifIndirect, writeBlkifIndirectGref,
} from '../abi/blkif.js';
import { RawFile } from '../blkdev/raw-file.js';
import { BlkbackVbd } from './vbd.js';
import { FakeXen, type FakeDomain } from '../domain/testing/fake-xen.js';
import { HostileFront } from '../blkif/testing/hostile-front.js';
import { Loop, pattern } from '../blkif/testing/loop.js';

const SECTORS = 2048; // 1 MiB disk

let xen: FakeXen;
let back: FakeDomain;
let frontDom: FakeDomain;
let dir: string;
let devs: RawFile[];
let vbds: BlkbackVbd[];

async function vbdFor(front: FakeDomain, readonly = false, inlineMaxBytes?: number): Promise<{ vbd: BlkbackVbd; h: HostileFront }> {
  const img = join(dir, `d${devs.length}.img`);
  writeFileSync(img, '');
  truncateSync(img, SECTORS * 512);
  const dev = await RawFile.open(img, { readonly, inlineMaxBytes });
  devs.push(dev);
  const vbd = new BlkbackVbd(back, { name: `vbd${devs.length}`, device: dev, readonly });
  vbds.push(vbd);
  const h = new HostileFront(front, back.domid);
  await vbd.connect(front.domid, await h.prepare());
  return { vbd, h };
}

beforeEach(() => {
  xen = new FakeXen();
  back = xen.domain(1, 4);
  frontDom = xen.domain(7, 64);
  dir = mkdtempSync(join(tmpdir(), 'ringside-bb-'));
  devs = [];
  vbds = [];
});
afterEach(async () => {
  for (const v of vbds) await v.disconnect();
  for (const d of devs) await d.close();
  xen.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('blkback answers hostile requests, not obeys them', () => {
  it('gives each malformed request an error response and keeps serving', async () => {
    const { vbd, h } = await vbdFor(frontDom);
    const page = h.grantPage(false, 0x5a);
    const ok = await h.request(h.rw(BLKIF_OP_WRITE, 1, 1, 0, [[page.ref, 0, 7]]));
    expect(ok?.status).toBe(BLKIF_RSP_OKAY);

    const cases: [string, (v: DataView, off: number) => void, number][] = [
      ['nseg 12 without indirect', h.rw(BLKIF_OP_READ, 12, 2, 0, Array.from({ length: 11 }, () => [page.ref, 0, 7] as [number, number, number])), BLKIF_RSP_ERROR],
      ['last_sect 8', h.rw(BLKIF_OP_READ, 1, 3, 0, [[page.ref, 0, 8]]), BLKIF_RSP_ERROR],
      ['first_sect > last_sect', h.rw(BLKIF_OP_READ, 1, 4, 0, [[page.ref, 5, 2]]), BLKIF_RSP_ERROR],
      ['sector past the end', h.rw(BLKIF_OP_READ, 1, 5, SECTORS - 4, [[page.ref, 0, 7]]), BLKIF_RSP_ERROR],
      ['sector near 2^64', h.rw(BLKIF_OP_READ, 1, 6, 2 ** 63, [[page.ref, 0, 7]]), BLKIF_RSP_ERROR],
      ['unknown operation', h.rw(9, 1, 7, 0, [[page.ref, 0, 7]]), BLKIF_RSP_EOPNOTSUPP],
      ['read with no segments', h.rw(BLKIF_OP_READ, 0, 8, 0, []), BLKIF_RSP_ERROR],
      ['a gref never granted', h.rw(BLKIF_OP_READ, 1, 9, 0, [[4000, 0, 7]]), BLKIF_RSP_ERROR],
      ['discard past the end', (v, off) => writeBlkifDiscard(v, off, 0, 0, 10, SECTORS - 1, 2), BLKIF_RSP_ERROR],
      ['indirect with 300 segments', (v, off) => {
        writeBlkifIndirect(v, off, BLKIF_OP_READ, 300, 0, 11, 0);
        writeBlkifIndirectGref(v, off, 0, page.ref);
      }, BLKIF_RSP_ERROR],
      ['indirect carrying a flush', (v, off) => {
        writeBlkifIndirect(v, off, BLKIF_OP_FLUSH_DISKCACHE, 1, 0, 12, 0);
        writeBlkifIndirectGref(v, off, 0, page.ref);
      }, BLKIF_RSP_ERROR],
    ];
    for (const [what, fill, status] of cases) {
      const r = await h.request(fill);
      expect(r, what).not.toBeNull();
      expect(r!.status, what).toBe(status);
    }
    const st = vbd.stats()[0];
    expect(st.errors + st.unsupported).toBe(cases.length);
    expect(back.logs.some((l) => /last_sect 8/.test(l))).toBe(true);
    expect(back.logs.some((l) => /did not map/.test(l))).toBe(true);
    expect(vbd.halted).toBeNull();
    // nothing was written by any of them, and a good read still works
    const rd = h.grantPage(false, 0);
    const good = await h.request(h.rw(BLKIF_OP_READ, 1, 99, 0, [[rd.ref, 0, 7]]));
    expect(good?.status).toBe(BLKIF_RSP_OKAY);
    expect(rd.bytes.every((b) => b === 0x5a)).toBe(true);
  });

  it('echoes 64-bit ids and zeroes the whole response slot (XSA-216)', async () => {
    const { h } = await vbdFor(frontDom);
    const page = h.grantPage();
    const id = 0xdeadbeef * 2 ** 20 + 7; // above 2^32, below 2^53
    const r = await h.request(h.rw(BLKIF_OP_READ, 1, id, 0, [[page.ref, 0, 7]]));
    expect(r!.idHi * 2 ** 32 + r!.idLo).toBe(id);
    expect(r!.operation).toBe(BLKIF_OP_READ);
    // padding byte 9 and bytes 12..15 were 0xee in the request slot
    expect(r!.bytes[9]).toBe(0);
    expect(r!.bytes.slice(12)).toEqual([0, 0, 0, 0]);
  });

  it('refuses writes, flushes and discards on a read-only vbd', async () => {
    const { h } = await vbdFor(frontDom, true);
    const page = h.grantPage(true);
    expect((await h.request(h.rw(BLKIF_OP_WRITE, 1, 1, 0, [[page.ref, 0, 7]])))!.status).toBe(BLKIF_RSP_ERROR);
    expect((await h.request(h.rw(BLKIF_OP_FLUSH_DISKCACHE, 0, 2, 0, [])))!.status).toBe(BLKIF_RSP_EOPNOTSUPP);
    expect((await h.request((v, off) => writeBlkifDiscard(v, off, 0, 0, 3, 0, 8)))!.status).toBe(BLKIF_RSP_EOPNOTSUPP);
    // a read of a read-only grant is fine
    const rd = h.grantPage(false);
    expect((await h.request(h.rw(BLKIF_OP_READ, 1, 4, 0, [[rd.ref, 0, 7]])))!.status).toBe(BLKIF_RSP_OKAY);
  });

  it('serves indirect requests, barriers and discards from a raw ring', async () => {
    const { h } = await vbdFor(frontDom);
    const w = await h.indirectWrite(20, 16);
    expect(w!.status).toBe(BLKIF_RSP_OKAY);
    expect(w!.operation).toBe(BLKIF_OP_WRITE);
    expect((await h.request(h.rw(BLKIF_OP_WRITE_BARRIER, 0, 2, 0, [])))!.status).toBe(BLKIF_RSP_OKAY);
    const rd = h.grantPage(false);
    expect((await h.request(h.rw(BLKIF_OP_READ, 1, 3, 16 + 8 * 19, [[rd.ref, 0, 7]])))!.status).toBe(BLKIF_RSP_OKAY);
    expect(rd.bytes.every((b) => b === 20)).toBe(true);
    expect((await h.request((v, off) => writeBlkifDiscard(v, off, 1, 0, 4, 16, 8)))!.status).toBe(BLKIF_RSP_OKAY);
    expect((await h.request(h.rw(BLKIF_OP_READ, 1, 5, 16, [[rd.ref, 0, 7]])))!.status).toBe(BLKIF_RSP_OKAY);
    expect(rd.bytes.every((b) => b === 0)).toBe(true);
  });

  it('completes everything before a write barrier first and starts nothing after it until it is done', async () => {
    // every transfer on the thread pool, so requests really overlap
    const { h } = await vbdFor(frontDom, false, 0);
    const pages = Array.from({ length: 5 }, (_, i) => h.grantPage(false, i + 1));
    const w = (id: number, sector: number, p: { ref: number }) => h.rw(BLKIF_OP_WRITE, 1, id, sector, [[p.ref, 0, 7]]);
    const rs = await h.requestBatch([
      w(1, 0, pages[0]), w(2, 8, pages[1]), w(3, 16, pages[2]),
      (v, off) => h.rw(BLKIF_OP_WRITE_BARRIER, 1, 4, 24, [[pages[3].ref, 0, 7]])(v, off),
      w(5, 32, pages[4]),
    ]);
    expect(rs.map((r) => r.status)).toEqual([0, 0, 0, 0, 0]);
    const order = rs.map((r) => r.idLo);
    expect(order.indexOf(4)).toBe(3);
    expect(order.slice(0, 3).sort()).toEqual([1, 2, 3]);
    expect(order[4]).toBe(5);
  });

  it('halts only the vbd whose req_prod overflows, with a logged reason', async () => {
    const { vbd, h } = await vbdFor(frontDom);
    const other = await Loop.start();
    try {
      h.bogusReqProd(1000);
      for (let i = 0; i < 100 && vbd.halted === null; i++) await new Promise((r) => setTimeout(r, 5));
      expect(vbd.halted).toMatch(/bogus ring requests/);
      expect(back.logs.some((l) => /ring halted.*bogus ring requests/.test(l))).toBe(true);
      // the halted ring is not serviced any more
      const page = h.grantPage();
      expect(await h.request(h.rw(BLKIF_OP_READ, 1, 1, 0, [[page.ref, 0, 7]]), { timeoutMs: 200 })).toBeNull();
      // while another vbd keeps working
      const d = pattern(65536, 3);
      await other.bf.write(10, d);
      const b = new Uint8Array(65536);
      await other.bf.read(10, b);
      expect(Buffer.compare(b, d)).toBe(0);
    } finally {
      await other.close();
    }
  });
});
