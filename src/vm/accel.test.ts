import { describe, expect, it } from 'vitest';
import { chooseAccel, probeRuns } from './accel.js';

describe('accelerator choice', () => {
  it('the probe guest reaches its exit port under TCG, and a missing QEMU is a failed probe', async () => {
    expect(await probeRuns('tcg', { timeoutMs: 60_000 })).toMatchObject({ ok: true });
    const r = await probeRuns('tcg', { qemu: '/nonexistent/qemu-system-x86_64' });
    expect(r.ok).toBe(false);
    expect(r.detail).toMatch(/ENOENT/);
  });

  it('takes kvm and tcg as written and settles auto with a reason', async () => {
    expect(await chooseAccel('tcg')).toEqual({ accel: 'tcg', why: 'accel = "tcg" in the config' });
    const auto = await chooseAccel('auto', { timeoutMs: 10_000 });
    expect(auto.why).toMatch(/^accel = "auto": /);
    expect(['kvm', 'tcg']).toContain(auto.accel);
  });
});
