import { mkdtempSync, openSync, closeSync, ftruncateSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { waitFor } from '../testing/until.js';
import { NvmeDriver, type NvmeDriverOptions } from '../drivers/nvme.js';
import type { DmaPages } from '../drivers/port.js';
import { DmaList } from '../blkdev/device.js';
import { ENABLE_HELD_LOG_MS, MEDIUM_JOBS, NvmeModel, type MediumIo } from './nvme.js';
import { native } from '../native/index.js';
import { CQE, NVME_CC_EN, NVME_CFS, NVME_CSTS_CFS, NVME_CSTS_RDY, NVME_OP, NVME_REG as R, NVME_SC, SQE, statusCode } from '../abi/nvme.js';
import { HeldMedium, makeRig, OWNER_PA, type Rig } from './testrig.js';

const MiB = 1 << 20;

function io(fn: (done: (e: Error | null) => void) => void): Promise<void> {
  return new Promise((res, rej) => fn((e) => (e ? rej(e) : res())));
}


/** Programs the admin queues (`entries` each) and enables the controller, as a driver would. */
function enableAdmin(w: Int32Array, asq: number, acq: number, entries: number): void {
  w[R.AQA >> 2] = (entries - 1) | ((entries - 1) << 16);
  w[R.ASQ >> 2] = asq;
  w[R.ACQ >> 2] = acq;
  w[R.CC >> 2] = NVME_CC_EN;
}

describe('NVMe model under a driver, through the IOMMU', () => {
  let dir: string;
  let path: string;
  let fd: number;
  let rig: Rig;
  let model: NvmeModel;
  let bar: Uint8Array;
  let busMaster: boolean;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'nvme-'));
    path = join(dir, 'disk.img');
    fd = openSync(path, 'w+');
    ftruncateSync(fd, 4 * MiB);
    rig = makeRig();
    bar = new Uint8Array(4096);
    busMaster = true;
  });
  afterEach(() => {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  });

  function mk(io?: MediumIo, mediumJobs?: number): ReturnType<Rig['port']> {
    let raise = () => {};
    model = new NvmeModel({ unit: rig.unit, mem: rig.mem, sid: rig.sid, bar, medium: { fd, size: 4 * MiB, io }, mediumJobs, busMaster: () => busMaster, raiseIrq: () => raise() });
    const port = rig.port(bar, () => model.kick());
    raise = () => port.raise();
    return port;
  }

  async function driver(opts: NvmeDriverOptions = {}, io?: MediumIo, mediumJobs?: number): Promise<NvmeDriver> {
    const d = new NvmeDriver('t', mk(io, mediumJobs), rig.driverMem, 4 * MiB, false, opts);
    await d.start();
    return d;
  }

  it('writes, flushes, reads back and discards, multi-page transfers through PRP lists', async () => {
    const d = await driver({ depth: 8, slotPages: 16 });
    const data = new Uint8Array(200 * 1024).map((_, i) => (i * 7 + 3) & 0xff);
    await io((cb) => d.write(data, 0, data.length, 512 * 100, cb));
    await io((cb) => d.flush(cb));
    const file = readFileSync(path);
    expect(Buffer.compare(file.subarray(51200, 51200 + data.length), Buffer.from(data))).toBe(0);
    const back = new Uint8Array(data.length);
    await io((cb) => d.read(back, 0, back.length, 512 * 100, cb));
    expect(back).toEqual(data);
    // vectored, unaligned to pages but sector sized
    const a = new Uint8Array(1536).fill(0xaa);
    const b = new Uint8Array(6656).fill(0xbb);
    await io((cb) => d.writev([a, b], 3 * MiB, cb));
    const x = new Uint8Array(1536);
    const y = new Uint8Array(6656);
    await io((cb) => d.readv([x, y], 3 * MiB, cb));
    expect(x.every((v) => v === 0xaa) && y.every((v) => v === 0xbb)).toBe(true);
    await io((cb) => d.discard(3 * MiB, 8192, cb));
    await io((cb) => d.readv([x, y], 3 * MiB, cb));
    expect(x.every((v) => v === 0) && y.every((v) => v === 0)).toBe(true);
    expect(model.stats.dmaFaults).toBe(0);
    expect(rig.faults).toEqual([]);
    // many concurrent requests, more than the queue holds
    const jobs: Promise<void>[] = [];
    for (let i = 0; i < 40; i++) jobs.push(io((cb) => d.write(new Uint8Array(4096).fill(i), 0, 4096, i * 4096, cb)));
    await Promise.all(jobs);
    const f2 = readFileSync(path);
    for (let i = 0; i < 40; i++) expect(f2[i * 4096 + 17]).toBe(i);
    await d.close();
  });

  it('refuses out-of-range and misaligned requests before they reach the device', async () => {
    const d = await driver();
    await expect(io((cb) => d.read(new Uint8Array(512), 0, 512, 4 * MiB, cb))).rejects.toThrow(/not whole sectors inside/);
    await expect(io((cb) => d.read(new Uint8Array(512), 0, 100, 0, cb))).rejects.toThrow(/not whole sectors/);
  });

  // A hand-driven controller for hostile programming.
  type Cqe = { status: number; dw0: number; cid: number };
  function raw(medium?: MediumIo): { sq: number; cq: number; submit(fill: (dv: DataView) => void): Cqe | null; poll(): Cqe | null; submitWait(fill: (dv: DataView) => void): Promise<Cqe>; stage(fill: (dv: DataView) => void): void; ring(): void; sqBytes: Uint8Array } {
    mk(medium);
    const sq = rig.driverMem.alloc(1);
    const cq = rig.driverMem.alloc(1);
    const w = new Int32Array(bar.buffer);
    enableAdmin(w, sq.iova, cq.iova, 8);
    model.kick();
    expect(w[R.CSTS >> 2] & NVME_CSTS_RDY).toBe(NVME_CSTS_RDY);
    let tail = 0;
    let head = 0;
    let phase = 1;
    return {
      sq: sq.iova,
      cq: cq.iova,
      sqBytes: sq.bytes,
      submit(fill) {
        const dv = new DataView(sq.bytes.buffer, sq.bytes.byteOffset + tail * 64, 64);
        for (let i = 0; i < 64; i += 4) dv.setUint32(i, 0, true);
        dv.setUint32(SQE.NSID, 1, true);
        fill(dv);
        tail = (tail + 1) % 8;
        w[R.SQ0TDBL >> 2] = tail;
        model.kick();
        return this.poll();
      },
      stage(fill) {
        const dv = new DataView(sq.bytes.buffer, sq.bytes.byteOffset + tail * 64, 64);
        for (let i = 0; i < 64; i += 4) dv.setUint32(i, 0, true);
        dv.setUint32(SQE.NSID, 1, true);
        fill(dv);
        tail = (tail + 1) % 8;
      },
      ring() {
        w[R.SQ0TDBL >> 2] = tail;
        model.kick();
      },
      /** Medium transfers complete on a later turn: wait for the completion entry. */
      async submitWait(fill) {
        let r = this.submit(fill);
        for (let i = 0; r === null && i < 2000; i++) {
          await new Promise((res) => setTimeout(res, 1));
          r = this.poll();
        }
        if (r === null) throw new Error('no completion');
        return r;
      },
      poll() {
        const c = new DataView(cq.bytes.buffer, cq.bytes.byteOffset + head * 16, 16);
        const st = c.getUint16(CQE.STATUS, true);
        if ((st & 1) !== phase) return null;
        head = (head + 1) % 8;
        if (head === 0) phase ^= 1;
        w[R.CQ0HDBL >> 2] = head;
        return { status: statusCode(st), dw0: c.getUint32(CQE.DW0, true), cid: c.getUint16(CQE.CID, true) };
      },
    };
  }

  const rw = (op: number, prp1: number, slba = 0, nlb = 0, cid = 5) => (dv: DataView) => {
    dv.setUint32(SQE.CDW0, op | (cid << 16), true);
    dv.setUint32(SQE.PRP1, prp1 >>> 0, true);
    dv.setUint32(SQE.PRP1 + 4, Math.floor(prp1 / 2 ** 32), true);
    dv.setUint32(SQE.CDW10, slba, true);
    dv.setUint32(SQE.CDW12, nlb, true);
  };

  it('a DMA at an IOVA the owner was not given faults, fails just that command, and records the fault', async () => {
    const c = raw();
    const target = 0x200000; // not mapped in the owner's domain
    const r = c.submit(rw(NVME_OP.READ, target));
    expect(r).toMatchObject({ status: NVME_SC.DATA_TRANSFER_ERROR, dw0: 5, cid: 5 }); // device write: PTE write not set
    const recs = rig.unit.pendingFaults();
    expect(recs).toHaveLength(1);
    expect(recs[0]).toMatchObject({ sid: rig.sid, reason: 5, write: true, address: BigInt(target) });
    expect(rig.mem.has((OWNER_PA + target) / 4096)).toBe(false);
    // past the address width: reason 4, nothing else touched; the controller keeps going
    const r2 = c.submit(rw(NVME_OP.WRITE, 2 ** 50));
    expect(r2).toMatchObject({ status: NVME_SC.DATA_TRANSFER_ERROR, dw0: 4 });
    expect(rig.faults.map((f) => f.reason)).toEqual([5, 4]);
    const ok = rig.driverMem.alloc(1);
    expect(await c.submitWait(rw(NVME_OP.READ, ok.iova))).toMatchObject({ status: NVME_SC.SUCCESS });
  });

  it('a read-only IOMMU entry refuses device writes but serves device reads', async () => {
    const c = raw();
    const page = 0x300000;
    rig.iommu.map(1, page, OWNER_PA + page, { read: true, write: false });
    rig.mem.page((OWNER_PA + page) / 4096).fill(0x5c);
    expect(c.submit(rw(NVME_OP.READ, page))).toMatchObject({ status: NVME_SC.DATA_TRANSFER_ERROR, dw0: 5 });
    expect(rig.mem.page((OWNER_PA + page) / 4096).every((v) => v === 0x5c)).toBe(true);
    expect(await c.submitWait(rw(NVME_OP.WRITE, page, 10))).toMatchObject({ status: NVME_SC.SUCCESS });
    expect(readFileSync(path)[10 * 512 + 3]).toBe(0x5c);
  });

  it('medium transfers finish on a later turn, not inside the doorbell', async () => {
    const c = raw();
    const buf = rig.driverMem.alloc(2);
    expect(c.submit(rw(NVME_OP.WRITE, buf.iova, 0, 7))).toBeNull(); // 4 KiB: still on the threadpool
    expect(c.poll()).toBeNull();
    let r = null;
    for (let i = 0; r === null && i < 2000; i++) {
      await new Promise((res) => setTimeout(res, 1));
      r = c.poll();
    }
    expect(r).toMatchObject({ status: NVME_SC.SUCCESS, cid: 5 });
    expect(model.busySlots).toBe(0);
  });

  it('a flush completes after every write fetched before it, and covers them', async () => {
    const c = raw();
    const buf = rig.driverMem.alloc(16);
    buf.bytes.fill(0x3c);
    // six 4 KiB writes and a flush in one doorbell
    for (let i = 0; i < 6; i++) c.stage(rw(NVME_OP.WRITE, buf.iova + i * 4096, i * 8, 7, 10 + i));
    c.stage((dv) => dv.setUint32(SQE.CDW0, NVME_OP.FLUSH | (99 << 16), true));
    c.ring();
    const got: number[] = [];
    for (let i = 0; got.length < 7 && i < 2000; i++) {
      const r = c.poll();
      if (r === null) await new Promise((res) => setTimeout(res, 1));
      else {
        expect(r.status).toBe(NVME_SC.SUCCESS);
        got.push(r.cid);
      }
    }
    expect(got).toHaveLength(7);
    expect(got[6]).toBe(99);
    expect(model.stats).toMatchObject({ writes: 6, flushes: 1 });
    expect(readFileSync(path).subarray(0, 6 * 4096).every((v) => v === 0x3c)).toBe(true);
  });

  async function collect(c: ReturnType<typeof raw>, n: number): Promise<Map<number, number>> {
    const got = new Map<number, number>();
    for (let i = 0; got.size < n && i < 2000; i++) {
      const r = c.poll();
      if (r === null) await new Promise((res) => setTimeout(res, 1));
      else got.set(r.cid, r.status);
    }
    return got;
  }

  it('the reads and writes of one doorbell on adjacent blocks reach the medium as one vectored transfer each', async () => {
    const c = raw();
    // four 4 KiB writes from scattered pages onto adjacent blocks, one elsewhere, two adjacent reads
    const pages = [3, 0, 2, 1].map((i) => {
      const p = rig.driverMem.alloc(1);
      p.bytes.fill(0x10 + i);
      return p;
    });
    pages.forEach((p, i) => c.stage(rw(NVME_OP.WRITE, p.iova, i * 8, 7, 20 + i)));
    c.stage(rw(NVME_OP.WRITE, pages[0].iova, 100, 7, 24));
    const rd = rig.driverMem.alloc(2);
    rd.bytes.fill(0xff);
    c.stage(rw(NVME_OP.READ, rd.iova, 400, 7, 25));
    c.stage(rw(NVME_OP.READ, rd.iova + 4096, 408, 7, 26));
    c.ring();
    const got = await collect(c, 7);
    expect([...got.values()]).toEqual([0, 0, 0, 0, 0, 0, 0]);
    expect(model.stats).toMatchObject({ writes: 5, reads: 2, transfers: 3, bytesWritten: 5 * 4096, bytesRead: 8192 });
    const f = readFileSync(path);
    [0x13, 0x10, 0x12, 0x11].forEach((v, i) => expect(f.subarray(i * 4096, (i + 1) * 4096).every((b) => b === v)).toBe(true));
    expect(f.subarray(100 * 512, 100 * 512 + 4096).every((b) => b === 0x13)).toBe(true);
    expect(rd.bytes.every((b) => b === 0)).toBe(true);
    expect(model.busySlots).toBe(0);
  });

  it('a short batched transfer completes the commands it covered and finishes the rest one by one', async () => {
    const c = raw();
    // the file shrank under the controller: the last 2 KiB of the namespace are past its end
    ftruncateSync(fd, 4 * MiB - 2048);
    const end = (4 * MiB) / 512;
    const rd = rig.driverMem.alloc(2);
    c.stage(rw(NVME_OP.READ, rd.iova, end - 16, 7, 30));
    c.stage(rw(NVME_OP.READ, rd.iova + 4096, end - 8, 7, 31));
    c.ring();
    const got = await collect(c, 2);
    expect(got.get(30)).toBe(NVME_SC.SUCCESS);
    expect(got.get(31)).toBe(NVME_SC.UNRECOVERED_READ);
    expect(model.stats.transfers).toBe(1);
    expect(model.busySlots).toBe(0);
  });

  it('a reset or a close while a transfer is in flight drops its completion; the new queues stay clean', async () => {
    const c = raw();
    const buf = rig.driverMem.alloc(16);
    expect(c.submit(rw(NVME_OP.READ, buf.iova, 0, 7, 7))).toBeNull();
    // the driver resets the controller and sets it up again with fresh queues
    const w = new Int32Array(bar.buffer);
    w[R.CC >> 2] = 0;
    model.kick();
    const sq = rig.driverMem.alloc(1);
    const cq = rig.driverMem.alloc(1);
    enableAdmin(w, sq.iova, cq.iova, 8);
    model.kick();
    for (let i = 0; model.busySlots > 0 && i < 2000; i++) await new Promise((res) => setTimeout(res, 1));
    expect(model.busySlots).toBe(0);
    expect(cq.bytes.every((v) => v === 0)).toBe(true);
    expect(model.stats.reads).toBe(0);
    // a replaced model (new owner): a late completion touches nothing and throws nothing
    const c2 = raw();
    const buf2 = rig.driverMem.alloc(16);
    expect(c2.submit(rw(NVME_OP.READ, buf2.iova, 0, 7, 8))).toBeNull();
    const old = model;
    old.close();
    for (let i = 0; old.busySlots > 0 && i < 2000; i++) await new Promise((res) => setTimeout(res, 1));
    expect(old.busySlots).toBe(0);
    expect(c2.poll()).toBeNull();
    expect(old.stats.reads).toBe(0);
  });

  it('answers hostile register values with a fatal status or an error completion, never a throw', () => {
    const c = raw();
    expect(c.submit((dv) => dv.setUint32(SQE.CDW0, 0x7f | (1 << 16), true))).toMatchObject({ status: NVME_SC.INVALID_OPCODE, cid: 1 });
    expect(c.submit(rw(NVME_OP.READ, 0x1000, 0xffffffff))).toMatchObject({ status: NVME_SC.LBA_OUT_OF_RANGE });
    expect(c.submit(rw(NVME_OP.READ, 0x1002))).toMatchObject({ status: NVME_SC.PRP_OFFSET_INVALID });
    expect(c.submit(rw(NVME_OP.READ, 0x1000, 0, 0xffff))).toMatchObject({ status: NVME_SC.INVALID_FIELD });
    expect(c.submit((dv) => { rw(NVME_OP.READ, 0x1000)(dv); dv.setUint32(SQE.NSID, 9, true); })).toMatchObject({ status: NVME_SC.INVALID_NAMESPACE });
    // a PRP list pointing at itself forever, and one at an unmapped page
    const w = new Int32Array(bar.buffer);
    w[R.SQ0TDBL >> 2] = 100; // beyond the 8-entry queue
    model.kick();
    expect(w[R.CSTS >> 2] & NVME_CSTS_CFS).toBe(NVME_CSTS_CFS);
    expect(w[R.CFS_REASON >> 2]).toBe(NVME_CFS.BAD_SQ_DOORBELL);
    // disable + re-enable with nonsense queue sizes and bases
    w[R.CC >> 2] = 0;
    model.kick();
    w[R.AQA >> 2] = 0;
    w[R.ASQ >> 2] = 0x1234;
    w[R.CC >> 2] = NVME_CC_EN;
    model.kick();
    expect(w[R.CFS_REASON >> 2]).toBe(NVME_CFS.BAD_QUEUE_CONFIG);
  });

  it('without bus mastering the controller issues no DMA', () => {
    busMaster = false;
    mk();
    const w = new Int32Array(bar.buffer);
    enableAdmin(w, 0x700000, 0x701000, 8);
    model.kick();
    w[R.SQ0TDBL >> 2] = 1;
    model.kick();
    expect(rig.faults).toEqual([]);
    expect(rig.unit.stats.translations).toBe(0);
  });

  it('in quarantine every DMA faults: the queue fetch fails and the controller stops', () => {
    rig.iommu.attach(rig.bdf, 'quarantine');
    mk();
    const w = new Int32Array(bar.buffer);
    enableAdmin(w, 0x1000, 0x2000, 8);
    model.kick();
    w[R.SQ0TDBL >> 2] = 1;
    model.kick();
    expect(w[R.CSTS >> 2] & NVME_CSTS_CFS).toBe(NVME_CSTS_CFS);
    expect(w[R.CFS_REASON >> 2]).toBe(NVME_CFS.SQ_FETCH_FAULT);
    expect(rig.faults[0]).toMatchObject({ sid: rig.sid, iova: 0x1000, reason: 6, write: false });
  });

  /** Lets the interrupt, the driver's reaction and a few doorbells run. */
  async function settle(): Promise<void> {
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
    await new Promise((r) => setTimeout(r, 10));
  }


  /** A driver writes an SQ tail doorbell outside its queue: the controller goes fatal. */
  function goFatal(): void {
    new Int32Array(bar.buffer)[R.SQ0TDBL >> 2] = 100;
    model.kick();
  }

  interface Ending {
    err: Error | null;
    /** whether the medium transfer had returned when the request completed */
    landed: boolean;
    /** the request's memory when it completed */
    bytes: Uint8Array;
  }

  /** A one-page read straight into driver memory (the blkback device_map path), over a held medium. */
  async function heldRead(d: NvmeDriver, held: HeldMedium): Promise<{ page: Uint8Array; ends: Ending[] }> {
    writeSync(fd, new Uint8Array(4096).fill(0xab), 0, 4096, 8 * 512);
    const page = rig.driverMem.alloc(1);
    page.bytes.fill(0x11);
    const list = new DmaList(1);
    list.push(page.iova, 4096);
    const ends: Ending[] = [];
    expect(d.readDma(list, 8 * 512, (err) => ends.push({ err, landed: held.held[0].landed, bytes: page.bytes.slice() }))).toBe(true);
    await held.heldCount(1);
    return { page: page.bytes, ends };
  }

  it('a fatal status while a transfer is in flight: the request fails only once the controller dropped RDY, its bytes in place', async () => {
    const held = new HeldMedium();
    const logs: string[] = [];
    const d = await driver({ log: (l) => logs.push(l) }, held);
    const { page, ends } = await heldRead(d, held);
    goFatal();
    await settle();
    // the driver disabled the controller, which still runs the transfer: nothing may complete yet
    const w = new Int32Array(bar.buffer);
    expect(w[R.CC >> 2] & NVME_CC_EN).toBe(0);
    expect(w[R.CSTS >> 2] & NVME_CSTS_RDY).toBe(NVME_CSTS_RDY);
    expect(ends).toEqual([]);
    expect(page.every((b) => b === 0x11)).toBe(true);
    held.release(0);
    await waitFor(() => ends.length > 0);
    expect(ends).toHaveLength(1);
    expect(ends[0].err?.message).toMatch(/controller fatal status \(reason 2\)/);
    // the bytes the controller moved while the request was outstanding, and none after
    expect(ends[0].landed).toBe(true);
    expect(ends[0].bytes.every((b) => b === 0xab)).toBe(true);
    expect(w[R.CSTS >> 2] & NVME_CSTS_RDY).toBe(0);
    expect(model.busySlots).toBe(0);
    await expect(io((cb) => d.read(new Uint8Array(512), 0, 512, 0, cb))).rejects.toThrow(/controller fatal status/);
    await d.close();
    expect(logs).toEqual([]);
  });

  it('opened and closed again and again, the driver takes its pages anew each time and gives them all back', async () => {
    for (let i = 0; i < 5; i++) {
      const d = await driver();
      expect(rig.driverPagesHeld()).toBe(2 + 32 * (16 + 1));
      const buf = new Uint8Array(4096).fill(i);
      await new Promise<void>((res, rej) => d.write(buf, 0, 4096, 0, (e) => (e ? rej(e) : res())));
      await d.close();
      expect(rig.driverPagesHeld()).toBe(0);
    }
    // a domain out of memory halfway through a new driver gets back what it had taken
    let left = 7;
    const scarce = { alloc: (n: number) => (left-- > 0 ? rig.driverMem.alloc(n) : (() => { throw new Error('out of I/O frames'); })()), free: (p: DmaPages) => rig.driverMem.free(p) };
    expect(() => new NvmeDriver('t', mk(), scarce, 4 * MiB, false)).toThrow(/out of I\/O frames/);
    expect(rig.driverPagesHeld()).toBe(0);
  });

  it('close fails what the controller holds only once it dropped RDY', async () => {
    const held = new HeldMedium();
    const d = await driver({}, held);
    const { ends } = await heldRead(d, held);
    let closed = false;
    const closing = d.close().then(() => {
      closed = true;
    });
    await settle();
    expect(ends).toEqual([]);
    expect(closed).toBe(false);
    expect(rig.driverPagesHeld(), 'pages given back before the controller stopped').toBeGreaterThan(0);
    held.release(0);
    await closing;
    // every page the driver took is back with the domain (the one left is the test's read buffer)
    expect(rig.driverPagesHeld()).toBe(1);
    expect(ends).toHaveLength(1);
    expect(ends[0].err?.message).toMatch(/t is closed/);
    expect(ends[0].landed).toBe(true);
    expect(ends[0].bytes.every((b) => b === 0xab)).toBe(true);
  });

  it('a controller that never drops RDY is lost: what it holds stays outstanding for good, and the owner is told', async () => {
    const held = new HeldMedium();
    const logs: string[] = [];
    const d = await driver({ depth: 1, stopTimeoutMs: 30, log: (l) => logs.push(l) }, held);
    const { ends } = await heldRead(d, held);
    // with one slot, a second request waits in the driver: the controller never saw it
    const waited: (Error | null)[] = [];
    d.read(new Uint8Array(512), 0, 512, 0, (e) => waited.push(e));
    const lost: string[] = [];
    d.onLost((why) => lost.push(why));
    await d.close();
    expect(lost).toHaveLength(1);
    expect(lost[0]).toMatch(/controller still busy 30 ms after it was disabled: device lost; 1 request\(s\) stay outstanding/);
    expect(d.lost).toBe(lost[0]);
    expect(logs).toEqual([lost[0]]);
    expect(waited).toHaveLength(1);
    expect(waited[0]?.message).toMatch(/device lost/);
    expect(ends).toEqual([]);
    // the lost controller may still write into its pages: none went back to the domain
    expect(rig.driverPagesHeld()).toBe(2 + 1 * (16 + 1) + 1);
    // a late listener hears it too
    const late: string[] = [];
    d.onLost((why) => late.push(why));
    expect(late).toEqual(lost);
    // even once the transfer lands the request is never completed
    held.release(0);
    await waitFor(() => held.held[0].landed);
    await settle();
    expect(ends).toEqual([]);
    expect(model.busySlots).toBe(0);
  });

  it('a fatal status ends a request cut into several commands exactly once', async () => {
    const held = new HeldMedium();
    const p = mk(held);
    const thrown: unknown[] = [];
    // what the interrupt handler throws would be lost in setImmediate: keep it
    const port = { ...p, onIrq: (f: () => void) => p.onIrq(() => {
      try {
        f();
      } catch (e) {
        thrown.push(e);
      }
    }) };
    const d = new NvmeDriver('t', port, rig.driverMem, 4 * MiB, false, { depth: 2, slotPages: 1 });
    await d.start();
    // four 4 KiB commands: two in the slots (one pwritev), two still waiting for a slot
    const calls: (Error | null)[] = [];
    d.write(new Uint8Array(16384).fill(7), 0, 16384, 0, (e) => calls.push(e));
    await held.heldCount(1);
    expect(held.held[0].bytes).toBe(8192);
    goFatal();
    await settle();
    held.releaseAll();
    await waitFor(() => calls.length > 0 || thrown.length > 0);
    await settle();
    expect(thrown).toEqual([]);
    expect(calls).toHaveLength(1);
    expect(calls[0]?.message).toMatch(/controller fatal status/);
    // the request record went back to the pool once
    const pool = (d as unknown as { pool: object[] }).pool;
    expect(pool).toHaveLength(1);
  });

  it('a batch of several commands ending with every slot taken leaves the controller serving', async () => {
    const held = new HeldMedium();
    // every transfer on the medium at once, so that each holds its slot there
    mk(held, 64);
    const n = 128;
    const sq = rig.driverMem.alloc(2);
    const cq = rig.driverMem.alloc(1);
    const w = new Int32Array(bar.buffer);
    enableAdmin(w, sq.iova, cq.iova, n);
    model.kick();
    const data = rig.driverMem.alloc(1);
    let tail = 0;
    let head = 0;
    let phase = 1;
    const stage = (cid: number, slba: number): void => {
      const dv = new DataView(sq.bytes.buffer, sq.bytes.byteOffset + tail * 64, 64);
      for (let i = 0; i < 64; i += 4) dv.setUint32(i, 0, true);
      dv.setUint32(SQE.NSID, 1, true);
      rw(NVME_OP.READ, data.iova, slba, 7, cid)(dv);
      tail = (tail + 1) % n;
    };
    const ring = (): void => {
      w[R.SQ0TDBL >> 2] = tail;
      model.kick();
    };
    const got = new Map<number, number>();
    const poll = (): void => {
      for (;;) {
        const c = new DataView(cq.bytes.buffer, cq.bytes.byteOffset + head * 16, 16);
        const st = c.getUint16(CQE.STATUS, true);
        if ((st & 1) !== phase) return;
        got.set(c.getUint16(CQE.CID, true), statusCode(st));
        head = (head + 1) % n;
        if (head === 0) phase ^= 1;
        w[R.CQ0HDBL >> 2] = head;
      }
    };
    // 64 commands take every slot the model has: two adjacent reads share one transfer, the
    // 62 scattered ones have one each, so one batch is left in the pool
    stage(0, 0);
    stage(1, 8);
    for (let i = 2; i < 64; i++) stage(i, i * 64);
    ring();
    await held.heldCount(63);
    expect(held.held[0].bytes).toBe(8192);
    // two more wait for slots; when the shared transfer ends, each of its slots takes one
    stage(64, 5000);
    stage(65, 5100);
    ring();
    held.release(0);
    await held.heldCount(65);
    held.releaseAll();
    await waitFor(() => {
      poll();
      return got.size === 66;
    });
    expect([...got.values()].every((v) => v === NVME_SC.SUCCESS)).toBe(true);
    // and later doorbells are still heard
    stage(66, 0);
    ring();
    await waitFor(() => {
      poll();
      return got.has(66);
    });
    expect(model.busySlots).toBe(0);
  });

  it('a memory list PRPs cannot express is refused by readDma/writeDma itself: nothing starts, no callback', async () => {
    const d = await driver();
    const pages = rig.driverMem.alloc(2);
    const list = new DmaList(2);
    list.push(pages.iova, 3584); // the first chunk stops short of its page end
    list.push(pages.iova + 4096, 4096);
    const calls: (Error | null)[] = [];
    expect(d.readDma(list, 0, (e) => calls.push(e))).toBe(false);
    expect(d.writeDma(list, 0, (e) => calls.push(e))).toBe(false);
    await settle();
    expect(calls).toEqual([]);
    expect(d.stats.commands).toBe(0);
    expect(d.stats.dmaBytes).toBe(0);
    await d.close();
  });

  it('respects an MDTS below two pages: direct and bounced transfers go a page per command', async () => {
    const p = mk();
    new Int32Array(bar.buffer)[R.MDTS >> 2] = 1;
    const d = new NvmeDriver('t', p, rig.driverMem, 4 * MiB, false, { slotPages: 4 });
    await d.start();
    await io((cb) => d.write(new Uint8Array(8192).fill(3), 0, 8192, 0, cb));
    expect(model.stats.writes).toBe(2);
    const pages = rig.driverMem.alloc(2);
    const list = new DmaList(1);
    list.push(pages.iova, 8192);
    await io((cb) => {
      expect(d.readDma(list, 0, cb)).toBe(true);
    });
    expect(model.stats.reads).toBe(2);
    expect(pages.bytes.every((b) => b === 3)).toBe(true);
    await d.close();
  });

  it('clearing CC.EN keeps RDY until the transfers in flight returned; an earlier enable takes effect only then', async () => {
    const held = new HeldMedium();
    const c = raw(held);
    const buf = rig.driverMem.alloc(1);
    expect(c.submit(rw(NVME_OP.READ, buf.iova, 0, 7, 7))).toBeNull();
    await held.heldCount(1);
    const w = new Int32Array(bar.buffer);
    w[R.CC >> 2] = 0;
    model.kick();
    expect(w[R.CSTS >> 2] & NVME_CSTS_RDY).toBe(NVME_CSTS_RDY);
    // a driver that does not wait for RDY=0: fresh queues, enabled, a command rung
    const sq = rig.driverMem.alloc(1);
    const cq = rig.driverMem.alloc(1);
    enableAdmin(w, sq.iova, cq.iova, 8);
    model.kick();
    const e = new DataView(sq.bytes.buffer, sq.bytes.byteOffset, 64);
    e.setUint32(SQE.NSID, 1, true);
    e.setUint32(SQE.CDW0, NVME_OP.FLUSH | (9 << 16), true);
    w[R.SQ0TDBL >> 2] = 1;
    model.kick();
    expect(model.stats.commands).toBe(1); // the controller is still resetting: nothing fetched
    held.release(0);
    // the reset completes (RDY falls), then the pending enable takes effect (RDY rises)
    await waitFor(() => model.busySlots === 0);
    expect(w[R.CSTS >> 2] & NVME_CSTS_RDY).toBe(NVME_CSTS_RDY);
    expect(model.stats.reads).toBe(0); // the old command's completion was dropped
    w[R.SQ0TDBL >> 2] = 1; // the enable cleared the doorbell rung too early
    model.kick();
    await waitFor(() => cq.bytes[14] !== 0);
    const cqe = new DataView(cq.bytes.buffer, cq.bytes.byteOffset, 16);
    expect(cqe.getUint16(CQE.CID, true)).toBe(9);
    expect(statusCode(cqe.getUint16(CQE.STATUS, true))).toBe(NVME_SC.SUCCESS);
  });

  /** Queues of `n` entries on an enabled controller, and a way to stage and reap raw commands. */
  function rawQueues(n: number) {
    const sq = rig.driverMem.alloc(Math.ceil((n * 64) / 4096));
    const cq = rig.driverMem.alloc(Math.ceil((n * 16) / 4096));
    const w = new Int32Array(bar.buffer);
    enableAdmin(w, sq.iova, cq.iova, n);
    model.kick();
    let tail = 0;
    let head = 0;
    let phase = 1;
    return {
      w,
      stage(cdw0: number): void {
        const dv = new DataView(sq.bytes.buffer, sq.bytes.byteOffset + tail * 64, 64);
        for (let i = 0; i < 64; i += 4) dv.setUint32(i, 0, true);
        dv.setUint32(SQE.NSID, 1, true);
        dv.setUint32(SQE.CDW0, cdw0, true);
        tail = (tail + 1) % n;
        w[R.SQ0TDBL >> 2] = tail;
      },
      reap(): number {
        let k = 0;
        for (;;) {
          const st = new DataView(cq.bytes.buffer, cq.bytes.byteOffset + head * 16, 16).getUint16(CQE.STATUS, true);
          if ((st & 1) !== phase) return k;
          k++;
          head = (head + 1) % n;
          if (head === 0) phase ^= 1;
          w[R.CQ0HDBL >> 2] = head;
        }
      },
    };
  }

  it('an exception inside the model stops this controller alone: CSTS.CFS, reason INTERNAL, logged', () => {
    const logs: string[] = [];
    let broken = false;
    model = new NvmeModel({
      unit: rig.unit, mem: rig.mem, sid: rig.sid, bar, medium: { fd, size: 4 * MiB }, raiseIrq: () => {}, log: (m) => logs.push(m),
      busMaster: () => {
        if (broken) throw new Error('bus master lookup broke');
        return true;
      },
    });
    const q = rawQueues(8);
    expect(q.w[R.CSTS >> 2]).toBe(NVME_CSTS_RDY);
    broken = true;
    q.stage(NVME_OP.FLUSH);
    expect(() => model.kick()).not.toThrow();
    expect(q.w[R.CSTS >> 2] & NVME_CSTS_CFS).toBe(NVME_CSTS_CFS);
    expect(q.w[R.CFS_REASON >> 2]).toBe(NVME_CFS.INTERNAL);
    expect(logs.join('\n')).toMatch(/internal error: bus master lookup broke/);
  });

  it("an enable waits, RDY 0, while an earlier model's transfers may still land; past 10 s it says so and keeps waiting", () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      const logs: string[] = [];
      let free = false;
      model = new NvmeModel({
        unit: rig.unit, mem: rig.mem, sid: rig.sid, bar, medium: { fd, size: 4 * MiB }, raiseIrq: () => {}, busMaster: () => true,
        log: (m) => logs.push(m), mediumFree: () => free,
      });
      const sq = rig.driverMem.alloc(1);
      const cq = rig.driverMem.alloc(1);
      const w = new Int32Array(bar.buffer);
      enableAdmin(w, sq.iova, cq.iova, 8);
      model.kick();
      expect(w[R.CSTS >> 2] & NVME_CSTS_RDY).toBe(0);
      vi.advanceTimersByTime(ENABLE_HELD_LOG_MS);
      expect(logs.join('\n')).toMatch(/enable held 10 s: the previous owner's transfers on this medium have not returned/);
      model.kick();
      expect(w[R.CSTS >> 2] & NVME_CSTS_RDY).toBe(0);
      free = true;
      model.kick();
      expect(w[R.CSTS >> 2] & NVME_CSTS_RDY).toBe(NVME_CSTS_RDY);
      expect(model.ready).toBe(true);
    } finally {
      vi.useRealTimers();
    }
  });

  it('a driver whose controller is held not ready logs the wait and keeps waiting rather than fail', async () => {
    let free = false;
    let raise = () => {};
    model = new NvmeModel({ unit: rig.unit, mem: rig.mem, sid: rig.sid, bar, medium: { fd, size: 4 * MiB }, busMaster: () => true, raiseIrq: () => raise(), mediumFree: () => free });
    const port = rig.port(bar, () => model.kick());
    raise = () => port.raise();
    const logs: string[] = [];
    const d = new NvmeDriver('t', port, rig.driverMem, 4 * MiB, false, { log: (l) => logs.push(l) });
    let started = false;
    const starting = d.start(5).then(() => (started = true));
    for (let i = 0; logs.length === 0; i++) {
      if (i > 2000) throw new Error('the wait was never logged');
      await new Promise((r) => setTimeout(r, 1));
    }
    expect(logs[0]).toMatch(/t: controller not ready 5 ms after it was enabled; still waiting/);
    expect(started).toBe(false);
    free = true;
    model.kick(); // what hw does once the earlier model's last transfer returned
    await starting;
    await io((cb) => d.write(new Uint8Array(4096).fill(0x3c), 0, 4096, 0, cb));
    expect(readFileSync(path)[17]).toBe(0x3c);
    await d.close();
  });

  it('one doorbell fetches a bounded number of commands; the rest follow on later turns', async () => {
    mk();
    const q = rawQueues(256);
    for (let i = 0; i < 200; i++) q.stage(0x7f | (i << 16)); // an unknown opcode: completed at once, no medium
    model.kick();
    const now = q.reap();
    expect(now).toBeGreaterThan(0);
    expect(now).toBeLessThan(200);
    let all = now;
    await waitFor(() => (all += q.reap()) === 200);
    expect(model.stats.commands).toBe(200);
  });

  it('a deallocate never punches inside the doorbell, and a later write to its range lands after the hole', async () => {
    const d = await driver();
    await io((cb) => d.write(new Uint8Array(16384).fill(0x55), 0, 16384, 64 * 1024, cb));
    const punch = vi.spyOn(native, 'punchHole');
    const kick = model.kick.bind(model);
    let punchedInKick = 0;
    model.kick = () => {
      const before = punch.mock.calls.length;
      kick();
      punchedInKick += punch.mock.calls.length - before;
    };
    try {
      const discarded = io((cb) => d.discard(64 * 1024, 16384, cb));
      const rewritten = io((cb) => d.write(new Uint8Array(4096).fill(0x77), 0, 4096, 64 * 1024, cb));
      const flushed = io((cb) => d.flush(cb));
      await Promise.all([discarded, rewritten, flushed]);
      expect(punch).toHaveBeenCalled();
      expect(punchedInKick).toBe(0);
    } finally {
      punch.mockRestore();
    }
    const back = new Uint8Array(16384);
    await io((cb) => d.read(back, 0, back.length, 64 * 1024, cb));
    expect(back.subarray(0, 4096).every((v) => v === 0x77)).toBe(true);
    expect(back.subarray(4096).every((v) => v === 0)).toBe(true);
  });

  it('keeps at most its cap of transfers on the shared threadpool; the rest wait their turn', async () => {
    const held = new HeldMedium();
    const cap = 4;
    expect(MEDIUM_JOBS).toBeGreaterThanOrEqual(cap); // the default lets a QD32 guest keep its depth
    const d = await driver({}, held, cap);
    const calls: (Error | null)[] = [];
    // scattered reads: no two share a transfer
    for (let i = 0; i < 12; i++) d.read(new Uint8Array(4096), 0, 4096, i * 128 * 1024, (e) => calls.push(e));
    await held.heldCount(cap);
    await settle();
    expect(held.held).toHaveLength(cap);
    expect(model.busySlots).toBe(12);
    held.releaseAll();
    await waitFor(() => calls.length === 12);
    expect(calls.every((e) => e === null)).toBe(true);
    expect(model.busySlots).toBe(0);
  });

  it('an old owner whose page reads all-ones once the transfers returned fails its requests at once, not after the stop timeout', async () => {
    const held = new HeldMedium();
    const port = mk(held);
    const d = new NvmeDriver('t', port, rig.driverMem, 4 * MiB, false, { stopTimeoutMs: 60_000, log: () => {} });
    await d.start();
    const calls: (Error | null)[] = [];
    d.write(new Uint8Array(8192).fill(3), 0, 8192, 0, (e) => calls.push(e));
    await held.heldCount(1);
    // what hw does when the device gets a fresh transport: the old model is closed, and once it
    // has nothing in flight its page reads all-ones and the old owner's interrupt fires
    model.close();
    let removed = false;
    model.whenIdle(() => {
      removed = true;
      new Int32Array(bar.buffer).fill(-1);
      port.raise();
    });
    await settle();
    expect(removed).toBe(false); // the transfer is still moving the owner's memory
    expect(calls).toEqual([]);
    held.releaseAll();
    await waitFor(() => calls.length > 0);
    expect(removed).toBe(true);
    expect(calls[0]?.message).toMatch(/gone/);
    expect(d.removed).toBe(true);
    expect(d.lost).toBeNull();
    const later: (Error | null)[] = [];
    d.read(new Uint8Array(512), 0, 512, 0, (e) => later.push(e));
    expect(later[0]?.message).toMatch(/gone/);
    await d.close();
  });
});
