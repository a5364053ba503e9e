// The vhost-user backend against a frontend written here from the spec: a whole handshake and
// virtio-blk I/O through shared memory and eventfds, then hostile messages. Each hostile one ends
// the connection with a logged reason naming it, leaks no descriptor, and leaves the socket
// listening for the next frontend.
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../testing/until.js';
import {
  VHOST_USER_F_PROTOCOL_FEATURES,
  VHOST_USER_NEED_REPLY,
  VHOST_F_LOG_ALL,
  VHOST_USER_PROTOCOL_F_CONFIG,
  VHOST_USER_PROTOCOL_F_LOG_SHMFD,
  VHOST_USER_PROTOCOL_F_MQ,
  VHOST_USER_PROTOCOL_F_REPLY_ACK,
  VHOST_USER_REPLY,
  VHOST_USER_VERSION,
  VHOST_VRING_F_LOG,
  VhostUserRequest as R,
} from '../abi/vhost-user.js';
import {
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
  VIRTIO_F_VERSION_1,
  VIRTIO_RING_F_EVENT_IDX,
  bit,
} from '../abi/virtio.js';
import { RawFile } from '../blkdev/raw-file.js';
import { native } from '../native/index.js';
import { VirtioBlk } from '../virtio/blk.js';
import { VhostUserServer } from './server.js';
import { Frontend, GUEST, logBase, memTable, startBlkQueue, vringAddr } from './testing/frontend.js';

const { MEM, GPA, UADDR, DESC, AVAIL, USED, QSIZE } = GUEST;

/** Memory, ring 0 and a kick: the ring runs once the backend has read these. */
function runningRing(fe: Frontend, memfd: number): void {
  fe.u64(R.SET_FEATURES, bit(VHOST_USER_F_PROTOCOL_FEATURES) | bit(VIRTIO_F_VERSION_1));
  fe.send(R.SET_MEM_TABLE, memTable([{ gpa: GPA, size: MEM, uaddr: UADDR, off: 0 }]), [memfd]);
  fe.state(R.SET_VRING_NUM, 0, QSIZE);
  fe.send(R.SET_VRING_ADDR, vringAddr(0, UADDR + DESC, UADDR + USED, UADDR + AVAIL));
  const kick = native.eventfd();
  fe.u64(R.SET_VRING_KICK, 0n, VHOST_USER_VERSION, [kick]);
  native.close(kick); // the backend holds its own copy
  fe.state(R.SET_VRING_ENABLE, 0, 1);
}

const openFds = () => readdirSync('/proc/self/fd').length;

