// `npm test`: build the bundles, run every vitest suite, and end with one plain summary line
// ("N passed, N failed, N skipped") that CI and humans can read. The line and the exit status always agree (scripts/summary.mjs).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { summarize } from './summary.mjs';

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
let report = null;
try {
  report = JSON.parse(readFileSync(out, 'utf8'));
} catch {
  /* vitest died before writing results: summarize counts that as a failure */
}
rmSync(dir, { recursive: true, force: true });
const { line, exitCode } = summarize(report, vitest.status);
console.log(line);
process.exit(exitCode);
