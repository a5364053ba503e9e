// blkdom's VM disks against hostile backend keys (what a confused or compromised toolstack could
// write): each bad key ends that vbd alone with an `error` naming the key and state Closing; a good
// one listens on its socket at InitWait, and removing it takes the socket away.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestServer, type TestServer } from '../xenstored/testkit.js';
import type { XenstoreClient } from '../../src/xenstore/client.js';
import { RawFile } from '../../src/blkdev/raw-file.js';
import { XenbusState } from '../../src/abi/xenbus.js';
import { vhostDeviceKeys } from '../../src/vhost-user/xenstore-keys.js';
import { VhostUserVbd } from './vhost-vbd.js';

let ts: TestServer;
let xs: XenstoreClient;
const dir = mkdtempSync(join(tmpdir(), 'rs-vvbd-'));
const image = join(dir, 'disk.img');
const logs: string[] = [];
let devid = 51712;

beforeAll(async () => {
  writeFileSync(image, Buffer.alloc(1 << 20));
  ts = await startTestServer();
  xs = await ts.priv();
});
afterAll(async () => {
  await ts.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A VM disk's backend directory as dom0 writes it, with `over` replacing keys ('' removes one). */
async function vbd(over: Record<string, string>): Promise<string> {
  const path = `/local/domain/1/backend/vbd/5/${devid++}`;
  const keys: Record<string, string> = {
    frontend: `/local/domain/5/device/vbd/${devid}`,
    'frontend-id': '5',
    params: image,
    mode: 'w',
    dev: 'xvda',
    state: String(XenbusState.Initialising),
    ...vhostDeviceKeys(join(dir, `vm-${devid}.sock`), 1),
    ...over,
  };
  for (const [k, v] of Object.entries(keys)) if (v !== '') await xs.write(`${path}/${k}`, v);
  return path;
}

const open = (params: string, readonly: boolean) => RawFile.open(params, { readonly });

describe('a VM disk in blkdom', () => {
  it('listens on the socket dom0 named, at InitWait, and removes it when the vbd goes', async () => {
    const path = await vbd({});
    const socket = (await xs.read(`${path}/ringside/socket`)) as string;
    const v = await VhostUserVbd.start(xs, path, open, (l) => logs.push(l));
    expect(await xs.read(`${path}/state`)).toBe(String(XenbusState.InitWait));
    expect(await xs.read(`${path}/sectors`)).toBe('2048');
    expect(existsSync(socket)).toBe(true);
    await v.close();
    expect(existsSync(socket)).toBe(false);
  });

  const bad: [string, Record<string, string>, RegExp][] = [
    ['a relative socket path', { 'ringside/socket': 'vm.sock' }, /ringside\/socket = "vm.sock": expected an absolute socket path of at most 107 bytes/],
    ['a socket path longer than sun_path', { 'ringside/socket': `/${'s'.repeat(120)}` }, /expected an absolute socket path of at most 107 bytes/],
    ['no socket at all', { 'ringside/socket': '' }, /ringside\/socket = undefined/],
    ['a socket in a directory that does not exist', { 'ringside/socket': '/nonexistent/dir/vm.sock' }, /cannot listen on \/nonexistent\/dir\/vm.sock/],
    ['queues out of range', { 'ringside/queues': '17' }, /ringside\/queues = "17": expected 1..16/],
    ['queues that are not a number', { 'ringside/queues': '1; rm -rf' }, /ringside\/queues = "1; rm -rf": expected 1..16/],
    ['a mode that is neither r nor w', { mode: 'rw!' }, /mode = "rw!": expected r or w/],
    ['a medium that cannot be opened', { params: join(dir, 'missing.img') }, /cannot open .*missing.img/],
  ];
  for (const [what, over, re] of bad) {
    it(`ends only that vbd, with a reason, for ${what}`, async () => {
      const path = await vbd(over);
      const v = await VhostUserVbd.start(xs, path, open, (l) => logs.push(l));
      expect(await xs.read(`${path}/error`)).toMatch(re);
      expect(await xs.read(`${path}/state`)).toBe(String(XenbusState.Closing));
      await v.close();
    });
  }

  it('a good vbd beside the bad ones still serves', async () => {
    const path = await vbd({});
    const v = await VhostUserVbd.start(xs, path, open, (l) => logs.push(l));
    expect(await xs.tryRead(`${path}/error`)).toBeUndefined();
    expect(await xs.read(`${path}/state`)).toBe(String(XenbusState.InitWait));
    await v.close();
  });
});