interface Rig {
  dir: string;
  disk: string;
  server: VhostUserServer;
  logs: string[];
  gone: string[];
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function rig(): Promise<Rig> {
  const dir = mkdtempSync(join(tmpdir(), 'rs-vu-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const disk = join(dir, 'disk.img');
  writeFileSync(disk, Buffer.alloc(1 << 20));
  const device = await RawFile.open(disk);
  const blk = new VirtioBlk({ name: 'vdt', device, readonly: false, queues: 1, serial: 'unit' });
  const logs: string[] = [];
  const gone: string[] = [];
  const server = new VhostUserServer(join(dir, 'vu.sock'), blk, { log: (l) => logs.push(l), disconnected: (why) => gone.push(why) });
  cleanups.push(async () => {
    await server.close();
    await device.close();
  });
  return { dir, disk, server, logs, gone };
}


describe('vhost-user backend', () => {
  /** A frontend through the whole handshake, ring 0 running; `request` puts one virtio-blk request on it. */
  async function connected(r: Rig, protocol: bigint) {
    const q = await startBlkQueue(r.server.path, protocol);
    cleanups.push(() => q.close());
    expect(q.offered & bit(VHOST_USER_F_PROTOCOL_FEATURES)).not.toBe(0n);
    expect(q.offered & bit(VIRTIO_F_VERSION_1)).not.toBe(0n);
    q.fe.send(R.GET_QUEUE_NUM);
    expect(await q.fe.u64Reply(R.GET_QUEUE_NUM)).toBe(1n);
    // config: capacity in 512-byte sectors
    const cfgReq = new DataView(new ArrayBuffer(12 + 8));
    cfgReq.setUint32(4, 8, true);
    q.fe.send(R.GET_CONFIG, new Uint8Array(cfgReq.buffer));
    const cfg = await q.fe.reply();
    if (cfg === 'closed') throw new Error('closed');
    expect(cfg.payload.getBigUint64(12, true)).toBe(BigInt((1 << 20) / 512));
    return q;
  }

  it('negotiates, takes guest memory and a ring, and serves virtio-blk writes and reads through it', async () => {
    const r = await rig();
    const { fe, ram, call, request } = await connected(r, bit(VHOST_USER_PROTOCOL_F_MQ) | bit(VHOST_USER_PROTOCOL_F_REPLY_ACK) | bit(VHOST_USER_PROTOCOL_F_CONFIG));
    // one write of sector 2, then a read of it
    for (let i = 0; i < 512; i++) ram.setUint8(0x20000 + i, (i * 7 + 1) & 0xff);
    const s1 = await request(VIRTIO_BLK_T_OUT, 2, 0x20000, 512);
    expect(ram.getUint8(s1)).toBe(VIRTIO_BLK_S_OK);
    expect(native.eventfdRead(call[0])).toBeGreaterThan(0);
    const onDisk = readFileSync(r.disk).subarray(1024, 1536);
    expect([...onDisk]).toEqual(Array.from({ length: 512 }, (_, i) => (i * 7 + 1) & 0xff));
    const s2 = await request(VIRTIO_BLK_T_IN, 2, 0x30000, 512);
    expect(ram.getUint8(s2)).toBe(VIRTIO_BLK_S_OK);
    expect(ram.getUint32(USED + 4 + 8 + 4, true)).toBe(513); // bytes written into the driver's buffers: data + status
    expect(new Uint8Array(ram.buffer, 0x30000, 512)).toEqual(new Uint8Array(ram.buffer, 0x20000, 512));

    // stopping the ring answers with where the next backend resumes
    fe.state(R.GET_VRING_BASE, 0, 0);
    const base = await fe.reply();
    if (base === 'closed') throw new Error('closed');
    expect(base.payload.getUint32(4, true)).toBe(2);
    expect(r.gone).toEqual([]);
  });

  it('migration: with a log from SET_LOG_BASE and LOG_ALL switched on under a running ring, every page it writes is marked, and nothing it only reads', async () => {
    const r = await rig();
    const { fe, acked, request } = await connected(r, bit(VHOST_USER_PROTOCOL_F_REPLY_ACK) | bit(VHOST_USER_PROTOCOL_F_LOG_SHMFD));
    const page = (off: number) => (GPA + off) / 4096;
    // QEMU's log covers guest-physical 0 to the top of RAM: one bit per page, at an offset in its memfd
    const logBytes = Math.ceil(page(MEM) / 8);
    const logFd = native.memfdCreate('dirty-log', 4096 + logBytes);
    cleanups.push(() => native.close(logFd));
    const log = new Uint8Array(native.mmap(logFd, 4096 + logBytes, true), 4096, logBytes);
    cleanups.push(() => native.munmap(log.buffer as ArrayBuffer));
    const dirty = (off: number) => (log[page(off) >> 3] >> (page(off) & 7)) & 1;
    fe.send(R.SET_LOG_BASE, logBase(logBytes, 4096), [logFd]);
    expect(await fe.u64Reply(R.SET_LOG_BASE)).toBe(0n); // with LOG_SHMFD the frontend waits for this
    fe.u64(R.SET_FEATURES, acked | bit(VHOST_F_LOG_ALL), VHOST_USER_VERSION | VHOST_USER_NEED_REPLY);
    expect(await fe.u64Reply(R.SET_FEATURES)).toBe(0n);
    fe.send(R.SET_VRING_ADDR, vringAddr(0, UADDR + DESC, UADDR + USED, UADDR + AVAIL, VHOST_VRING_F_LOG, GPA + USED), [], VHOST_USER_VERSION | VHOST_USER_NEED_REPLY);
    expect(await fe.u64Reply(R.SET_VRING_ADDR)).toBe(0n);
    expect(r.logs.some((l) => l.includes('dirty logging on'))).toBe(true);

    // the ring kept running through the switch: a write (its data only read) and a read (its data written)
    await request(VIRTIO_BLK_T_OUT, 4, 0x20000, 4096);
    expect(dirty(0x20000)).toBe(0);
    expect(dirty(USED)).toBe(1); // the used entry
    expect(dirty(0x10000)).toBe(1); // the status byte
    await request(VIRTIO_BLK_T_IN, 4, 0x31000, 8192);
    expect(dirty(0x31000)).toBe(1);
    expect(dirty(0x32000)).toBe(1);
    expect(dirty(0x30000)).toBe(0);
    expect(dirty(0x33000)).toBe(0);

    // logging off (QEMU frees its log): later writes are not marked
    fe.u64(R.SET_FEATURES, acked, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY);
    expect(await fe.u64Reply(R.SET_FEATURES)).toBe(0n);
    await request(VIRTIO_BLK_T_IN, 4, 0x40000, 512);
    expect(dirty(0x40000)).toBe(0);
    expect(r.gone).toEqual([]);
  });

  // Each: what the frontend sends, and what the logged reason must name.
  const hostile: [string, (fe: Frontend, memfd: number) => void, RegExp][] = [
    ['a header of protocol version 2', (fe) => fe.send(R.GET_FEATURES, undefined, [], 2), /protocol version 2; only version 1 exists/],
    ['a header with the reply bit', (fe) => fe.send(R.GET_FEATURES, undefined, [], VHOST_USER_VERSION | VHOST_USER_REPLY), /reply flag set/],
    ['a payload larger than any request', (fe) => fe.send(R.SET_FEATURES, new Uint8Array(8), [], VHOST_USER_VERSION, 1 << 20), /1048576-byte payload/],
    ['SET_FEATURES with a short payload', (fe) => fe.send(R.SET_FEATURES, new Uint8Array(4)), /SET_FEATURES: payload is 4 bytes; it must be 8/],
    ['features never offered', (fe) => fe.u64(R.SET_FEATURES, 1n << 63n), /SET_FEATURES: acks feature bits 0x8000000000000000 we never offered/],
    ['a region past the end of its fd', (fe, m) => fe.send(R.SET_MEM_TABLE, memTable([{ gpa: GPA, size: MEM * 2, uaddr: UADDR, off: 0 }]), [m]), /SET_MEM_TABLE: region wants bytes .* of an fd that holds 0x100000/],
    ['overlapping regions', (fe, m) => fe.send(R.SET_MEM_TABLE, memTable([{ gpa: GPA, size: MEM / 2, uaddr: UADDR, off: 0 }, { gpa: GPA + 4096, size: 4096, uaddr: UADDR + MEM, off: 0 }]), [m, m]), /overlaps/],
    ['two regions with one fd', (fe, m) => fe.send(R.SET_MEM_TABLE, memTable([{ gpa: 0, size: 4096, uaddr: 0, off: 0 }, { gpa: 4096, size: 4096, uaddr: 4096, off: 0 }]), [m]), /2 regions came with 1 descriptors/],
    ['a region at 2^60', (fe, m) => fe.send(R.SET_MEM_TABLE, memTable([{ gpa: 2 ** 60, size: 4096, uaddr: 0, off: 0 }]), [m]), /beyond 2\^53/],
    ['a ring that does not exist', (fe) => fe.state(R.SET_VRING_NUM, 5, 8), /SET_VRING_NUM: ring 5 does not exist/],
    ['a queue size not a power of two', (fe) => fe.state(R.SET_VRING_NUM, 0, 3), /queue size 3 is not a power of two/],
    ['a kick with two descriptors', (fe, m) => fe.u64(R.SET_VRING_KICK, 0n, VHOST_USER_VERSION, [m, m]), /SET_VRING_KICK: came with 2 descriptors/],
    ['a ring word with unknown bits', (fe) => fe.u64(R.SET_VRING_CALL, 0x10000n), /ring word 0x10000 has unknown bits/],
    ['a config range past the config space', (fe) => {
      const b = new DataView(new ArrayBuffer(12 + 16));
      b.setUint32(0, 250, true);
      b.setUint32(4, 16, true);
      fe.send(R.GET_CONFIG, new Uint8Array(b.buffer));
    }, /config range \[250, \+16\) is past/],
    ['an unknown request', (fe) => fe.send(999), /request 999 is not supported/],
    ['SET_LOG_BASE without LOG_SHMFD', (fe, m) => fe.send(R.SET_LOG_BASE, logBase(4096, 0), [m]), /SET_LOG_BASE: SET_LOG_BASE without LOG_SHMFD/],
    ['a dirty log past the end of its fd', (fe, m) => {
      fe.u64(R.SET_PROTOCOL_FEATURES, bit(VHOST_USER_PROTOCOL_F_LOG_SHMFD));
      fe.send(R.SET_LOG_BASE, logBase(MEM, 4096), [m]);
    }, /SET_LOG_BASE: dirty log \[4096, \+1048576\) runs past its fd/],
    ['ring flags other than LOG', (fe) => fe.send(R.SET_VRING_ADDR, vringAddr(0, UADDR, UADDR + USED, UADDR + AVAIL, 2)), /ring flags 0x2: only VHOST_VRING_F_LOG/],
    ['SET_VRING_ADDR moving a running ring', (fe, m) => {
      runningRing(fe, m);
      fe.send(R.SET_VRING_ADDR, vringAddr(0, UADDR + 0x4000, UADDR + USED, UADDR + AVAIL, VHOST_VRING_F_LOG));
    }, /SET_VRING_ADDR moves ring 0 while it runs/],
    ['features other than LOG_ALL changed under a running ring', (fe, m) => {
      runningRing(fe, m);
      fe.u64(R.SET_FEATURES, bit(VHOST_USER_F_PROTOCOL_FEATURES) | bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_RING_F_EVENT_IDX));
    }, /features changed while a queue runs/],
    ['a ring whose areas are outside guest memory', (fe, m) => {
      fe.u64(R.SET_FEATURES, bit(VHOST_USER_F_PROTOCOL_FEATURES) | bit(VIRTIO_F_VERSION_1));
      fe.send(R.SET_MEM_TABLE, memTable([{ gpa: GPA, size: MEM, uaddr: UADDR, off: 0 }]), [m]);
      fe.state(R.SET_VRING_NUM, 0, QSIZE);
      fe.send(R.SET_VRING_ADDR, vringAddr(0, UADDR + MEM, UADDR + USED, UADDR + AVAIL));
      fe.u64(R.SET_VRING_KICK, 0n, VHOST_USER_VERSION, [m]);
      fe.state(R.SET_VRING_ENABLE, 0, 1);
    }, /ring 0: vring areas .* are not inside guest memory/],
  ];

  for (const [what, send, reason] of hostile) {
    it(`cuts off a frontend that sends ${what}, and serves the next one`, async () => {
      const r = await rig();
      const memfd = native.memfdCreate('guest', MEM);
      cleanups.push(() => native.close(memfd));
      const before = openFds();
      const fe = new Frontend(r.server.path);
      send(fe, memfd);
      // the backend hangs up: whatever it answered before, the stream ends
      for (let m = await fe.reply(); m !== 'closed'; m = await fe.reply());
      fe.close();
      await waitFor(() => r.gone.length === 1, 'the backend to report the frontend gone');
      expect(r.gone[0]).toMatch(reason);
      expect(r.logs.some((l) => l.includes('frontend gone') && reason.test(l))).toBe(true);
      expect(openFds(), 'descriptors left open').toBe(before);
      // still listening: a well-behaved frontend is served
      const next = new Frontend(r.server.path);
      cleanups.push(() => next.close());
      next.send(R.GET_QUEUE_NUM);
      expect(await next.u64Reply(R.GET_QUEUE_NUM)).toBe(1n);
    });
  }

  it('turns a second frontend away while one is connected', async () => {
    const r = await rig();
    const a = new Frontend(r.server.path);
    cleanups.push(() => a.close());
    a.send(R.GET_QUEUE_NUM);
    expect(await a.u64Reply(R.GET_QUEUE_NUM)).toBe(1n);
    const b = new Frontend(r.server.path);
    cleanups.push(() => b.close());
    expect(await b.reply()).toBe('closed');
    expect(r.logs.some((l) => l.includes('turned away a second frontend'))).toBe(true);
    a.send(R.GET_QUEUE_NUM);
    expect(await a.u64Reply(R.GET_QUEUE_NUM)).toBe(1n);
    await r.server.close();
    expect(await a.reply()).toBe('closed');
    expect(existsSync(r.server.path), 'the socket file outlived the server').toBe(false);
  });
});
