// Running a host tool from a test: never throws, so a test can say what it expected of the exit
// code and show the tool's output when it differs. A spawn failure or a timeout is code -1
// (a timeout also has its signal); output is kept up to 64 MiB.
import { execFile } from 'node:child_process';

export interface Run {
  code: number;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/** `opts` may be just the timeout in ms (default 120 s). */
export function run(cmd: string, args: readonly string[], opts: number | { timeoutMs?: number; cwd?: string } = {}): Promise<Run> {
  const o = typeof opts === 'number' ? { timeoutMs: opts } : opts;
  return new Promise((resolve) => {
    execFile(cmd, [...args], { timeout: o.timeoutMs ?? 120_000, cwd: o.cwd, encoding: 'utf8', maxBuffer: 64 << 20, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const e = err as (Error & { code?: unknown; signal?: string | null }) | null;
      const code = e ? (typeof e.code === 'number' ? e.code : -1) : 0;
      resolve({ code, signal: e?.signal ?? null, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}
