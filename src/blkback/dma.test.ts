// blkback over the NVMe driver and controller model, in one process: grants are device_mapped into
// the driver domain's IOMMU domain (a stand-in for hv's GNTMAP_device_map window), so the
// controller DMAs the frontend's pages in place. Checks the copy counters, the medium, the
// read-only IOMMU entry of a WRITE's transient grant, and that every entry goes away.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { closeSync, ftruncateSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BLKIF_OP_READ, BLKIF_OP_WRITE, BLKIF_RSP_ERROR, BLKIF_RSP_OKAY } from '../abi/blkif.js';
import type { DmaBlockDevice } from '../blkdev/device.js';
import { NvmeDriver, type NvmeDriverOptions } from '../drivers/nvme.js';
import type { GrantMapping, MapOptions } from '../grant/mapper.js';
import { NvmeModel } from '../hw/nvme.js';
import { HeldMedium, makeRig, type Rig } from '../hw/testrig.js';
import { NVME_REG } from '../abi/nvme.js';
import { FakeXen, type FakeDomain } from '../domain/testing/fake-xen.js';
import { HostileFront } from '../blkif/testing/hostile-front.js';
import { DirectionSwapped } from '../blkif/testing/direction-swapped.js';
import type { BlkbackServices } from '../domain/services.js';
import { BlkbackVbd } from './vbd.js';

const MiB = 1 << 20;
const SIZE = 4 * MiB;
const OWNER = 1;
/** where the stand-in puts granted frames: host-physical pages and the bus-address window */
const GRANT_PA = 0x80000000;
const GRANT_WINDOW = 2 ** 32;

/** blkback's env with device_map done the way hv does it, into the rig's IOMMU domain. */
function deviceMappingEnv(back: FakeDomain, rig: Rig): { env: BlkbackServices; live: Set<number> } {
  const live = new Set<number>();
  let nextPage = 0;
  const env: BlkbackServices = {
    evtchn: back.evtchn,
    log: back.log,
    mapper: {
      async map(dom: number, refs: number[], opts: MapOptions = {}): Promise<GrantMapping> {
        const m = await back.mapper.map(dom, refs, opts);
        if (!opts.deviceMap) return m;
        const busAddrs = refs.map((_, j) => {
          const page = nextPage++;
          rig.mem.adopt(GRANT_PA / 4096 + page, m.bytes.subarray(j * 4096, (j + 1) * 4096));
          const bus = GRANT_WINDOW + page * 4096;
          rig.iommu.map(OWNER, bus, GRANT_PA + page * 4096, { read: true, write: !m.readonly });
          live.add(bus);
          return bus;
        });
        return { ...m, busAddrs };
      },
      async unmap(m: GrantMapping): Promise<void> {
        for (const bus of m.busAddrs ?? []) {
          rig.iommu.unmap(OWNER, bus);
          live.delete(bus);
        }
        await back.mapper.unmap(m);
      },
    },
  };
  return { env, live };
}

let xen: FakeXen;
let back: FakeDomain;
let front: FakeDomain;
let rig: Rig;
let dir: string;
let path: string;
let fd: number;
let model: NvmeModel;
let driver: NvmeDriver;
let vbd: BlkbackVbd | null;
let bar: Uint8Array;
/** the medium's transfers, held back only when a test asks */
let held: HeldMedium;

/** A controller model and its driver over the rig and the image. */
async function controller(opts: NvmeDriverOptions = {}): Promise<void> {
  bar = new Uint8Array(4096);
  held = new HeldMedium();
  held.holding = false;
  let raise = () => {};
  model = new NvmeModel({ unit: rig.unit, mem: rig.mem, sid: rig.sid, bar, medium: { fd, size: SIZE, io: held }, busMaster: () => true, raiseIrq: () => raise() });
  const port = rig.port(bar, () => model.kick());
  raise = () => port.raise();
  driver = new NvmeDriver('nvme-t', port, rig.driverMem, SIZE, false, { depth: 8, slotPages: 4, ...opts });
  await driver.start();
}

beforeEach(async () => {
  xen = new FakeXen();
  back = xen.domain(1, 4);
  front = xen.domain(7, 96);
  rig = makeRig({ owner: OWNER });
  dir = mkdtempSync(join(tmpdir(), 'ringside-bbdma-'));
  path = join(dir, 'nvme.img');
  fd = openSync(path, 'w+');
  ftruncateSync(fd, SIZE);
  await controller();
  vbd = null;
});

afterEach(async () => {
  held.releaseAll();
  await vbd?.disconnect();
  await driver.close();
  xen.close();
  closeSync(fd);
  rmSync(dir, { recursive: true, force: true });
});

async function serve(dev: DmaBlockDevice, persistent: boolean): Promise<{ h: HostileFront; live: Set<number> }> {
  const { env, live } = deviceMappingEnv(back, rig);
  vbd = new BlkbackVbd(env, { name: 'vbd-dma', device: dev });
  const h = new HostileFront(front, back.domid);
  const info = await h.prepare();
  await vbd.connect(front.domid, { ...info, persistent });
  return { h, live };
}

