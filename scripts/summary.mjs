// The closing line of `npm test`, from vitest's JSON report and its exit status. Kept apart from
// test.mjs so a unit test can pin it down: whatever vitest says, the line and the exit agree.

/**
 * @param {{ numPassedTests: number, numFailedTests: number, numPendingTests: number, numTodoTests?: number,
 *           testResults?: { status: string, assertionResults?: unknown[] }[] } | null} report
 *        vitest's JSON report, or null when vitest died before writing one
 * @param {number | null} status vitest's exit status
 * @returns {{ line: string, exitCode: number }}
 */
export function summarize(report, status) {
  if (!report) return { line: '0 passed, 1 failed', exitCode: 1 };
  // a file that failed to load has no assertions, only a failed status
  const failedFiles = (report.testResults ?? []).filter((t) => t.status === 'failed' && (t.assertionResults ?? []).length === 0).length;
  let failed = report.numFailedTests + failedFiles;
  // vitest fails a run for an unhandled error or a crashed worker without failing any test: that
  // is a failure too, so "0 failed" never stands beside a non-zero exit.
  if (status !== 0 && failed === 0) failed = 1;
  const skipped = report.numPendingTests + (report.numTodoTests ?? 0);
  return { line: `${report.numPassedTests} passed, ${failed} failed, ${skipped} skipped`, exitCode: failed === 0 && status === 0 ? 0 : 1 };
}
