// cpu = "baseline" asks each peer host in host.cfg which CPU models it offers. A peer is another
// machine, so its answer is hostile input: whatever it sends, dom0 either picks a model every host
// cleared or refuses with an error naming the peer, and never trusts what it could not read.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeFrame, MAX_CONTROL_FRAME } from '../../src/control/wire.js';
import { probeHostCpu, type HostCpu } from '../../src/vm/cpu.js';
import type { Accelerator } from '../../src/vm/qemu.js';
import { CpuPolicy } from './cpu-policy.js';
import { fakeHost, type FakeHost } from '../../test/support/fake-control.js';

describe('cpu = "baseline" against a peer host that answers what it likes', () => {
  const dirs: string[] = [];
  let own: string;
  let alone: string;
  let models: string[];

  const hosts: FakeHost[] = [];
  /** A peer whose dom0 answers each request with `answer(socket)`. */
  async function peer(answer: (s: Socket) => void): Promise<string> {
    const h = await fakeHost((_req, s) => answer(s));
    hosts.push(h);
    return h.dir;
  }

  const policy = (peers: string[]) => new CpuPolicy({ name: 'here', cpuMask: [], peers }, own);

  beforeAll(async () => {
    own = mkdtempSync(join(tmpdir(), 'rs-cpu-own-'));
    dirs.push(own);
    models = [...(await probeHostCpu('tcg')).models.keys()];
    alone = (await policy([]).choose('vm', 'baseline', 'tcg')).model;
  });

  afterAll(() => {
    for (const h of hosts) h.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('an honest peer that lacks a feature of the best model moves the choice to one it offers', async () => {
    const p = await peer((s) => s.end(encodeFrame({ ok: true, cpuMissing: Object.fromEntries(models.map((m) => [m, m === alone ? ['avx512f'] : []])) })));
    const c = await policy([p]).choose('vm', 'baseline', 'tcg');
    expect(c.model).not.toBe(alone);
    expect(models).toContain(c.model);
    expect(c.why).toMatch(/its 1 peer\(s\)/);
  });

  it('what the peer says badly of a model counts as "it cannot run it"', async () => {
    // every model but one described wrongly (a string, non-strings, null), that one cleared
    const cleared = models.find((m) => m !== alone)!;
    const garbage: unknown[] = ['none', [1, 2], null, { avx: true }, [[]]];
    const p = await peer((s) =>
      s.end(encodeFrame({ ok: true, cpuMissing: { ...Object.fromEntries(models.map((m, i) => [m, garbage[i % garbage.length]])), [cleared]: [], 'not-a-model': [] } })),
    );
    expect((await policy([p]).choose('vm', 'baseline', 'tcg')).model).toBe(cleared);
  });

  const refusals: [string, (s: Socket) => void, RegExp][] = [
    ['a reply that is not an object', (s) => s.end(encodeFrame(null)), /peer host at .*: the answer is not a control reply/],
    ['a number for a reply', (s) => s.end(encodeFrame(42)), /peer host at .*: the answer is not a control reply/],
    ['no cpuMissing at all', (s) => s.end(encodeFrame({ ok: true })), /no CPU model is offered by every host/],
    ['a refusal with a megabyte of error text', (s) => s.end(encodeFrame({ ok: false, error: 'x'.repeat(900_000) })), /could not say which CPU models it offers: x{200}…$/],
    ['a frame longer than any control frame', (s) => {
      const h = Buffer.alloc(4);
      h.writeUInt32LE(MAX_CONTROL_FRAME + 1, 0);
      s.end(h);
    }, /peer host at .*: control frame of \d+ bytes exceeds/],
    ['bytes that are not msgpack', (s) => s.end(Buffer.from([3, 0, 0, 0, 0xc1, 0xc1, 0xc1])), /peer host at .*: /],
    ['a hang-up without an answer', (s) => s.end(), /peer host at .*: the control domain closed the connection/],
  ];

  for (const [what, answer, error] of refusals) {
    it(`${what}: refused, naming the peer`, async () => {
      const p = await peer(answer);
      const e = await policy([p]).choose('vm', 'baseline', 'tcg').then(() => null, (x: Error) => x);
      expect(e, 'a model was chosen on an answer that could not be read').not.toBeNull();
      expect(e!).not.toBeInstanceOf(TypeError);
      expect(e!.message).toMatch(error);
      expect(e!.message.length).toBeLessThan(1000);
    });
  }
});

describe('accel = "auto" and the CPU model together', () => {
  // KVM here hides pni and aes (as this project's nested KVM did); TCG emulates pni but not aes
  const model = (unavailable: string[]) => ({ unavailable, features: new Set(['pni', 'aes', 'sse2']) });
  const fake = async (accel: Accelerator): Promise<HostCpu> => ({
    accel,
    models: new Map([
      ['qemu64', model(accel === 'kvm' ? ['pni'] : [])],
      ['Westmere', model(['aes'])],
      ['kvm64', model([])],
    ]),
    known: new Set(['pni', 'aes', 'sse2']),
  });
  const policy = () => new CpuPolicy({ name: 'here', cpuMask: [], peers: [] }, '/nonexistent', fake);
  const kvm = { accel: 'kvm' as const, why: 'accel = "auto": a probe guest ran to its exit port under KVM' };

  it('a model KVM cannot offer here runs under TCG, and the reason names the missing feature', async () => {
    const s = await policy().settle('vm', 'qemu64', kvm, true);
    expect(s.accel.accel).toBe('tcg');
    expect(s.accel.why).toBe('accel = "auto": a probe guest ran to its exit port under KVM, but CPU model qemu64 needs features this host lacks: pni (not offered under KVM here), so TCG');
    expect(s.cpu.model).toBe('qemu64');
  });

  it('a model KVM offers stays on KVM', async () => {
    const s = await policy().settle('vm', 'kvm64', kvm, true);
    expect(s).toMatchObject({ accel: kvm, cpu: { model: 'kvm64' } });
  });

  it('accel = "kvm" written in the config is refused rather than changed', async () => {
    await expect(policy().settle('vm', 'qemu64', { accel: 'kvm', why: 'accel = "kvm" in the config' }, false)).rejects.toThrow(/vm: host here cannot run it: CPU model qemu64 needs features this host lacks: pni \(not offered under KVM here\)/);
  });

  it('cpu = "baseline" where KVM offers no model at all levels under TCG', async () => {
    const bare = async (accel: Accelerator): Promise<HostCpu> => ({ ...(await fake(accel)), models: new Map([['qemu64', model(accel === 'kvm' ? ['pni'] : [])]]) });
    const s = await new CpuPolicy({ name: 'here', cpuMask: [], peers: [] }, '/nonexistent', bare).settle('vm', 'baseline', kvm, true);
    expect(s.accel).toMatchObject({ accel: 'tcg', why: expect.stringMatching(/but cpu = "baseline": no CPU model runs under KVM here, so TCG$/) });
    expect(s.cpu.model).toBe('qemu64');
  });

  it('a model neither accelerator offers is refused with what TCG lacks', async () => {
    await expect(policy().settle('vm', 'Westmere', kvm, true)).rejects.toThrow(/CPU model Westmere needs features this host lacks: aes \(not offered under TCG here\)/);
  });
});
