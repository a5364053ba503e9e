// A guest's network namespace, made by the toolstack before the guest starts (as a Xen hotplug
// script prepares a vif's host side), so the guest never needs CAP_SYS_ADMIN. It is owned by a
// user namespace of its own: CAP_NET_ADMIN counts per user namespace, and the guest keeps that
// capability to build its TAP, so held against the host's user namespace it would reach the
// host's interfaces through netlink (a device can be sent to, or created in, any namespace named
// by pid). ringside-confine joins the owner first and refuses a namespace the host owns.
//
// unshare(1) creates the pair and waits; `ip netns attach` binds the namespace under /run/netns
// where `ip netns exec`, the launcher and `ip netns delete` find it. The user namespace lives as
// long as the network namespace refers to it; nothing else holds it.
import { execFile, spawn } from 'node:child_process';
import { existsSync, readlinkSync } from 'node:fs';
import { checkNetnsName } from '../../src/tap/names.js';

const STEP_MS = 10_000;

function ip(args: string[]): Promise<void> {
  return new Promise((resolve, reject) =>
    execFile('ip', args, { timeout: STEP_MS, encoding: 'utf8' }, (err, _out, stderr) => (err ? reject(new Error(`ip ${args.join(' ')}: ${stderr.trim() || err.message}`)) : resolve())),
  );
}

export const netnsPath = (name: string) => `/run/netns/${checkNetnsName(name)}`;

/**
 * Makes `name` a fresh namespace owned by its own user namespace. A namespace left from an
 * earlier run of the guest (a crash, a restart) is removed first: the guest that used it is
 * gone, and one the host owns would be refused by the launcher.
 */
export async function createGuestNetns(name: string): Promise<void> {
  if (existsSync(netnsPath(name))) await deleteNetns(name);
  const holder = spawn('unshare', ['--user', '--net', '--', 'sh', '-c', 'echo ready; exec cat'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let err = '';
  holder.stderr.on('data', (b: Buffer) => (err += b.toString()));
  const exited = new Promise<void>((r) => holder.once('close', () => r()));
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`unshare did not start within ${STEP_MS} ms`)), STEP_MS);
      holder.once('error', (e) => reject(new Error(`cannot run unshare (util-linux): ${e.message}`)));
      holder.once('exit', (code) => reject(new Error(`unshare --user --net exited ${code}: ${err.trim() || 'no message'}`)));
      holder.stdout.once('data', () => {
        clearTimeout(timer);
        resolve();
      });
    });
    const pid = holder.pid as number;
    // The holder printed from inside its namespaces, so they are in place; still, never bind ours.
    if (readlinkSync(`/proc/${pid}/ns/net`) === readlinkSync('/proc/self/ns/net')) throw new Error(`unshare (pid ${pid}) is still in the host's network namespace`);
    await ip(['netns', 'attach', checkNetnsName(name), String(pid)]);
  } finally {
    holder.stdin.end();
    if (holder.exitCode === null && holder.signalCode === null) holder.kill('SIGKILL');
    await exited;
  }
}

export async function deleteNetns(name: string): Promise<void> {
  await ip(['netns', 'delete', checkNetnsName(name)]);
}
