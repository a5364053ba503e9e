import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { expect, it } from 'vitest';

const here = dirname(fileURLToPath(import.meta.url));

// A child process with a tiny young generation: an allocation per translation (a boxed double is
// 16 bytes) would cost hundreds of scavenges over 2e7 IOTLB hits; none means the path is clean.
const HARNESS = `
import { makeTestbed, sidOf } from ${JSON.stringify(join(here, 'testbed.ts'))};
import { PerformanceObserver } from 'node:perf_hooks';
const tb = makeTestbed({});
const t = tb.attach(1, 0, 1);
const base = 0x7f00_0000_0000;
for (let i = 0; i < 256; i++) t.map(base + i * 4096, 0x4000_0000 + i * 4096, 4096, { read: true, write: true });
const u = tb.unit;
const sid = sidOf(1, 0, 0);
const out = new Float64Array(1);
let bad = 0;
function loop(n) {
  for (let i = 0; i < n; i++) {
    u.io[0] = base + (i & 255) * 4096 + 8;
    if (u.xlate(sid, (i & 1) === 1) === 0) out[0] += u.io[0]; else bad++;
  }
}
for (let k = 0; k < 300; k++) loop(10000);
let gcs = 0;
const obs = new PerformanceObserver((l) => { gcs += l.getEntries().length; });
obs.observe({ entryTypes: ['gc'] });
const hits = u.stats.iotlbHits;
for (let k = 0; k < 2000; k++) loop(10000);
setTimeout(() => { obs.disconnect(); console.log(JSON.stringify({ gcs, bad, hits: u.stats.iotlbHits - hits })); }, 50);
`;

it('an IOTLB hit through xlate allocates nothing', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ringside-hotpath-'));
  try {
    const entry = join(dir, 'entry.mjs');
    writeFileSync(entry, HARNESS);
    await build({ entryPoints: [entry], bundle: true, platform: 'node', format: 'esm', outfile: join(dir, 'out.mjs'), logLevel: 'error' });
    const r = spawnSync(process.execPath, ['--max-semi-space-size=1', join(dir, 'out.mjs')], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    const res = JSON.parse(r.stdout) as { gcs: number; bad: number; hits: number };
    expect(res.bad).toBe(0);
    expect(res.hits).toBe(20_000_000);
    expect(res.gcs).toBeLessThanOrEqual(3);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
