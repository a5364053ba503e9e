// A guest's network namespace, made by the toolstack before the guest starts (as a Xen hotplug
// script prepares a vif's host side), so the guest never needs CAP_SYS_ADMIN. A confined guest's
// namespace is owned by a user namespace of its own: CAP_NET_ADMIN counts per user namespace,
// and the guest keeps that capability to build its TAP, so held against the host's user
// namespace it would reach the host's interfaces through netlink (a device can be sent to, or
// created in, any namespace named by pid). ringside-confine joins the owner first and refuses a
// namespace the host owns. An unconfined guest (seccomp = 0) runs as root anyway, so its
// namespace is a plain `ip netns add` and works on hosts without user namespaces.
//
// unshare(1) creates the pair and waits; `ip netns attach` binds the namespace under /run/netns
// where `ip netns exec`, the launcher and `ip netns delete` find it. The user namespace lives as
// long as the network namespace refers to it; nothing else holds it.
//
// /run/netns is shared with the operator, so ringside deletes only namespaces it made: each one
// is recorded under <state>/netns/ before it is created, and the record goes only once the
// namespace is gone. Whatever crashes in between, `ringside down` (or the next `up`) finds the
// record and removes the namespace.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ip } from '../tap/ip.js';
import { checkNetnsName } from '../tap/names.js';

const STEP_MS = 10_000;
const MAX_USER_NAMESPACES = '/proc/sys/user/max_user_namespaces';


export const netnsPath = (name: string) => `/run/netns/${checkNetnsName(name)}`;

/** The namespaces ringside made for one state directory: one file per namespace, holding its name. */
export class NetnsRecords {
  readonly dir: string;

  constructor(stateDir: string) {
    this.dir = join(stateDir, 'netns');
  }

  has(name: string): boolean {
    const f = join(this.dir, checkNetnsName(name));
    try {
      return readFileSync(f, 'utf8').trim() === name;
    } catch {
      return false;
    }
  }

  add(name: string): void {
    const f = join(this.dir, checkNetnsName(name));
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    writeFileSync(f, `${name}\n`, { mode: 0o600 });
  }

  remove(name: string): void {
    rmSync(join(this.dir, checkNetnsName(name)), { force: true });
  }

  /**
   * Every recorded name. A file whose name is not a namespace name, or whose content does not
   * repeat it, was not written by ringside: it is reported and never acted on.
   */
  list(): { names: string[]; ignored: string[] } {
    const names: string[] = [];
    const ignored: string[] = [];
    if (!existsSync(this.dir)) return { names, ignored };
    for (const f of readdirSync(this.dir)) {
      let ok = false;
      try {
        ok = checkNetnsName(f) === f && readFileSync(join(this.dir, f), 'utf8').trim() === f;
      } catch {
        /* not a valid name, or not a readable file */
      }
      (ok ? names : ignored).push(f);
    }
    return { names: names.sort(), ignored };
  }
}

/**
 * Why a user namespace cannot be made on this host, from the content of
 * /proc/sys/user/max_user_namespaces (null when the file is missing), or null when it can.
 */
export function userNamespacesOff(maxUserNamespaces: string | null, guest: string): string | null {
  const how = `enable them, or set seccomp = 0 for ${guest} (it then runs unconfined)`;
  if (maxUserNamespaces === null) return `user namespaces are off on this host (no ${MAX_USER_NAMESPACES}: the kernel is built without CONFIG_USER_NS): ${how}`;
  const n = maxUserNamespaces.trim();
  if (!/^\d+$/.test(n)) return `cannot tell whether user namespaces are on: ${MAX_USER_NAMESPACES} reads ${JSON.stringify(n.slice(0, 32))}: ${how}`;
  if (Number(n) === 0) return `user namespaces are off on this host (user.max_user_namespaces=0): ${how} (sysctl -w user.max_user_namespaces=N)`;
  return null;
}

function readMaxUserNamespaces(): string | null {
  try {
    return readFileSync(MAX_USER_NAMESPACES, 'utf8');
  } catch {
    return null;
  }
}

/** The refusal for a namespace that exists and that ringside did not make. */
export function foreignNetnsError(guest: string, name: string): Error {
  return new Error(`guest '${guest}': network namespace ${name} already exists and ringside did not make it (it is not recorded in its state directory); ringside will not take it over or delete it: delete it with \`ip netns del ${name}\` or choose another netns= for ${guest}`);
}