const medium = (pos: number, len: number) => readFileSync(path).subarray(pos, pos + len);

describe('blkback over a DMA-capable medium', () => {
  it('moves whole-page requests with zero copies: the controller reads and writes the granted pages', async () => {
    const { h, live } = await serve(driver, true);
    const src = [h.grantPage(false, 0x11), h.grantPage(false, 0x22), h.grantPage(false, 0x33)];
    src[2].bytes.fill(0x44, 2048); // the last segment carries only its first half
    const w = await h.request(h.rw(BLKIF_OP_WRITE, 3, 1, 64, [[src[0].ref, 0, 7], [src[1].ref, 0, 7], [src[2].ref, 0, 3]]));
    expect(w?.status).toBe(BLKIF_RSP_OKAY);
    const m = medium(64 * 512, 3 * 4096);
    expect(m.subarray(0, 4096).every((b) => b === 0x11)).toBe(true);
    expect(m.subarray(4096, 8192).every((b) => b === 0x22)).toBe(true);
    expect(m.subarray(8192, 8192 + 2048).every((b) => b === 0x33)).toBe(true);
    expect(m.subarray(8192 + 2048).every((b) => b === 0)).toBe(true); // not part of the request

    // a read that starts mid-page (first_sect 4) is still one PRP run
    const dst = [h.grantPage(false, 0xee), h.grantPage(false, 0xee)];
    const r = await h.request(h.rw(BLKIF_OP_READ, 2, 2, 64, [[dst[0].ref, 4, 7], [dst[1].ref, 0, 7]]));
    expect(r?.status).toBe(BLKIF_RSP_OKAY);
    expect(dst[0].bytes.subarray(0, 2048).every((b) => b === 0xee)).toBe(true);
    expect(dst[0].bytes.subarray(2048).every((b) => b === 0x11)).toBe(true);
    expect(dst[1].bytes.subarray(0, 2048).every((b) => b === 0x11)).toBe(true);
    expect(dst[1].bytes.subarray(2048).every((b) => b === 0x22)).toBe(true);

    const st = vbd!.stats()[0];
    expect(st.dmaBytes).toBe(10 * 1024 + 6 * 1024);
    expect(st.bounceBytes).toBe(0);
    expect(driver.stats.bounceBytes).toBe(0);
    expect(driver.stats.dmaBytes).toBe(st.dmaBytes);
    expect(model.stats.bytesWritten + model.stats.bytesRead).toBe(st.dmaBytes);
    expect(rig.faults).toEqual([]);
    // persistent grants keep their IOMMU entries until the frontend goes away
    expect(live.size).toBe(5);
    await vbd!.disconnect();
    expect(live.size).toBe(0);
    for (const bus of [GRANT_WINDOW, GRANT_WINDOW + 4096]) expect(rig.iommu.lookup(OWNER, bus)).toBeNull();
  });

  it('a request PRPs cannot describe goes through the bounce buffers, counted, with the same result', async () => {
    const { h } = await serve(driver, true);
    const a = h.grantPage(false, 0x5a);
    const b = h.grantPage(false, 0xa5);
    // the first segment stops a sector short of its page end: not one PRP run
    const w = await h.request(h.rw(BLKIF_OP_WRITE, 2, 1, 8, [[a.ref, 0, 6], [b.ref, 0, 7]]));
    expect(w?.status).toBe(BLKIF_RSP_OKAY);
    const m = medium(8 * 512, 7 * 512 + 4096);
    expect(m.subarray(0, 7 * 512).every((x) => x === 0x5a)).toBe(true);
    expect(m.subarray(7 * 512).every((x) => x === 0xa5)).toBe(true);
    const rd = [h.grantPage(false), h.grantPage(false)];
    const r = await h.request(h.rw(BLKIF_OP_READ, 2, 2, 8, [[rd[0].ref, 1, 7], [rd[1].ref, 0, 7]]));
    expect(r?.status).toBe(BLKIF_RSP_OKAY);
    expect(rd[0].bytes.subarray(512).every((x) => x === 0x5a)).toBe(true);
    expect(rd[0].bytes.subarray(0, 512).every((x) => x === 0)).toBe(true);
    expect(rd[1].bytes.every((x) => x === 0xa5)).toBe(true);
    const st = vbd!.stats()[0];
    expect(st.bounceBytes).toBe(7 * 512 + 4096); // the write
    expect(st.dmaBytes).toBe(7 * 512 + 4096); // the read started mid-page, which PRPs allow
    expect(driver.stats.bounceBytes).toBe(st.bounceBytes);
  });

  it('an indirect request of 70 pages is split into commands of MDTS (64) pages and stays zero copy', async () => {
    const { h } = await serve(driver, true);
    const w = await h.indirectWrite(70, 1024);
    expect(w?.status).toBe(BLKIF_RSP_OKAY);
    const m = medium(1024 * 512, 70 * 4096);
    for (let i = 0; i < 70; i++) expect(m[i * 4096 + 100]).toBe(i + 1);
    expect(vbd!.stats()[0]).toMatchObject({ dmaBytes: 70 * 4096, bounceBytes: 0 });
    expect(model.stats.writes).toBe(2);
    expect(model.stats.transfers).toBe(1); // both commands in one pwritev
    expect(model.stats.bytesWritten).toBe(70 * 4096);
  });

  it('transient grants: a WRITE maps read-only, so a device write into those pages faults and the request fails cleanly', async () => {
    const { h, live } = await serve(new DirectionSwapped(driver), false);
    // an honest read first: transient writable maps, removed once the request is answered
    const rd = h.grantPage(false, 0x01);
    expect((await h.request(h.rw(BLKIF_OP_READ, 1, 1, 0, [[rd.ref, 0, 7]])))?.status).toBe(BLKIF_RSP_OKAY);
    expect(rd.bytes.every((b) => b === 0)).toBe(true);
    expect(live.size).toBe(0);
    // the WRITE's grant is read-only: the IOMMU entry is read-only, the buggy device write faults
    const page = h.grantPage(true, 0x77);
    const w = await h.request(h.rw(BLKIF_OP_WRITE, 1, 2, 0, [[page.ref, 0, 7]]));
    expect(w?.status).toBe(BLKIF_RSP_ERROR);
    expect(page.bytes.every((b) => b === 0x77)).toBe(true);
    expect(model.stats.dmaFaults).toBe(1);
    expect(rig.faults).toHaveLength(1);
    expect(rig.faults[0]).toMatchObject({ write: true });
    expect(rig.faults[0].iova).toBeGreaterThanOrEqual(GRANT_WINDOW);
    expect(back.logs.some((l) => /write of \[0, \+8\) failed: .*data transfer error/.test(l))).toBe(true);
    expect(live.size).toBe(0);
    expect(vbd!.stats()[0].transientMaps).toBe(2);
    // and the vbd keeps serving
    expect((await h.request(h.rw(BLKIF_OP_READ, 1, 3, 0, [[rd.ref, 0, 7]])))?.status).toBe(BLKIF_RSP_OKAY);
  });

  /** The driver domain writes an SQ tail doorbell outside its queue: the controller goes fatal. */
  function goFatal(): void {
    new Int32Array(bar.buffer)[NVME_REG.SQ0TDBL >> 2] = 100;
    model.kick();
  }

  async function settle(): Promise<void> {
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
    await new Promise((r) => setTimeout(r, 10));
  }

  it('a fatal controller status mid-transfer: the request is answered (and its grant unmapped) only after the transfer landed', async () => {
    const { h, live } = await serve(driver, false);
    writeSync(fd, new Uint8Array(4096).fill(0xc3), 0, 4096, 16 * 512);
    const page = h.grantPage(false, 0x11);
    held.holding = true;
    const seen: { status: number | null; bytes: Uint8Array; mapped: number }[] = [];
    const answered = h.request(h.rw(BLKIF_OP_READ, 1, 9, 16, [[page.ref, 0, 7]])).then((r) => {
      seen.push({ status: r === null ? null : r.status, bytes: page.bytes.slice(), mapped: live.size });
    });
    await held.heldCount(1);
    goFatal();
    await settle();
    // the device still owns the frame: no answer, the grant stays device-mapped
    expect(seen).toEqual([]);
    expect(live.size).toBe(1);
    expect(page.bytes.every((b) => b === 0x11)).toBe(true);
    held.release(0);
    await answered;
    expect(seen[0].status).toBe(BLKIF_RSP_ERROR);
    // what the device wrote while the request was outstanding, seen when the frontend got its answer
    expect(seen[0].bytes.every((b) => b === 0xc3)).toBe(true);
    expect(seen[0].mapped).toBe(0);
    expect(back.logs.some((l) => /read of \[16, \+8\) failed: nvme-t: controller fatal status \(reason 2\)/.test(l))).toBe(true);
  });

  it('a controller that never stops is a lost device: the vbd halts, the request stays unanswered, its grant stays mapped', async () => {
    await driver.close();
    await controller({ stopTimeoutMs: 30, log: back.log });
    const { h, live } = await serve(driver, false);
    const page = h.grantPage(false, 0x11);
    held.holding = true;
    const answered = h.request(h.rw(BLKIF_OP_READ, 1, 9, 16, [[page.ref, 0, 7]]), { timeoutMs: 300 });
    await held.heldCount(1);
    goFatal();
    for (let i = 0; vbd!.halted === null && i < 2000; i++) await new Promise((r) => setTimeout(r, 1));
    expect(vbd!.halted).toMatch(/^device lost: nvme-t: controller still busy 30 ms after it was disabled/);
    expect(live.size).toBe(1);
    held.release(0);
    expect(await answered).toBeNull();
    // teardown leaves the request's grant mapped: the device could still write it
    await vbd!.disconnect();
    expect(live.size).toBe(1);
    expect(back.logs.some((l) => /device lost: 1 request\(s\) left outstanding/.test(l))).toBe(true);
    // the medium is not served again through this vbd
    await expect(vbd!.connect(front.domid, await new HostileFront(front, back.domid).prepare())).rejects.toThrow(/its device was lost/);
  });
});
