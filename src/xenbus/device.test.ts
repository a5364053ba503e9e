import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../../domains/xenstored/testkit.js';
import { XenbusState } from '../abi/xenbus.js';
import { DeviceDirWatcher, XenbusDevice, XenbusError } from './device.js';
import { writeVbd } from '../../domains/dom0/xsnodes.js';
import type { DiskSpec } from '../config/disk-spec.js';

const disk = { backend: 'b', vdev: 'xvda', devid: 51712, target: '/tmp/x.img', targetAsWritten: 'x.img', format: 'raw', access: 'w', sizeBytes: 1, discard: false, where: { file: 'f', line: 1 } } as DiskSpec;
const tick = (ms = 30) => new Promise((r) => setTimeout(r, ms));

describe('XenBus split-device helpers', () => {
  let s: TestServer;
  beforeEach(async () => {
    s = await startTestServer();
    await s.h.introduce(5);
    await s.h.introduce(7);
    const dom0 = await s.priv();
    for (const d of [5, 7]) {
      await dom0.mkdir(`/local/domain/${d}`);
      await dom0.setPerms(`/local/domain/${d}`, `n0,r${d}`);
    }
    await dom0.transaction((tx) => writeVbd(tx, 5, 7, disk));
  });
  afterEach(async () => s.close());

  it('walks both ends through the blkif handshake with libxl permissions', async () => {
    const beXs = await s.dom(7);
    const feXs = await s.dom(5);
    const found: string[] = [];
    const w = new DeviceDirWatcher(beXs, '/local/domain/7/backend/vbd', 2, (p) => found.push(p), () => undefined);
    await w.start();
    await tick();
    expect(found).toEqual(['/local/domain/7/backend/vbd/5/51712']);

    const be = await XenbusDevice.backend(beXs, found[0]);
    const fe = await XenbusDevice.frontend(feXs, '/local/domain/5/device/vbd/51712');
    expect(be.other).toEqual({ path: '/local/domain/5/device/vbd/51712', domid: 5 });
    expect(fe.other).toEqual({ path: found[0], domid: 7 });

    const seen: XenbusState[] = [];
    await fe.onOtherState((st) => seen.push(st));
    await be.writeKeys({ 'feature-persistent': 1, state: XenbusState.InitWait });
    await fe.waitOtherState((st) => st === XenbusState.InitWait, 2000);
    expect(await fe.readOther('feature-persistent')).toBe('1');
    await fe.writeKeys({ 'ring-ref': 8, 'event-channel': 3, protocol: 'x86_64-abi', state: XenbusState.Initialised });
    await be.waitOtherState((st) => st === XenbusState.Initialised, 2000);
    expect(await be.readOtherUint('ring-ref', undefined, 0xffffffff)).toBe(8);
    await be.switchState(XenbusState.Connected);
    await fe.waitOtherState((st) => st === XenbusState.Connected, 2000);
    await tick();
    expect(seen).toEqual([XenbusState.Initialising, XenbusState.InitWait, XenbusState.Connected]);

    // The frontend may not write into the backend's directory.
    await expect(feXs.write(`${found[0]}/state`, '6')).rejects.toMatchObject({ code: 'EACCES' });
    await w.close();
    await be.close();
    await fe.close();
  });

  it('treats what the other end wrote as hostile', async () => {
    const be = await XenbusDevice.backend(await s.dom(7), '/local/domain/7/backend/vbd/5/51712');
    const feXs = await s.dom(5);
    await feXs.write('/local/domain/5/device/vbd/51712/ring-ref', '12abc');
    await expect(be.readOtherUint('ring-ref', undefined, 0xffffffff)).rejects.toThrow(/is not an integer/);
    await feXs.write('/local/domain/5/device/vbd/51712/ring-ref', '99999999999');
    await expect(be.readOtherUint('ring-ref', undefined, 0xffffffff)).rejects.toThrow(XenbusError);
    await expect(be.readOtherUint('event-channel', undefined, 4095)).rejects.toThrow(/is missing/);
    expect(await be.readOtherUint('multi-queue-num-queues', 1, 8)).toBe(1);
    await feXs.write('/local/domain/5/device/vbd/51712/state', 'garbage');
    expect(await be.otherState()).toBe(XenbusState.Unknown);
  });

  it('reports devices going away and times out with the state it saw', async () => {
    const dom0 = await s.priv();
    const beXs = await s.dom(7);
    const gone: string[] = [];
    const w = new DeviceDirWatcher(beXs, '/local/domain/7/backend/vbd', 2, () => undefined, (p) => gone.push(p));
    await w.start();
    await tick();
    const be = await XenbusDevice.backend(beXs, '/local/domain/7/backend/vbd/5/51712');
    await expect(be.waitOtherState((st) => st === XenbusState.Connected, 100)).rejects.toThrow(/still Initialising after 100 ms/);
    await dom0.rm('/local/domain/7/backend/vbd/5');
    await tick(60);
    expect(gone).toEqual(['/local/domain/7/backend/vbd/5/51712']);
    await w.close();
  });
});
