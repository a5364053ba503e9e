// Running a host tool from a test: the library's one runner (never throws, so a test can say what
// it expected of the exit code and show the tool's output when it differs).
import { runTool, type ToolOptions, type ToolRun } from '../../src/tools/run.js';

export type Run = ToolRun;

/** `opts` may be just the timeout in ms (default 120 s). */
export function run(cmd: string, args: readonly string[], opts: number | ToolOptions = {}): Promise<Run> {
  return runTool(cmd, args, typeof opts === 'number' ? { timeoutMs: opts } : opts);
}
