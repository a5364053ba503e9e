import { afterEach, describe, expect, it } from 'vitest';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeXen } from '../domain/testing/fake-xen.js';
import { Blkfront } from './device.js';
import { BackRing } from '../ring/back.js';
import { BLKIF_RING, writeBlkifResponse, blkifRequest, newBlkifRequest } from '../abi/blkif.js';
import { defaultBlkbackFeatures } from '../blkif/features.js';
import { RawFile } from '../blkdev/raw-file.js';
import { BlkbackVbd } from '../blkback/vbd.js';
import { Loop, pattern } from '../blkif/testing/loop.js';
import { DiskError } from '../blkif/disk.js';

let loop: Loop | null = null;
afterEach(async () => {
  await loop?.close();
  loop = null;
});

async function roundTrip(l: Loop, sector: number, len: number, seed: number): Promise<void> {
  const data = pattern(len, seed);
  await l.bf.write(sector, data);
  const back = new Uint8Array(len);
  await l.bf.read(sector, back);
  expect(Buffer.compare(back, data)).toBe(0);
  // and it really is on the medium, at the right place
  const file = readFileSync(l.image);
  expect(Buffer.compare(file.subarray(sector * 512, sector * 512 + len), data)).toBe(0);
}

describe('blkfront <-> blkback over blkif (in process)', () => {
  it('writes and reads back direct, indirect and split requests', async () => {
    loop = await Loop.start();
    expect(loop.bf.sectors).toBe((16 << 20) / 512);
    await roundTrip(loop, 0, 512, 1);
    await roundTrip(loop, 3, 4096, 2);
    await roundTrip(loop, 101, 11 * 4096, 3); // 11 segments: the direct maximum
    await roundTrip(loop, 7, 12 * 4096 + 1024, 4); // indirect
    await roundTrip(loop, 2048, 1 << 20, 5); // 256 segments
    await roundTrip(loop, 9000, (3 << 20) + 512, 6); // split over several requests
    const st = loop.vbd.stats()[0];
    expect(st.errors).toBe(0);
    expect(st.persistentGrants).toBeGreaterThan(0);
    expect(st.transientMaps).toBe(0);
  });

  it('keeps many requests in flight at once and answers all of them', async () => {
    loop = await Loop.start({ front: { queues: 2, ringPageOrder: 1 } });
    const l = loop;
    const jobs: Promise<void>[] = [];
    for (let i = 0; i < 200; i++) jobs.push(l.bf.write(i * 8, pattern(4096, 100 + i)));
    await Promise.all(jobs);
    const reads = await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        const b = new Uint8Array(4096);
        await l.bf.read(i * 8, b);
        return Buffer.compare(b, pattern(4096, 100 + i));
      }),
    );
    expect(reads.every((c) => c === 0)).toBe(true);
    expect(l.vbd.stats().length).toBe(2);
    expect(l.vbd.stats().every((s) => s.requests > 0)).toBe(true);
    // notification suppression and batching: far fewer events than requests, both ways
    for (const st of l.vbd.stats()) {
      expect(st.events).toBeLessThan(st.requests / 4);
      expect(st.notifications).toBeLessThan(st.requests / 4);
    }
    // many large requests at once: the pool and indirect pages stay within the persistent cap
    await Promise.all(Array.from({ length: 16 }, (_, i) => l.bf.write(i * 2048, pattern(1 << 20, 500 + i))));
    expect(l.vbd.stats().every((s) => s.transientMaps === 0)).toBe(true);
  });

  it('runs a 16-page (order 4, 512-slot) ring full', async () => {
    loop = await Loop.start({ front: { ringPageOrder: 4 } });
    const l = loop;
    await l.bf.write(0, pattern(600 * 4096, 77));
    const bufs = Array.from({ length: 600 }, () => new Uint8Array(4096));
    await Promise.all(bufs.map((b, i) => l.bf.read(i * 8, b)));
    const all = Buffer.concat(bufs);
    expect(Buffer.compare(all, pattern(600 * 4096, 77))).toBe(0);
  });

  it('works without persistent grants and without indirect descriptors', async () => {
    loop = await Loop.start({ features: { persistent: false, maxIndirectSegments: 0 } });
    await roundTrip(loop, 5, 200 * 1024, 7);
    const st = loop.vbd.stats()[0];
    expect(st.persistentGrants).toBe(0);
    expect(st.transientMaps).toBeGreaterThan(0);
    // per-request mappings were all undone: only the ring (4 pages at order 2) stays mapped
    expect([...loop.front.grantsTable.values()].filter((g) => g.maps > 0).length).toBe(4);
  });

  it('maps past the persistent cap per request', async () => {
    loop = await Loop.start({ maxPersistentGrants: 16 });
    for (let i = 0; i < 8; i++) await roundTrip(loop, i * 512, 64 * 1024, 20 + i);
    expect(loop.vbd.stats()[0].persistentGrants).toBeLessThanOrEqual(16);
    expect(loop.vbd.stats()[0].transientMaps).toBeGreaterThan(0);
  });

  it('flushes, discards to zeroes and refuses out-of-range I/O', async () => {
    loop = await Loop.start();
    await roundTrip(loop, 64, 8192, 9);
    await loop.bf.flush();
    await loop.bf.write(64, pattern(4096, 10), { fua: true });
    expect(loop.bf.features.discard).toBe(true);
    await loop.bf.discard(64, 16);
    const b = new Uint8Array(8192).fill(1);
    await loop.bf.read(64, b);
    expect(b.every((x) => x === 0)).toBe(true);
    await expect(loop.bf.read(loop.bf.sectors - 1, new Uint8Array(1024))).rejects.toBeInstanceOf(DiskError);
    await expect(loop.bf.read(0, new Uint8Array(100))).rejects.toThrow(/multiple of 512/);
  });

  it('serves a read-only vbd: reads work, writes and flushes are refused', async () => {
    loop = await Loop.start({ readonly: true });
    expect(loop.bf.readonly).toBe(true);
    expect(loop.vbd.features.flushCache).toBe(false);
    const b = new Uint8Array(4096);
    await loop.bf.read(0, b);
    await expect(loop.bf.write(0, b)).rejects.toThrow(/read-only/);
  });

  it('replays in-flight requests on a new backend after the old one went away', async () => {
    loop = await Loop.start();
    const l = loop;
    const data = Array.from({ length: 64 }, (_, i) => pattern(8192, 300 + i));
    const writes = data.map((d, i) => l.bf.write(i * 16, d));
    // The backend vanishes before answering (its domain died): nothing it had is answered.
    l.vbd.halt('test: backend domain died');
    await l.bf.disconnect('backend died');
    await l.dev.close();
    await l.attachBackend();
    await Promise.all(writes);
    for (let i = 0; i < 64; i++) {
      const b = new Uint8Array(8192);
      await l.bf.read(i * 16, b);
      expect(Buffer.compare(b, data[i])).toBe(0);
    }
  });
});

