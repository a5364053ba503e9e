// `ringside bench migrate` end to end: the same VM moved idle and under writes with QEMU's built-in
// devices and with ringside's driver domains, every figure present and the ratios the figures'
// (none judged: CI is noisy), and nothing of either way left running.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { processesMentioning } from '../support/proc.js';
import { DIST, requireBuilt } from '../support/platform.js';
import { VM_IMAGE_CACHE, ensureVmImage } from '../support/vm.js';
import type { MigrateBenchReport } from '../../src/bench/migrate.js';

describe('ringside bench migrate', () => {
  requireBuilt();

  it('moves one VM idle and under writes both ways and reports QEMU\'s figures, the guest-seen gap and the ratios', async () => {
    await ensureVmImage();
    const r = spawnSync(process.execPath, [join(DIST, 'ringside.js'), 'bench', 'migrate', '--runs', '1', '--image', VM_IMAGE_CACHE, '--json'], { encoding: 'utf8', timeout: 600_000 });
    expect(r.status, r.stderr.slice(-3000)).toBe(0);
    const rep = JSON.parse(r.stdout) as MigrateBenchReport;
    expect(rep.lines.map((l) => l.workload)).toEqual(['idle', 'write']);
    expect(rep.runs).toBe(1);
    for (const l of rep.lines) {
      for (const way of ['builtin', 'ringside'] as const) {
        const f = l.figures[way];
        expect(f.totalMs, `${l.workload} ${way}`).toBeGreaterThan(0);
        expect(f.downtimeMs, `${l.workload} ${way}`).toBeLessThanOrEqual(f.totalMs);
        expect(f.rounds, `${l.workload} ${way}`).toBeGreaterThanOrEqual(1);
        expect(f.transferredBytes).toBeGreaterThan(1 << 20);
        // the guest ticks every 10 ms: a migration always leaves a longer silence than that
        expect(f.guestGapMs, `${l.workload} ${way}`).toBeGreaterThan(10);
      }
      expect(l.totalRatio).toBeCloseTo(l.figures.ringside.totalMs / l.figures.builtin.totalMs, 6);
      expect(l.gapRatio).toBeCloseTo(l.figures.ringside.guestGapMs / l.figures.builtin.guestGapMs, 6);
      process.stderr.write(`bench migrate (noisy CI) ${l.workload}: total ${l.totalRatio.toFixed(2)}x, downtime ${l.downtimeRatio.toFixed(2)}x, guest gap ${l.gapRatio.toFixed(2)}x built-in\n`);
    }
    expect(r.stderr).toMatch(/bench migrate: ringside: write/);
    expect(processesMentioning('ringside-benchmig-'), 'processes still naming the bench directory').toEqual([]);
  }, 700_000);

  it('refuses a bad --runs, naming the option', () => {
    const r = spawnSync(process.execPath, [join(DIST, 'ringside.js'), 'bench', 'migrate', '--runs', '0'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/ringside bench migrate: --runs/);
  });
});
