// Starting a domain's process: the bundled entry point for its kind, its hypercall channel on
// fd 3, a V8 heap capped at the domain's memory, and its output forwarded line by line with the
// domain's name in front so one log tells who said what. hw, the hardware process, starts here too.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { readLines } from '../../src/control/lines.js';

export const KIND_RE = /^[a-z][a-z0-9-]{0,31}$/;

/** Finds `<dir>/<kind>.js` in the first bundle directory that has it. */
export function bundleFor(bundleDirs: readonly string[], kind: string): string | null {
  if (!KIND_RE.test(kind)) return null;
  for (const dir of bundleDirs) {
    const p = join(dir, `${kind}.js`);
    if (existsSync(p)) return p;
  }
  return null;
}

/**
 * Starts hw, the emulated hardware: not a domain, so no domid and no hypercall channel, only the
 * descriptors it is given (by child fd number) and a small heap. Its lines are logged as "hw:".
 */
export function spawnHardware(opts: {
  bundle: string;
  fds: Record<number, number>;
  log: (line: string) => void;
  confine?: { launcher: string; args: string[] };
  /** libuv threads hw needs (its threadpool is sized before any of its code runs) */
  threads?: number;
}): ChildProcess {
  const top = Math.max(...Object.keys(opts.fds).map(Number));
  const stdio: (number | 'ignore' | 'pipe')[] = ['ignore', 'pipe', 'pipe'];
  for (let i = 3; i <= top; i++) stdio.push(opts.fds[i] ?? 'ignore');
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' };
  if (opts.threads !== undefined) env.UV_THREADPOOL_SIZE = String(opts.threads);
  const nodeArgs = ['--max-old-space-size=256', '--enable-source-maps', opts.bundle];
  const [cmd, args] = opts.confine ? [opts.confine.launcher, [...opts.confine.args, process.execPath, ...nodeArgs]] : [process.execPath, nodeArgs];
  const child = spawn(cmd, args, { stdio, env });
  forwardLines(child, (l) => opts.log(`hw: ${l}`));
  return child;
}

export function spawnDomain(opts: {
  bundle: string;
  name: string;
  domid: number;
  memoryMiB: number;
  channelFd: number;
  log: (line: string) => void;
  /** run under ringside-confine with these rules (a confined driver domain) */
  confine?: { launcher: string; args: string[] } | undefined;
}): ChildProcess {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', RINGSIDE_DOMAIN: opts.name };
  const nodeArgs = [`--max-old-space-size=${Math.max(32, opts.memoryMiB)}`, '--enable-source-maps', opts.bundle];
  const [cmd, args] = opts.confine ? [opts.confine.launcher, [...opts.confine.args, process.execPath, ...nodeArgs]] : [process.execPath, nodeArgs];
  // A confined domain leads a process group of its own, which its seccomp filter keeps it and
  // every child in: hv kills the group, so nothing it forked outlives it.
  const child = spawn(cmd, args, {
    stdio: ['ignore', 'pipe', 'pipe', opts.channelFd],
    env,
    detached: opts.confine !== undefined,
  });
  forwardLines(child, (l) => opts.log(`[${opts.name}#${opts.domid}] ${l}`));
  return child;
}

function forwardLines(child: ChildProcess, log: (line: string) => void): void {
  for (const stream of [child.stdout, child.stderr]) {
    if (!stream) continue;
    readLines(stream, log);
  }
}
