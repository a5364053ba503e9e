// ip(8) from iproute2, run asynchronously (the data path may share this event loop), with a time
// limit, arguments as an argv array (never a shell), and the tool's own message on failure.
import { statSync } from 'node:fs';
import { mustRun } from '../tools/run.js';
import { checkIfName, checkNetnsName } from './names.js';

const IP_TIMEOUT_MS = 10_000;

/** ip's stdout; a failure throws a ToolError with ip's own message. */
export function ip(args: readonly string[]): Promise<string> {
  return mustRun('ip', args, { timeoutMs: IP_TIMEOUT_MS });
}

export async function netnsList(): Promise<string[]> {
  const out = await ip(['netns', 'list']);
  return out.split('\n').map((l) => l.split(' ')[0]).filter((n) => n.length > 0);
}

export async function netnsExists(name: string): Promise<boolean> {
  return (await netnsList()).includes(checkNetnsName(name));
}

export async function netnsAdd(name: string): Promise<void> {
  await ip(['netns', 'add', checkNetnsName(name)]);
}

export async function netnsDel(name: string): Promise<void> {
  await ip(['netns', 'del', checkNetnsName(name)]);
}

/**
 * Whether this process already lives in the named namespace (a confined guest: the launcher put
 * it there). Compared by inode, as `ip netns identify` does; stat is not a Landlock access.
 */
export function inNetns(name: string): boolean {
  const here = statSync('/proc/self/ns/net');
  const there = statSync(`/run/netns/${checkNetnsName(name)}`, { throwIfNoEntry: false });
  return there !== undefined && there.ino === here.ino && there.dev === here.dev;
}

/** runs `ip -n NS ...` */
export function ipIn(ns: string, args: string[]): Promise<string> {
  return ip(['-n', checkNetnsName(ns), ...args]);
}

export async function linkExists(dev: string, ns?: string): Promise<boolean> {
  try {
    const a = ['link', 'show', 'dev', checkIfName(dev)];
    await (ns ? ipIn(ns, a) : ip(a));
    return true;
  } catch {
    return false;
  }
}
