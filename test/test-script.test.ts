// The closing line CI reads must agree with the exit status, whatever vitest reported.
import { describe, expect, it } from 'vitest';
// @ts-expect-error plain ESM script without type declarations
import { summarize } from '../scripts/summary.mjs';

type Summary = { line: string; exitCode: number };
const sum = summarize as (r: unknown, status: number | null) => Summary;
const report = (passed: number, failed: number, files: { status: string; assertionResults: unknown[] }[] = []) => ({
  numPassedTests: passed,
  numFailedTests: failed,
  numPendingTests: 0,
  numTodoTests: 0,
  testResults: files,
});

describe('npm test closing line', () => {
  it('all green: 0 failed, exit 0', () => {
    expect(sum(report(5, 0), 0)).toEqual({ line: '5 passed, 0 failed, 0 skipped', exitCode: 0 });
  });
  it('a failed test counts and exits 1', () => {
    expect(sum(report(4, 1), 1)).toEqual({ line: '4 passed, 1 failed, 0 skipped', exitCode: 1 });
  });
  it('an unhandled error (vitest exits 1, no test failed) is a failure', () => {
    expect(sum(report(802, 0), 1)).toEqual({ line: '802 passed, 1 failed, 0 skipped', exitCode: 1 });
  });
  it('a file that failed to load is a failure', () => {
    expect(sum(report(3, 0, [{ status: 'failed', assertionResults: [] }]), 1)).toEqual({ line: '3 passed, 1 failed, 0 skipped', exitCode: 1 });
  });
  it('no report at all (vitest crashed) is a failure', () => {
    expect(sum(null, null)).toEqual({ line: '0 passed, 1 failed', exitCode: 1 });
  });
});
