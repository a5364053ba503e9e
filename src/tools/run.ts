// Running a host tool (ip, iperf3, fio, apt-get, ldd): an argv array, never a shell; a time limit;
// the output whatever the exit status, so the caller can say what it expected and show the tool's
// own words when it differs. One runner for the library, the benches and the tests.
import { execFile } from 'node:child_process';

export interface ToolRun {
  /** the exit status; -1 when the tool did not run to an exit (not found, timed out, killed) */
  code: number;
  /** the signal that ended it (a timeout kills with SIGKILL) */
  signal: string | null;
  /** why it could not be started at all (e.g. ENOENT), when that is what happened */
  spawnError: string | null;
  stdout: string;
  stderr: string;
}

export interface ToolOptions {
  /** default 120 s; 0 means no limit (execFile's meaning), for a tool whose caller bounds it */
  timeoutMs?: number;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
}

/** Never throws: a failure to start or a timeout is code -1. Output is kept up to 64 MiB. */
export function runTool(cmd: string, args: readonly string[], opts: ToolOptions = {}): Promise<ToolRun> {
  return new Promise((resolve) => {
    execFile(
      cmd,
      [...args],
      { timeout: opts.timeoutMs ?? 120_000, cwd: opts.cwd, env: opts.env, encoding: 'utf8', maxBuffer: 64 << 20, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => {
        const e = err as (Error & { code?: unknown; signal?: string | null }) | null;
        const code = e ? (typeof e.code === 'number' ? e.code : -1) : 0;
        const spawnError = e && typeof e.code === 'string' ? `${e.code}: ${e.message}` : null;
        resolve({ code, signal: e?.signal ?? null, spawnError, stdout: String(stdout), stderr: String(stderr) });
      },
    );
  });
}

export class ToolError extends Error {
  constructor(
    readonly cmd: string,
    readonly args: readonly string[],
    readonly result: ToolRun,
  ) {
    const why = result.stderr.trim() || result.spawnError || (result.signal ? `killed by ${result.signal}` : `exit ${result.code}`);
    super(`${cmd} ${args.join(' ')}: ${why}`);
    this.name = 'ToolError';
  }
}

/** The tool's stdout, or a ToolError carrying its own message when it did not exit 0. */
export async function mustRun(cmd: string, args: readonly string[], opts: ToolOptions = {}): Promise<string> {
  const r = await runTool(cmd, args, opts);
  if (r.code !== 0) throw new ToolError(cmd, args, r);
  return r.stdout;
}

/** Whether `name` is on PATH (names are ours, never user input: the shell only looks it up). */
export async function hasTool(name: string): Promise<boolean> {
  if (!/^[\w.+-]+$/.test(name)) throw new Error(`hasTool: ${JSON.stringify(name)} is not a program name`);
  return (await runTool('sh', ['-c', `command -v ${name}`], { timeoutMs: 10_000 })).code === 0;
}
