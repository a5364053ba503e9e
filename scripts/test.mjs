// `npm test`: build the bundles, run every vitest suite, and end with one plain summary line
// ("N passed, N failed, N skipped") that CI and humans can read. Exit status is vitest's.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const build = spawnSync(process.execPath, [join(root, 'scripts', 'build.mjs')], { stdio: 'inherit', cwd: root });
if (build.status !== 0) {
  console.log('0 passed, 1 failed');
  process.exit(1);
}
const dir = mkdtempSync(join(tmpdir(), 'ringside-vitest-'));
const out = join(dir, 'results.json');
const vitest = spawnSync(
  process.execPath,
  [join(root, 'node_modules', 'vitest', 'vitest.mjs'), 'run', '--reporter=default', '--reporter=json', `--outputFile.json=${out}`, ...process.argv.slice(2)],
  { stdio: 'inherit', cwd: root },
);
let summary = '0 passed, 1 failed';
try {
  const r = JSON.parse(readFileSync(out, 'utf8'));
  const failedSuites = (r.testResults ?? []).filter((t) => t.status === 'failed' && (t.assertionResults ?? []).length === 0).length;
  let failed = r.numFailedTests + failedSuites;
  // vitest fails a run for an unhandled error or a crashed worker without failing any test: count
  // it, so the closing line can never say "0 failed" beside a non-zero exit.
  if (vitest.status !== 0 && failed === 0) failed = 1;
  summary = `${r.numPassedTests} passed, ${failed} failed, ${r.numPendingTests + (r.numTodoTests ?? 0)} skipped`;
} catch {
  /* vitest died before writing results: counted as a failure */
}
rmSync(dir, { recursive: true, force: true });
console.log(summary);
process.exit(vitest.status === 0 && /, 0 failed/.test(summary) ? 0 : 1);
