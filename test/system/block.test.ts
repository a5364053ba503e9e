// The whole system, block side (issue 3): a block driver domain and a guest deployed with
// `ringside up`, the guest's disk driven by qemu-io, nbdinfo and fio through its NBD export,
// across a down/up, a SIGKILL of every domain, and a driver-domain restart with I/O in flight.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { requireBuilt } from '../support/platform.js';
import { SystemUnderTest, alive, allConnected, deviceStates, procStatus, run, sleep, type UpJson } from './support.js';

const BLK = 'sysblk';
const GUEST = 'sysg1';
const SIZE = 64 << 20;

const files = {
  [`${BLK}.cfg`]: `# block driver domain of the system test\nname = "${BLK}"\nmemory = 128\ndriver_domain = 1\nrole = "blk"\non_crash = "restart"\n`,
  [`${GUEST}.cfg`]: `# a guest with one 64M disk served by ${BLK}\nname = "${GUEST}"\nmemory = 128\nvcpus = 1\n` +
    `disk = [ 'backend=${BLK}, vdev=xvda, target=${GUEST}.img, format=raw, access=rw, size=64M' ]\n`,
};

describe('block: a driver domain serving a guest disk, end to end through ringside up', () => {
  let s: SystemUnderTest;
  let fioDir: string;
  const sock = () => join(s.state, 'nbd', `${GUEST}-xvda.sock`);
  const uri = () => `nbd+unix:///xvda?socket=${sock()}`;

  const qemuIo = async (cmds: string[]) => {
    const r = await run('qemu-io', ['-f', 'raw', uri(), ...cmds.flatMap((c) => ['-c', c])], { timeoutMs: 30_000 });
    const out = `${r.stdout}\n${r.stderr}`;
    return { ...r, out, ok: r.code === 0 && !/verification failed|error|failed/i.test(out) };
  };

  const fio = async (args: string[], timeoutMs = 60_000) => {
    const r = await run('fio', [
      '--ioengine=nbd', `--uri=${uri()}`, '--rw=randwrite', '--iodepth=32', '--verify=crc32c', '--do_verify=1',
      '--verify_fatal=1', '--verify_state_save=0', '--output-format=json', ...args,
    ], { timeoutMs, cwd: fioDir });
    let errors = -1;
    let writes = 0;
    let reads = 0;
    try {
      const j = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as { jobs: { error: number; total_err?: number; write: { total_ios: number }; read: { total_ios: number } }[] };
      errors = 0;
      for (const job of j.jobs) {
        errors += (job.error ?? 0) + (job.total_err ?? 0);
        writes += job.write.total_ios;
        reads += job.read.total_ios;
      }
    } catch {
      /* no JSON: fio failed or was killed */
    }
    return { ...r, errors, writes, reads, out: `${r.stdout.slice(0, 4000)}\n${r.stderr}` };
  };

  beforeAll(async () => {
    requireBuilt();
    s = new SystemUnderTest('ringside-sysblk-', files);
    fioDir = join(s.work, 'fio');
    mkdirSync(fioDir);
    await s.up();
  });

  afterAll(async () => {
    await s?.teardown();
  });

  it('deploys the driver domain and the guest, the disk connected and exported', async () => {
    const r = s.last as UpJson;
    expect(r.domains.map((d) => `${d.name}:${d.role}`).sort()).toEqual(['Domain-0:control', `${BLK}:driver`, `${GUEST}:guest`, 'xenstored:xenstore']);
    expect(allConnected(r.domains), deviceStates(r.domains)).toBe(true);
    const g = r.domains.find((d) => d.name === GUEST)!;
    expect(g.devices).toHaveLength(1);
    expect(g.devices[0].export).toBe(sock());
    // dom0 created the image next to the config, with the size asked for
    expect(statSync(join(s.sys, `${GUEST}.img`)).size).toBe(SIZE);
  });

  it('the driver domain runs confined (no capabilities, no_new_privs, seccomp) and still serves its image', async () => {
    const r = s.last as UpJson;
    const blk = r.domains.find((d) => d.name === BLK)!;
    expect(procStatus(blk.pid as number)).toEqual({ capEff: '0000000000000000', capBnd: '0000000000000000', nnp: '1', seccomp: '2' });
    // its vhost-user directory is there for VMs, this host's or ones that arrive by migration
    expect(s.logTail(1000)).toMatch(new RegExp(`'${BLK}' confined: 1 rw, 0 ro, sockets in \\S+/vhost/${BLK}, no capabilities`));
  });

  it('the guest runs confined too (no capabilities, no_new_privs, seccomp) and still exports its disk', () => {
    const r = s.last as UpJson;
    const g = r.domains.find((d) => d.name === GUEST)!;
    expect(procStatus(g.pid as number)).toEqual({ capEff: '0000000000000000', capBnd: '0000000000000000', nnp: '1', seccomp: '2' });
    expect(s.logTail(1000)).toMatch(new RegExp(`'${GUEST}' confined: 0 rw, 0 ro, sockets in \\S+, no capabilities`));
    // the export users dial is dom0's link into the guest's own directory
    expect(statSync(sock()).isSocket()).toBe(true);
  });

  it('qemu-io writes a pattern and reads it back verified; nbdinfo reports 64 MiB', async () => {
    const w = await qemuIo(['write -P 0xab 0 1M', 'read -P 0xab 0 1M', 'write -P 0xcd 60M 64k', 'flush']);
    expect(w.ok, w.out).toBe(true);
    expect(w.stdout).toMatch(/read 1048576\/1048576 bytes at offset 0/);
    const info = await run('nbdinfo', ['--size', uri()]);
    expect(info.code, info.stderr).toBe(0);
    expect(Number(info.stdout.trim())).toBe(SIZE);
  });

  it('the patterns survive a ringside down / up of the whole system', async () => {
    const d = await s.down();
    expect(d.code, d.stderr).toBe(0);
    for (const pid of s.pids) expect(alive(pid), `pid ${pid} after down`).toBe(false);
    expect(s.socketsUnderState()).toEqual([]);
    const r = await s.up();
    expect(allConnected(r.domains), deviceStates(r.domains)).toBe(true);
    const v = await qemuIo(['read -P 0xab 0 1M', 'read -P 0xcd 60M 64k', 'read -P 0 1M 64k']);
    expect(v.ok, v.out).toBe(true);
  });

  it('fio random writes verify clean at iodepth 32 with 4 KiB and 1 MiB blocks', async () => {
    const small = await fio(['--name=rw4k', '--bs=4k', '--size=32M', '--offset=16M']);
    expect(small.code, small.out).toBe(0);
    expect(small.errors, small.out).toBe(0);
    expect(small.writes).toBe(8192);
    expect(small.reads).toBe(8192);
    const big = await fio(['--name=rw1m', '--bs=1M', '--size=32M', '--offset=16M']);
    expect(big.code, big.out).toBe(0);
    expect(big.errors, big.out).toBe(0);
    expect(big.writes).toBe(32);
    // fio stayed inside its range: the qemu-io patterns around it are intact
    const v = await qemuIo(['read -P 0xab 0 1M', 'read -P 0xcd 60M 64k']);
    expect(v.ok, v.out).toBe(true);
  });

  it('durability: a written and flushed pattern survives SIGKILL of every domain and hv', async () => {
    const w = await qemuIo(['write -P 0x5c 8M 1M', 'write -P 0x3e 12M 4k', 'flush']);
    expect(w.ok, w.out).toBe(true);
    const pids = await s.crash();
    expect(pids.length).toBe(5);
    expect(pids.filter(alive)).toEqual([]);

    const d = await s.down(); // nothing answers: it just cleans the state directory
    expect(d.code, d.stderr).toBe(0);
    expect(s.socketsUnderState()).toEqual([]);
    const r = await s.up();
    expect(allConnected(r.domains), deviceStates(r.domains)).toBe(true);
    const v = await qemuIo(['read -P 0x5c 8M 1M', 'read -P 0x3e 12M 4k', 'read -P 0xab 0 1M']);
    expect(v.ok, v.out).toBe(true);
  });

  it('a driver domain destroyed with I/O in flight comes back; fio completes with zero errors', async () => {
    // 12 passes of 32 MiB random 4 KiB writes, each verified: long enough to destroy blkdom mid-run.
    let done = false;
    const job = fio(['--name=restart', '--bs=4k', '--size=32M', '--offset=16M', '--loops=12'], 45_000).finally(() => (done = true));
    await sleep(1000);
    const runningAtDestroy = !done;
    const before = (await s.list()).find((d) => d.name === BLK)!;
    const destroy = await s.cli(['destroy', BLK]);
    expect(destroy.code, destroy.stderr).toBe(0);
    expect(destroy.stdout).toMatch(/on_crash=restart/);

    const back = await s.waitList((rows) => {
      const b = rows.find((d) => d.name === BLK);
      return !!b && b.restarts === 1 && b.state === 'running' && allConnected(rows);
    }, 15_000);
    const bl = back.rows.find((d) => d.name === BLK);
    expect(back.ok, `after destroy: ${BLK} ${JSON.stringify(bl && { domid: bl.domid, state: bl.state, restarts: bl.restarts })}; devices ${deviceStates(back.rows)}\n--- ringside.log ---\n${s.logTail()}`).toBe(true);
    expect(bl!.domid).toBe(before.domid);
    expect(bl!.pid).not.toBe(before.pid);

    const r = await job;
    expect(runningAtDestroy, 'fio finished before the destroy; the test did not catch I/O in flight').toBe(true);
    expect(r.code, r.out).toBe(0);
    expect(r.errors, r.out).toBe(0);
    expect(r.writes).toBe(12 * 8192);
    expect(s.log()).toMatch(/blkfront xvda: disconnected .*kept for replay/);
    // the rest of the disk is as it was
    const v = await qemuIo(['read -P 0x5c 8M 1M', 'read -P 0xab 0 1M', 'read -P 0xcd 60M 64k']);
    expect(v.ok, v.out).toBe(true);
  });
});
