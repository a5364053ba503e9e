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

/**
 * Options hv keeps for itself: how QEMU sandboxes, daemonises, changes user or root directory
 * is not the toolstack's to say.
 */
const VM_RESERVED_OPTIONS = ['-sandbox', '-daemonize', '-runas', '-chroot', '-run-with', '-pidfile', '-enable-kvm'];
export const MAX_VM_ARGS = 512;
const MAX_VM_ARG = 4096;
/**
 * QEMU's own seccomp filter on top of ringside-confine's: no obsolete calls, no set*uid, no fork or
 * exec (so no helper scripts and no `migrate exec:`), no scheduler or priority changes.
 */
export const VM_SANDBOX = ['-sandbox', 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny'];

/** Checks the toolstack's QEMU arguments; the message names the first bad one. */
export function checkVmArgv(argv: unknown): string[] {
  if (!Array.isArray(argv) || argv.length === 0 || argv.length > MAX_VM_ARGS) return fail(`vm.argv must be an array of 1..${MAX_VM_ARGS} strings`);
  for (const [i, a] of argv.entries()) {
    if (typeof a !== 'string' || a.length === 0 || a.length > MAX_VM_ARG || a.includes('\0')) return fail(`vm.argv[${i}] must be a string of 1..${MAX_VM_ARG} characters without NUL`);
    if (VM_RESERVED_OPTIONS.includes(a.replace(/^--/, '-'))) return fail(`vm.argv[${i}] ${a}: hv decides that itself`);
  }
  return argv as string[];
}

function fail(msg: string): never {
  throw new VmArgError(msg);
}

export class VmArgError extends Error {
  readonly code = 'EINVAL';
}

/** qemu-system-x86_64 on hv's PATH, or null. */
export function qemuBinary(): string | null {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
    const p = join(dir || '.', 'qemu-system-x86_64');
    if (dir.startsWith('/') && existsSync(p)) return p;
  }
  return null;
}

/**
 * Starts a VM's QEMU: its own process group always (destroy kills the group), hv's sandbox
 * options last, and its output logged under the domain's name.
 */
export function spawnVm(opts: { qemu: string; argv: string[]; name: string; domid: number; log: (line: string) => void; confine?: { launcher: string; args: string[] } | undefined }): ChildProcess {
  const env: NodeJS.ProcessEnv = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' };
  const qemuArgs = [...opts.argv, ...VM_SANDBOX];
  const [cmd, args] = opts.confine ? [opts.confine.launcher, [...opts.confine.args, opts.qemu, ...qemuArgs]] : [opts.qemu, qemuArgs];
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env, detached: true });
  forwardLines(child, (l) => opts.log(`[${opts.name}#${opts.domid}] qemu: ${l}`));
  return child;
}

function forwardLines(child: ChildProcess, log: (line: string) => void): void {
  for (const stream of [child.stdout, child.stderr]) {
    if (!stream) continue;
    readLines(stream, log);
  }
}
