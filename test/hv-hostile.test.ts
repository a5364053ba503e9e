import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pack } from 'msgpackr';
import { TestPlatform, type Probe } from './support/platform.js';

describe('hv against hostile hypercalls', () => {
  let t: TestPlatform;
  let good: Probe;

  beforeAll(async () => {
    t = new TestPlatform();
    good = await t.probe('well-behaved');
  });
  afterAll(async () => t?.close());

  it('answers malformed hypercalls with named errors and keeps serving', async () => {
    const evil = await t.probe('malformed');
    const cases: [string, unknown, RegExp][] = [
      ['no_such_op', {}, /ENOSYS|unknown hypercall/],
      ['gnttab_map', { ops: 'x' }, /ops must be an array/],
      ['gnttab_map', { ops: [] }, /1\.\.64 entries/],
      ['gnttab_map', { ops: [{ dom: -1, ref: 0, flags: 2 }] }, /dom must be an integer/],
      ['gnttab_copy', { ops: [{ source: 5, dest: {}, len: 1, flags: 0 }] }, /source must be an object/],
      ['evtchn_close', { port: 12345 }, /not open/],
      ['evtchn_bind_interdomain', { remoteDom: 0, remotePort: 1.5 }, /remotePort must be an integer/],
      ['memory_frames', { start: 0, count: 1000 }, /count must be an integer in 0\.\.64/],
      ['domain_create', { name: 'x', kind: 'probe', memoryMiB: 1, ioFrames: 1, grantFrames: 1 }, /only the control domain/],
      ['domain_destroy', { domid: 0 }, /only the control domain/],
    ];
    for (const [op, args, re] of cases) {
      const r = await evil.cmd('hypercall', { op, args });
      expect(r.ok, op).toBe(false);
      expect(r.error, op).toMatch(re);
    }
    expect((await good.cmd('info')).domid).toBe(good.domid);
    expect(t.logs.some((l) => /policy: denied dom\d+ \(malformed\) domain_create/.test(l))).toBe(true);
  });

  it('cuts off a domain that sends undecodable bytes, with a logged reason', async () => {
    const evil = await t.probe('garbage');
    void evil.cmd('raw', { bytes: [0xc1, 0xc1, 0xc1, 0xff, 0x00] });
    const ev = await t.waitEvent((e) => e.event === 'domain_died' && e.domid === evil.domid);
    expect(ev.event === 'domain_died' && ev.reason).toMatch(/hypercall channel: undecodable message/);
    expect((await good.cmd('info')).name).toBe('well-behaved');
  });

  it('cuts off a domain that keeps sending bad hypercalls', async () => {
    const evil = await t.probe('flooder');
    for (let i = 0; i < 40; i++) void evil.cmd('hypercall', { op: 'evtchn_close', args: { port: 999 } });
    const ev = await t.waitEvent((e) => e.event === 'domain_died' && e.domid === evil.domid);
    expect(ev.event === 'domain_died' && ev.reason).toMatch(/cut off after \d+ bad hypercalls/);
    expect((await good.cmd('info')).name).toBe('well-behaved');
  });

  it('validates the control domain too', async () => {
    await expect(t.dom0.call('domain_create', { name: '../etc', kind: 'probe', memoryMiB: 1, ioFrames: 1, grantFrames: 1 })).rejects.toThrow(/name must be/);
    await expect(t.dom0.call('domain_create', { name: 'k', kind: '../../bin/sh', memoryMiB: 1, ioFrames: 1, grantFrames: 1 })).rejects.toThrow(/kind must be/);
    await expect(t.dom0.call('domain_create', { name: 'k', kind: 'nonexistent', memoryMiB: 1, ioFrames: 1, grantFrames: 1 })).rejects.toThrow(/unknown domain kind/);
    await expect(t.dom0.call('domain_create', { name: 'k', kind: 'probe', memoryMiB: 1, ioFrames: 99999, grantFrames: 1 })).rejects.toThrow(/ioFrames must be/);
    await expect(t.dom0.call('domain_unpause', { domid: 77, bootArgs: pack({}) })).rejects.toThrow(/no domain 77/);
    await expect(t.dom0.call('domain_create', { name: 'well-behaved', kind: 'probe', memoryMiB: 1, ioFrames: 1, grantFrames: 1 })).rejects.toThrow(/exists/);
  });

  it('checks a VM\'s QEMU arguments and keeps its own options', async () => {
    const vm = (argv: unknown, kind = 'vm') => t.dom0.call('domain_create', { name: 'v', kind, memoryMiB: 64, ioFrames: 0, grantFrames: 1, vm: { argv } } as never);
    await expect(t.dom0.call('domain_create', { name: 'v', kind: 'vm', memoryMiB: 64, ioFrames: 0, grantFrames: 1 })).rejects.toThrow(/vm must be/);
    await expect(vm('-m 64')).rejects.toThrow(/vm.argv must be an array of 1..512 strings/);
    await expect(vm([])).rejects.toThrow(/vm.argv must be an array/);
    await expect(vm(new Array(513).fill('-S'))).rejects.toThrow(/vm.argv must be an array of 1..512/);
    await expect(vm(['-m', 64])).rejects.toThrow(/vm.argv\[1\] must be a string/);
    await expect(vm(['-m', 'a\0b'])).rejects.toThrow(/vm.argv\[1\] must be a string of 1..4096 characters without NUL/);
    for (const own of ['-sandbox', '--sandbox', '-runas', '-chroot', '-daemonize'])
      await expect(vm(['-m', '64', own, 'off'])).rejects.toThrow(new RegExp(`vm.argv\\[2\\] ${own}: hv decides that itself`));
    await expect(vm(['-m', '64'], 'probe')).rejects.toThrow(/vm is only for kind 'vm'/);
    expect(t.logs.some((l) => /created dom\d+ 'v'/.test(l))).toBe(false);
  });
});
