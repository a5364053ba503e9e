// Property 6, "nothing acknowledged is lost": flushed data survives SIGKILL of every domain, and a
// driver domain killed mid-I/O is replaced while the guest keeps its unanswered requests and
// replays them, so a verifying fio run never notices.
import { afterEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { truncateSync, writeFileSync } from 'node:fs';
import { BlockSystem } from './support/system.js';
import { fioVerify, qemuIo } from './support/tools.js';

let s: BlockSystem | null = null;
afterEach(async () => {
  await s?.close();
  s = null;
});

function image(dir: string, size = 64 << 20): string {
  const p = join(dir, 'disk.img');
  writeFileSync(p, '');
  truncateSync(p, size);
  return p;
}

describe('durability of acknowledged writes', () => {
  it('keeps written and flushed data across SIGKILL of every domain', async () => {
    s = new BlockSystem();
    const img = image(s.dir);
    const blkdom = await s.blkdom();
    const g = await s.guest('guest1', blkdom, img);
    const w = await qemuIo(g.socket, ['write -P 0x5e 0 2M', 'write -P 0x77 8M 1M', 'flush']);
    expect(w.code, w.stderr).toBe(0);
    await s.kill(g);
    await s.kill(blkdom);

    const blkdom2 = await s.blkdom('blkdom2');
    const g2 = await s.guest('guest2', blkdom2, img);
    const r = await qemuIo(g2.socket, ['read -P 0x5e 0 2M', 'read -P 0x77 8M 1M', 'read -P 0 2M 6M']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).not.toMatch(/verification failed/i);
  });

  it('replays in-flight requests after the driver domain is killed mid-I/O', async () => {
    s = new BlockSystem();
    const sys = s;
    const img = image(sys.dir);
    const blkdom = await sys.blkdom();
    const g = await sys.guest('guest1', blkdom, img);

    const fio = fioVerify(g.socket, { bs: '4k', size: '24M', iodepth: 32, name: 'survivor' });
    // Let the backend get well into the run, then kill it with requests on the ring.
    for (let i = 0; i < 2000; i++) {
      const st = await blkdom.ctl.cmd<{ stats: { requests: number }[] }>('status', { id: g.vbdId });
      if (st.stats[0].requests > 1000) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    await sys.kill(blkdom);
    // What the XenBus glue does when the backend goes away and dom0 restarts it:
    const kept = await g.ctl.cmd<{ pending: number }>('disconnect', { reason: 'backend died' });
    const blkdom2 = await sys.blkdom('blkdom2');
    await sys.attach(g, blkdom2, img);

    const r = await fio;
    expect(r.code, r.output).toBe(0);
    expect(r.errors).toBe(0);
    expect(sys.logs(/blkfront xvda: disconnected \(backend died\)/).length).toBe(1);
    // fio had requests on the ring when the backend died: they were kept and issued again
    expect(kept.pending).toBeGreaterThan(0);
    expect(sys.logs(new RegExp(`blkfront xvda: connected.*replaying ${kept.pending} request`)).length).toBe(1);
  });
});
