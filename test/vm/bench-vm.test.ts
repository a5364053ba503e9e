// `ringside bench vm` end to end, shortened to one job: the three ways boot, the guest's fio runs
// on each, and the report carries every figure and both ratios (no figure is judged: CI is noisy).
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { processesMentioning } from '../support/proc.js';
import { join } from 'node:path';
import { DIST, requireBuilt } from '../support/platform.js';
import { VM_IMAGE_CACHE, ensureVmImage } from '../support/vm.js';
import type { VmBenchReport } from '../../src/bench/vm.js';

describe('ringside bench vm', () => {
  requireBuilt();

  it('reports the same fio job inside the VM for blkdom, qemu-storage-daemon and built-in virtio-blk, with ratios', async () => {
    await ensureVmImage();
    const r = spawnSync(process.execPath, [join(DIST, 'ringside.js'), 'bench', 'vm', '--seconds', '1', '--jobs', '4k-randread-qd32', '--image', VM_IMAGE_CACHE, '--json'], { encoding: 'utf8', timeout: 600_000 });
    expect(r.status, r.stderr.slice(-3000)).toBe(0);
    const rep = JSON.parse(r.stdout) as VmBenchReport;
    expect(rep.lines.map((l) => l.job.name)).toEqual(['4k randread qd32']);
    const l = rep.lines[0];
    for (const way of ['ringside', 'qsd', 'builtin'] as const) {
      expect(l.figures[way].iops, way).toBeGreaterThan(0);
      expect(rep.bootMs[way], way).toBeGreaterThan(0);
    }
    expect(l.vsQsd).toBeCloseTo(l.figures.ringside.iops / l.figures.qsd.iops, 6);
    expect(l.vsBuiltin).toBeCloseTo(l.figures.ringside.iops / l.figures.builtin.iops, 6);
    process.stderr.write(`bench vm (1 s, noisy CI): 4k randread qd32 ringside ${l.figures.ringside.iops.toFixed(0)} IOPS, ${l.vsQsd.toFixed(2)}x qsd, ${l.vsBuiltin.toFixed(2)}x built-in\n`);
    // progress went to stderr, stdout is the JSON alone
    expect(r.stderr).toMatch(/bench vm: qsd: /);
    // `down` with the VM running took QEMU, blkdom and hv with it; the bench directory is gone
    expect(processesMentioning('ringside-benchvm-'), 'processes still naming the bench directory').toEqual([]);
  }, 700_000);

  it('refuses an unknown job and names the known ones', () => {
    const r = spawnSync(process.execPath, [join(DIST, 'ringside.js'), 'bench', 'vm', '--jobs', '4k-randtrim'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/ringside bench vm: --jobs: unknown job '4k-randtrim'; the jobs are 4k-randread-qd1, 4k-randread-qd32/);
  });
});