export interface GuestNetnsOptions {
  records: NetnsRecords;
  /** the guest it is for, named in errors */
  guest: string;
  /** owned by a user namespace of its own (confined guests) or by the host's (seccomp = 0) */
  confined: boolean;
}

/**
 * Makes `name` a fresh namespace for `o.guest`. One left from an earlier run of this system (a
 * crash, a restart) is removed first: the guest that used it is gone. One ringside did not make
 * is refused and left alone.
 */
export async function createGuestNetns(name: string, o: GuestNetnsOptions): Promise<void> {
  checkNetnsName(name);
  if (existsSync(netnsPath(name))) {
    if (!o.records.has(name)) throw foreignNetnsError(o.guest, name);
    await ip(['netns', 'delete', name]);
  }
  if (o.confined) {
    const off = userNamespacesOff(readMaxUserNamespaces(), o.guest);
    if (off) throw new Error(off);
  }
  o.records.add(name);
  try {
    if (o.confined) await attachOwnNamespace(name);
    else await ip(['netns', 'add', name]);
  } catch (e) {
    // nothing of it may stay behind: not the bind (attach can fail after making it), not the record
    if (existsSync(netnsPath(name))) await ip(['netns', 'delete', name]).catch(() => undefined);
    if (!existsSync(netnsPath(name))) o.records.remove(name);
    throw e;
  }
}

async function attachOwnNamespace(name: string): Promise<void> {
  const holder = spawn('unshare', ['--user', '--net', '--', 'sh', '-c', 'echo ready; exec cat'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let err = '';
  holder.stderr.on('data', (b: Buffer) => (err += b.toString()));
  const exited = new Promise<void>((r) => holder.once('close', () => r()));
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`unshare did not start within ${STEP_MS} ms`)), STEP_MS);
      holder.once('error', (e) => reject(new Error(`cannot run unshare (util-linux): ${e.message}`)));
      holder.once('exit', (code) => {
        // ENOSPC from unshare(2) means the per-user limit is reached, not a full disk
        const full = /No space left on device/.test(err) ? ` (the host's limit user.max_user_namespaces=${readMaxUserNamespaces()?.trim() ?? '?'} is reached)` : '';
        reject(new Error(`unshare --user --net exited ${code}: ${err.trim() || 'no message'}${full}`));
      });
      holder.stdout.once('data', () => {
        clearTimeout(timer);
        resolve();
      });
    });
    const pid = holder.pid as number;
    // The holder printed from inside its namespaces, so they are in place; still, never bind ours.
    if (readlinkSync(`/proc/${pid}/ns/net`) === readlinkSync('/proc/self/ns/net')) throw new Error(`unshare (pid ${pid}) is still in the host's network namespace`);
    await ip(['netns', 'attach', name, String(pid)]);
  } finally {
    holder.stdin.end();
    if (holder.exitCode === null && holder.signalCode === null) holder.kill('SIGKILL');
    await exited;
  }
}

/**
 * Removes `name` if ringside made it (a namespace not recorded is never touched), then its
 * record. Returns whether there was one to remove.
 */
export async function deleteGuestNetns(name: string, records: NetnsRecords): Promise<boolean> {
  if (!records.has(name)) return false;
  const there = existsSync(netnsPath(name));
  if (there) await ip(['netns', 'delete', name]);
  records.remove(name);
  return there;
}

/**
 * Removes every namespace recorded for a stopped system (what a crashed dom0 or a SIGKILLed hv
 * left). A namespace that cannot be removed keeps its record, so a later `down` tries again.
 */
export async function deleteRecordedNetns(records: NetnsRecords): Promise<{ removed: string[]; problems: string[] }> {
  const { names, ignored } = records.list();
  const removed: string[] = [];
  const problems = ignored.map((f) => `ignored ${join(records.dir, f)}: not a namespace record ringside wrote`);
  for (const n of names) {
    try {
      if (await deleteGuestNetns(n, records)) removed.push(n);
    } catch (e) {
      problems.push(`cannot remove network namespace ${n}: ${(e as Error).message}`);
    }
  }
  return { removed, problems };
}
