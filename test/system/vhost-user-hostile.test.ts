// A compromised VM's QEMU against a running blkdom (issue 12): on a VM disk's vhost-user socket it
// sends what a frontend must not, at each layer (the message framing, the memory table, the
// virtqueue). Each time blkdom names what was wrong in its log and ends that connection or stops
// that ring, and nothing else: blkdom keeps its pid, the bystander guest's disk (a Xen ring and
// its NBD export, the same blkdom) keeps serving, the socket keeps listening, and an honest
// frontend then reads back every write acknowledged before.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireBuilt } from '../support/platform.js';
import { until } from '../support/until.js';
import { OpenFrontends, protocolAttacks } from '../support/vhost-user.js';
import { SystemUnderTest, run, type UpJson } from './support.js';
import { XenstoreClient } from '../../src/xenstore/client.js';
import { statePaths, vhostSocket } from '../../src/control/paths.js';
import { parseDisk } from '../../src/config/disk-spec.js';
import { vhostDeviceKeys } from '../../src/vhost-user/xenstore-keys.js';
import { writeVbd } from '../../domains/dom0/xsnodes.js';
import { XenbusState } from '../../src/abi/xenbus.js';
import { VIRTIO_BLK_OUTHDR_SIZE, VIRTIO_BLK_S_OK, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from '../../src/abi/virtio.js';
import { GUEST, startBlkQueue, type BlkQueue } from '../../src/vhost-user/testing/frontend.js';
import { native } from '../../src/native/index.js';

const BLK = `vuh${process.pid}`;
const GUEST_NAME = `vuhg${process.pid}`;
const VM = 'rogue';
/** no domain has this id: the disk is dom0's doing alone, as a VM's would be before QEMU starts */
const VM_DOMID = 900;
const IMAGE_BYTES = 4 << 20;
/** the honest write every case must leave intact: 4 KiB at sector 8 */
const SECTOR = 8;
const DATA = 0x20000;
const pattern = (i: number) => (i * 13 + 0x5a) & 0xff;

describe('hostile vhost-user frontends against a running blkdom with a bystander guest', () => {
  let s: SystemUnderTest;
  let xs: XenstoreClient;
  let storage: string;
  let image: string;
  let socket: string;
  let backendPath: string;
  let blkPid: number;
  let open: OpenFrontends<BlkQueue>;
  const hangUp = () => open.hangUp();

  const qemuIo = (cmds: string[]) =>
    run('qemu-io', ['-f', 'raw', `nbd+unix:///xvda?socket=${join(s.state, 'nbd', `${GUEST_NAME}-xvda.sock`)}`, ...cmds.flatMap((c) => ['-c', c])], { timeoutMs: 60_000 });

  async function honest(): Promise<BlkQueue> {
    const q = await startBlkQueue(socket, 0n);
    return open.add(q);
  }


  beforeAll(async () => {
    requireBuilt();
    storage = mkdtempSync(join(tmpdir(), 'rs-vuh-img-'));
    image = join(storage, `${VM}.img`);
    writeFileSync(image, Buffer.alloc(IMAGE_BYTES));
    s = new SystemUnderTest('ringside-vuh-', {
      [`${BLK}.cfg`]: `name = "${BLK}"\nmemory = 128\ndriver_domain = 1\nrole = "blk"\nstorage = [ "${storage}" ]\n`,
      [`${GUEST_NAME}.cfg`]: `name = "${GUEST_NAME}"\nmemory = 128\ndisk = [ 'backend=${BLK}, vdev=xvda, target=${GUEST_NAME}.img, format=raw, access=rw, size=16M' ]\n`,
    });
    open = new OpenFrontends('blkdom', () => s.logTail(100_000));
    const up: UpJson = await s.up();
    const blk = up.domains.find((d) => d.name === BLK)!;
    blkPid = blk.pid as number;
    xs = await XenstoreClient.connect(up.xenstoredPath);
    // the VM disk as dom0 writes it for a VM it is about to start: a vbd under blkdom marked vhost-user
    socket = vhostSocket(statePaths(s.state), BLK, VM, 'xvda');
    const disk = parseDisk(`backend=${BLK}, vdev=xvda, target=${image}, format=raw, access=rw`, { file: 'test', line: 1 }, storage);
    const paths = await xs.transaction((tx) => writeVbd(tx, VM_DOMID, blk.domid, disk, { backend: true, frontend: false }, vhostDeviceKeys(socket, 1)));
    backendPath = paths.backend;
    await until('blkdom to listen on the VM disk at InitWait', () => xs.read(`${backendPath}/state`), (st) => st === String(XenbusState.InitWait) && existsSync(socket));
  });

  // a failed case leaves nobody connected for the next one
  afterEach(() => hangUp());

  afterAll(async () => {
    open?.closeAll();
    await xs?.close();
    await s?.teardown();
    if (storage) rmSync(storage, { recursive: true, force: true });
  });

  it('an honest frontend writes through the VM disk while the bystander writes through its own', async () => {
    const q = await honest();
    for (let i = 0; i < 4096; i++) q.ram.setUint8(DATA + i, pattern(i));
    expect(q.ram.getUint8(await q.request(VIRTIO_BLK_T_OUT, SECTOR, DATA, 4096))).toBe(VIRTIO_BLK_S_OK);
    const w = await qemuIo(['write -P 0xab 0 1M', 'flush']);
    expect(w.code, w.stderr).toBe(0);
    await hangUp();
  });

  // Each: what the rogue frontend does, and what blkdom's log must say of it.
  const cases: [string, () => Promise<void>, RegExp][] = [
    ...protocolAttacks(() => socket),
    ['a descriptor chain that loops', async () => {
      const q = await honest();
      q.raw(0, [
        { i: 0, addr: GUEST.GPA + 0x10000, len: VIRTIO_BLK_OUTHDR_SIZE, flags: VIRTQ_DESC_F_NEXT, next: 1 },
        { i: 1, addr: GUEST.GPA + DATA, len: 512, flags: VIRTQ_DESC_F_NEXT, next: 0 },
      ], 0);
    }, /ring 0 stopped: descriptor chain from head 0 is longer than its 8-entry table/],
    ['a data buffer outside guest memory', async () => {
      const q = await honest();
      q.ram.setUint32(0x10000, VIRTIO_BLK_T_OUT, true);
      q.raw(0, [
        { i: 0, addr: GUEST.GPA + 0x10000, len: VIRTIO_BLK_OUTHDR_SIZE, flags: VIRTQ_DESC_F_NEXT, next: 1 },
        { i: 1, addr: GUEST.GPA + GUEST.MEM - 256, len: 4096, flags: VIRTQ_DESC_F_NEXT, next: 2 },
        { i: 2, addr: GUEST.GPA + 0x10080, len: 1, flags: VIRTQ_DESC_F_WRITE, next: 0 },
      ], 0);
    }, /ring 0 stopped: descriptor 1 of head 0: buffer at guest 0x400fff00 \(4096 bytes\) is not inside guest memory/],
    ['an avail index far ahead of the ring', async () => {
      const q = await honest();
      q.ram.setUint16(GUEST.AVAIL + 2, 200, true);
      native.eventfdSignal(q.kick[0]);
    }, /ring 0 stopped: avail index 200 is 200 ahead of ours/],
  ];

  for (const [what, act, reason] of cases) {
    it(`${what}: blkdom says so and cuts off only that, the bystander carries on, and the honest write is still there`, async () => {
      const logFrom = s.logTail(100_000).length;
      await act();
      const said = await until(`blkdom to log ${reason}`, () => s.logTail(100_000).slice(logFrom), (l) => reason.test(l));
      expect(said).toMatch(reason);
      await hangUp();

      const rows = await s.list();
      const blk = rows.find((d) => d.name === BLK)!;
      expect(blk.pid, 'blkdom was restarted or replaced').toBe(blkPid);
      expect(blk.restarts).toBe(0);

      // the bystander's disk, on a Xen ring in the same blkdom: what it wrote is there, and it takes more
      const b = await qemuIo(['read -P 0xab 0 1M', 'write -P 0xcd 2M 64k', 'read -P 0xcd 2M 64k']);
      expect(b.code, `${b.stdout}\n${b.stderr}`).toBe(0);
      expect(b.stdout).not.toMatch(/fail/i);

      // the socket still listens, and an honest frontend reads back the write acknowledged before
      await until('the VM disk back at InitWait', () => xs.read(`${backendPath}/state`), (st) => st === String(XenbusState.InitWait));
      const q = await honest();
      expect(q.ram.getUint8(await q.request(VIRTIO_BLK_T_IN, SECTOR, 0x40000, 4096))).toBe(VIRTIO_BLK_S_OK);
      const back = new Uint8Array(q.ram.buffer, 0x40000, 4096);
      expect(back.every((v, i) => v === pattern(i)), 'the acknowledged write came back changed').toBe(true);
      await hangUp();
    });
  }

  it('the image holds the honest write byte for byte', () => {
    const onDisk = readFileSync(image).subarray(SECTOR * 512, SECTOR * 512 + 4096);
    expect(onDisk.every((v, i) => v === pattern(i))).toBe(true);
  });
});
