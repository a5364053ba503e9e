// Shutting a guest down removes its TAP and its namespace by itself; shutting the whole rig down
// leaves no TAP, namespace, domain process or control socket behind.
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { NetRig, netUnsupported, run } from './support.js';
import { sleep } from '../support/platform.js';

const why = await netUnsupported();
if (why) console.warn(`skipping net teardown test: ${why}`);

describe.skipIf(why !== null)('net teardown', () => {
  it('removes TAPs, namespaces, processes and sockets', async () => {
    const rig = new NetRig();
    try {
      const nd = await rig.netdom();
      const a = await rig.guest(nd, 'ta', 1);
      const b = await rig.guest(nd, 'tb', 2);
      await rig.reaches(a, b.ip);
      const pids = rig.t.hv.list().filter((d) => d.domid !== 0).map((d) => d.pid);
      expect(pids.length).toBe(3);
      // a guest's own shutdown takes its TAP and namespace with it
      await a.dom.cmd('shutdown');
      const end = Date.now() + 30_000;
      while ((await run('ip', ['netns', 'list'])).stdout.includes(a.ns) && Date.now() < end) await sleep(50);
      expect((await run('ip', ['netns', 'list'])).stdout).not.toContain(a.ns);
      expect((await run('ip', ['netns', 'list'])).stdout).toContain(b.ns);
      await rig.close();
      expect(await rig.leftovers()).toEqual([]);
      expect(existsSync(rig.t.dir)).toBe(false);
      for (const pid of pids) expect(() => process.kill(pid!, 0)).toThrow();
      expect(rig.t.hv.list().filter((d) => d.domid !== 0)).toEqual([]);
    } finally {
      await rig.close().catch(() => {});
    }
  });
});
