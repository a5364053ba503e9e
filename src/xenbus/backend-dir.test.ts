import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../../domains/xenstored/testkit.js';
import { waitFor } from '../testing/until.js';
import type { XenstoreClient } from '../xenstore/client.js';
import { TRANSPORT_KEY } from '../vhost-user/xenstore-keys.js';
import { serveBackendDir, type ServedDevice } from './backend-dir.js';

// The transport key is written by dom0 but sits in a directory the driver domain reads as it
// would any backend key: an unknown value must cost only that device.
describe('serving a backend directory', () => {
  let ts: TestServer;
  let xs: XenstoreClient;
  const logs: string[] = [];
  const started: string[] = [];
  const closed: string[] = [];
  const device = (kind: string, path: string): ServedDevice => {
    started.push(`${kind} ${path}`);
    return { close: () => closed.push(path) };
  };
  beforeAll(async () => {
    ts = await startTestServer();
    xs = await ts.priv();
    await serveBackendDir(xs, {
      dir: '/local/domain/1/backend/vbd',
      kind: 'vbd',
      who: 'blkdom',
      native: 'blkif',
      startNative: async (p) => device('blkif', p),
      startVhostUser: async (p) => device('vhost-user', p),
      log: (l) => logs.push(l),
    });
  });
  afterAll(() => ts.close());

  it('starts the backend each device asks for, refuses an unknown transport by name, and closes a removed one', async () => {
    const base = '/local/domain/1/backend/vbd/5';
    await xs.write(`${base}/51712/${TRANSPORT_KEY}`, 'vhost-user');
    await xs.write(`${base}/51728/dev`, 'xvdb'); // no key: the Xen-ABI backend
    await xs.write(`${base}/51744/${TRANSPORT_KEY}`, 'virtio-mmio');
    await waitFor(() => started.length === 2 && logs.some((l) => l.includes('51744')));
    expect(started.sort()).toEqual([`blkif ${base}/51728`, `vhost-user ${base}/51712`]);
    expect(logs.join('\n')).toMatch(/blkdom: vbd \/local\/domain\/1\/backend\/vbd\/5\/51744: .*ringside\/transport = "virtio-mmio": expected blkif or vhost-user/);
    await xs.rm(`${base}/51712`);
    await waitFor(() => closed.length === 1);
    expect(closed).toEqual([`${base}/51712`]);
  });
});