describe('blkfront against a hostile backend', () => {
  it('stops the queue on a response it never asked for, keeps the request and replays it elsewhere', async () => {
    const xen = new FakeXen();
    const evil = xen.domain(1, 2);
    const fd = xen.domain(2, 1200);
    try {
      const bf = new Blkfront(fd, { name: 'xvdb', handle: 51728, ringPageOrder: 0 });
      const faults: string[] = [];
      bf.onFault((r) => faults.push(r));
      const info = await bf.prepare(evil.domid, defaultBlkbackFeatures(false, null));
      const m = await evil.mapper.map(fd.domid, info.queues[0].ringRefs);
      const ring = BackRing.attach(m.bytes.buffer as ArrayBuffer, BLKIF_RING, { byteOffset: m.bytes.byteOffset, byteLength: 4096 });
      const port = await evil.evtchn.bindInterdomain(fd.domid, info.queues[0].eventChannel);
      bf.connect({ sectors: 2048, sectorSize: 512, physicalSectorSize: 512, info: 0 });
      const buf = new Uint8Array(4096);
      let settled = false;
      const rd = bf.read(8, buf).then(() => (settled = true));
      while (ring.unconsumedRequests() === 0) await new Promise((r) => setTimeout(r, 1));
      const req = blkifRequest.read(ring.consumeRequest(), 0, newBlkifRequest());
      // answer an id that was never issued
      writeBlkifResponse(ring.view, ring.produceResponse(), req.idLo + 5, 0, req.operation, 0);
      ring.pushResponses();
      evil.evtchn.notify(port);
      while (faults.length === 0) await new Promise((r) => setTimeout(r, 1));
      expect(faults[0]).toMatch(/not outstanding/);
      expect(settled).toBe(false);
      // The toolstack replaces the backend: the read is issued again and completes.
      await bf.disconnect('backend misbehaved');
      await evil.mapper.unmap(m);
      const img = join(tmpdir(), `ringside-evil-${process.pid}.img`);
      writeFileSync(img, Buffer.alloc(1 << 20, 0x3c));
      const good = xen.domain(3, 2);
      const dev = await RawFile.open(img);
      const vbd = new BlkbackVbd(good, { name: 'good', device: dev });
      bf.connect(await vbd.connect(fd.domid, await bf.prepare(good.domid, vbd.features)));
      await rd;
      expect(buf.every((b) => b === 0x3c)).toBe(true);
      await bf.close();
      await vbd.disconnect();
      await dev.close();
      rmSync(img);
    } finally {
      xen.close();
    }
  });
});
