// A guest's disk end to end: real tools -> NBD -> blkfront (guest process) -> blkif ring in granted
// frames -> blkback (driver domain process) -> raw image file.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { BlockSystem, type Guest, type TestDomain } from './support/system.js';
import { fioVerify, nbdUri, qemuIo, run } from './support/tools.js';

const SIZE = 64 << 20;

function image(dir: string, name: string, size = SIZE): string {
  const p = join(dir, name);
  writeFileSync(p, '');
  truncateSync(p, size);
  return p;
}

describe('block driver domain serving a guest disk', () => {
  let s: BlockSystem;
  let blkdom: TestDomain;
  let g: Guest;
  let img: string;

  beforeAll(async () => {
    s = new BlockSystem();
    blkdom = await s.blkdom();
    img = image(s.dir, 'guest1.img');
    g = await s.guest('guest1', blkdom, img);
  });
  afterAll(async () => s?.close());

  it('qemu-io writes patterns through the NBD export and reads them back verified', async () => {
    const r = await qemuIo(g.socket, ['write -P 0xab 0 1M', 'read -P 0xab 0 1M', 'write -P 0xcd 4M 64k', 'read -P 0xcd 4M 64k', 'flush']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).not.toMatch(/verification failed/i);
    // the bytes are in the image file the driver domain serves
    const f = readFileSync(img);
    expect(f[0]).toBe(0xab);
    expect(f[(1 << 20) - 1]).toBe(0xab);
    expect(f[4 << 20]).toBe(0xcd);
  });

  it('maps FUA, write-zeroes, trim and flush through blkif', async () => {
    const r = await qemuIo(g.socket, [
      'write -f -P 0x44 5M 64k', 'read -P 0x44 5M 64k',
      'write -P 0x33 2M 128k', 'write -z 2M 32k', 'read -P 0 2M 32k', 'read -P 0x33 2080k 96k',
      'write -z 2140000 5000', 'read -P 0 2140000 5000', 'read -P 0x33 2145000 1000', 'read -P 0x33 2139000 1000',
      'discard 3M 64k', 'read -P 0 3M 64k', 'flush',
    ]);
    expect(r.code, r.stdout + '\n---\n' + r.stderr).toBe(0);
    expect(r.stdout).not.toMatch(/verification failed|error/i);
    const st = await blkdom.ctl.cmd<{ stats: { requests: number; errors: number; unsupported: number }[] }>('status', { id: g.vbdId });
    expect(st.stats[0].errors + st.stats[0].unsupported).toBe(0);
  });

  it('nbdinfo reports the disk size', async () => {
    const r = await run('nbdinfo', ['--size', nbdUri(g.socket)]);
    expect(r.code, r.stderr).toBe(0);
    expect(Number(r.stdout.trim())).toBe(SIZE);
  });

  it('fio random writes verify clean at iodepth 32 with 4 KiB and 1 MiB blocks', async () => {
    const small = await fioVerify(g.socket, { bs: '4k', size: '16M', iodepth: 32 });
    expect(small.code, small.output).toBe(0);
    expect(small.errors).toBe(0);
    const big = await fioVerify(g.socket, { bs: '1M', size: '32M', offset: '16M', iodepth: 32 });
    expect(big.code, big.output).toBe(0);
    expect(big.errors).toBe(0);
  });

  it('serves a second guest over two queues with per-request grant mapping (no persistent grants)', async () => {
    const img2 = image(s.dir, 'guest2.img', 32 << 20);
    const g2 = await s.guest('guest2', blkdom, img2, { queues: 2, order: 0, poolPages: 256, features: { persistent: false } });
    const r = await fioVerify(g2.socket, { bs: '64k', size: '8M', iodepth: 16, name: 'mq' });
    expect(r.code, r.output).toBe(0);
    expect(r.errors).toBe(0);
    const st = await blkdom.ctl.cmd<{ stats: { requests: number; transientMaps: number; persistentGrants: number }[] }>('status', { id: g2.vbdId });
    expect(st.stats.length).toBe(2);
    expect(st.stats.every((q) => q.requests > 0 && q.persistentGrants === 0 && q.transientMaps > 0)).toBe(true);
  });

  it('a hostile frontend gets error responses and a halted ring, and a second guest stays clean', async () => {
    const roImg = image(s.dir, 'ro.img', 8 << 20);
    const { id, features } = await blkdom.ctl.cmd<{ id: number; features: object }>('open', { image: roImg, readonly: true });
    const evil = await s.domain('blkfront-test', 'evil', 64, 1);
    const front = await evil.ctl.cmd('hostile-prepare', { backendDomid: blkdom.domid, features });
    await blkdom.ctl.cmd('connect', { id, frontendDomid: evil.domid, front });

    // the second guest runs fio verify the whole time
    const fio = fioVerify(g.socket, { bs: '4k', size: '8M', offset: '48M', iodepth: 32, name: 'bystander' });

    const sectors = (8 << 20) / 512;
    const expectStatus: Record<string, number> = {
      'nseg-12': -1, 'last-sect-8': -1, 'past-end': -1, 'unknown-op': -2, 'write-ro': -1, 'ungranted-gref': -1,
      'discard-past-end': -2, // a read-only vbd offers no discard at all
    };
    for (const [kind, status] of Object.entries(expectStatus)) {
      const r = await evil.ctl.cmd<{ status: number } | null>('hostile', { kind, sectors });
      expect(r, kind).not.toBeNull();
      expect(r!.status, kind).toBe(status);
    }
    expect((await evil.ctl.cmd<{ status: number }>('hostile', { kind: 'good-read', sectors })).status).toBe(0);
    await evil.ctl.cmd('hostile-bogus-prod', { delta: 5000 });
    let st = await blkdom.ctl.cmd<{ halted: string | null }>('status', { id });
    for (let i = 0; i < 200 && st.halted === null; i++) {
      await new Promise((r) => setTimeout(r, 10));
      st = await blkdom.ctl.cmd('status', { id });
    }
    expect(st.halted).toMatch(/bogus ring requests/);
    const logged = s.logs(/blkback .*(last_sect 8|unknown operation 77|read-only vbd|did not map|outside the disk|ring halted)/);
    expect(logged.some((l) => /ring halted.*bogus/.test(l))).toBe(true);
    expect(logged.some((l) => /did not map/.test(l))).toBe(true);
    expect(logged.some((l) => /last_sect 8/.test(l))).toBe(true);
    // the halted ring is not served any more
    expect(await evil.ctl.cmd('hostile', { kind: 'good-read', sectors, timeoutMs: 300 })).toBeNull();

    const r = await fio;
    expect(r.code, r.output).toBe(0);
    expect(r.errors).toBe(0);
  });
});
