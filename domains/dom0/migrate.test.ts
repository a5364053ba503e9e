// The source side of a migration against a destination that lies in its first answer: where the
// source's QEMU should send the guest, and under which domid. The source checks that answer before
// it touches QEMU, so each lie ends the migration with an error naming it, the VM untouched here.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { statePaths } from '../../src/control/paths.js';
import { encodeFrame } from '../../src/control/wire.js';
import { fakeHost, type FakeHost } from '../../test/support/fake-control.js';
import { migrateOut, type MigrationHost } from './migrate.js';

describe('migrate: a destination whose answer to migrate-incoming is a lie', () => {
  const own = mkdtempSync(join(tmpdir(), 'rs-mig-src-'));
  const hosts: FakeHost[] = [];
  afterAll(() => {
    for (const h of hosts) h.close();
    rmSync(own, { recursive: true, force: true });
  });

  /** The source host as migrateOut sees it, recording whatever it is asked to do to the VM. */
  function source(): MigrationHost & { did: string[] } {
    const did: string[] = [];
    return {
      did,
      state: statePaths(own),
      hostName: 'src',
      log: (l) => did.push(`log ${l}`),
      vmConfig: () => ({ file: 'vm.cfg', text: 'name = "vm"\ntype = "hvm"\n', base: own, accel: 'tcg', cpu: 'qemu64' }),
      startIncoming: async () => (did.push('startIncoming'), 1),
      dropVm: async () => void did.push('dropVm'),
      domidOf: () => 3,
      arriving: new Set(),
    };
  }

  const lies: [string, (vmRoot: string) => Record<string, unknown>, RegExp][] = [
    ['a socket outside its VM directories', () => ({ ok: true, incoming: '/run/other-service.sock', domid: 5 }), /incoming socket "\/run\/other-service.sock": not a socket in one of its VM directories/],
    ['a socket that climbs out with ..', (vm) => ({ ok: true, incoming: `${vm}/x/../../../run/other.sock`, domid: 5 }), /not a socket in one of its VM directories/],
    ['a socket carrying a QEMU option', (vm) => ({ ok: true, incoming: `${vm}/vm/in.sock,server=on`, domid: 5 }), /not a socket in one of its VM directories/],
    ['no socket at all', () => ({ ok: true, domid: 5 }), /incoming socket undefined/],
    ['a domid that is no domid', (vm) => ({ ok: true, incoming: `${vm}/vm/incoming.sock`, domid: 'dom0; rm -rf' }), /domid "dom0; rm -rf": not a domain id/],
    ['a refusal with 900 kB of text', () => ({ ok: false, error: `no\n${'y'.repeat(900_000)}` }), /the destination refused vm: no y{197}…$/],
    ['a frame over the control limit', () => ({ ok: false, error: 'z'.repeat(1 << 20) }), /destination at .* did not answer migrate-incoming: control frame of \d+ bytes exceeds/],
    ['an answer that is no control reply', () => [1, 2, 3] as unknown as Record<string, unknown>, /did not answer migrate-incoming: the answer is not a control reply/],
  ];

  for (const [what, answer, error] of lies) {
    it(`${what}: refused before QEMU is touched`, async () => {
      const dest = await fakeHost((req, s) => {
        const op = (req as { op?: unknown }).op;
        s.write(encodeFrame(op === 'migrate-incoming' ? answer(statePaths(dest.dir).vm) : { ok: true }));
      });
      hosts.push(dest);
      const h = source();
      const e = await migrateOut(h, 'vm', dest.dir, () => {}).then(() => null, (x: Error) => x);
      expect(e, 'the migration went ahead on a lie').not.toBeNull();
      expect(e!.message).toMatch(error);
      expect(e!.message.length).toBeLessThan(1000);
      expect(h.did, 'the VM was stopped, dropped or restarted').toEqual([]);
      expect(dest.requests.map((r) => (r as { op: string }).op)).toEqual(['migrate-incoming']);
    });
  }
});
