// Starting a domain confined: hv checks the toolstack's list of files (absolute, plain, bounded)
// and prefixes the domain's command with ringside-confine, which enforces it with Landlock, puts
// a guest into its network namespace and drops every capability before exec
// (native/confine/confine.c). The read-only set every domain needs to run at all (node, its
// libraries, our bundles and addon) is hv's.
import { spawnSync } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import type { ConfineSpec } from '../../src/hypercall/protocol.js';
import { nativeBuildDir } from '../../src/native/index.js';
import { ArgError, obj } from './validate.js';

const MAX_PATHS = 64;
const MAX_PATH = 4096;
/** `ip netns` keeps named namespaces here; a name is all the toolstack gives */
export const NETNS_DIR = '/run/netns';
// as ip(8) and the config accept them: nothing that walks out of NETNS_DIR
const NETNS_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/;

function plainPath(p: unknown, field: string): string {
  if (typeof p !== 'string' || p.length === 0 || p.length > MAX_PATH || p.includes('\0'))
    throw new ArgError(`${field} must be a path of 1..${MAX_PATH} characters without NUL`);
  // Only plain absolute paths: no "..", "." or doubled slashes to reason about.
  if (!p.startsWith('/') || normalize(p) !== p || p === '/')
    throw new ArgError(`${field} ${JSON.stringify(p.slice(0, 80))} must be a normalised absolute path below /`);
  return p;
}

export function parseConfine(v: unknown): ConfineSpec {
  const o = obj(v, 'confine');
  const paths = (key: 'ro' | 'rw' | 'rwTrees'): string[] => {
    const a = o[key];
    if (!Array.isArray(a)) throw new ArgError(`confine.${key} must be an array of absolute paths`);
    if (a.length > MAX_PATHS) throw new ArgError(`confine.${key} holds ${a.length} paths, at most ${MAX_PATHS}`);
    return a.map((p, i) => plainPath(p, `confine.${key}[${i}]`));
  };
  const netAdmin = o.netAdmin;
  if (typeof netAdmin !== 'boolean') throw new ArgError('confine.netAdmin must be true or false');
  const spec: ConfineSpec = { ro: paths('ro'), rw: paths('rw'), netAdmin };
  if (o.sockDir !== undefined) spec.sockDir = plainPath(o.sockDir, 'confine.sockDir');
  if (o.rwTrees !== undefined) spec.rwTrees = paths('rwTrees');
  if (o.netns !== undefined) {
    const ns = o.netns;
    if (typeof ns !== 'string' || !NETNS_RE.test(ns) || ns === '.' || ns === '..')
      throw new ArgError(`confine.netns ${JSON.stringify(typeof ns === 'string' ? ns.slice(0, 40) : typeof ns)} must be a namespace name under ${NETNS_DIR}: 1-15 characters from A-Z a-z 0-9 _ . -`);
    spec.netns = ns;
  }
  return spec;
}

/** The launcher, or null when the addon was built without it (an old build tree). */
export function confineLauncher(): string | null {
  const p = `${nativeBuildDir()}/ringside-confine`;
  return existsSync(p) ? p : null;
}

let abi: number | null = null;

/** The kernel's Landlock ABI as the launcher sees it (0: none), asked once. */
export function landlockAbi(launcher: string): number {
  if (abi === null) {
    const r = spawnSync(launcher, ['--abi'], { encoding: 'utf8', timeout: 5000 });
    const n = Number(r.stdout?.trim());
    abi = r.status === 0 && Number.isInteger(n) && n >= 0 ? n : 0;
  }
  return abi;
}

/** What the confinement enforces on this kernel, for hv's log. */
export function confineStrength(launcher: string): string {
  const v = landlockAbi(launcher);
  if (v === 0) return 'no Landlock on this kernel: files are NOT confined (capabilities and seccomp still apply)';
  return `Landlock ABI ${v}${v < 3 ? ' (truncate not governed)' : ''}${v < 4 ? ' (TCP not governed)' : ''}${v < 6 ? ' (signals by seccomp only)' : ''}`;
}

/** ringside-confine's arguments up to and including `--`, for a domain run from `bundleDirs`. */
export function confineArgs(spec: ConfineSpec, bundleDirs: readonly string[]): string[] {
  const node = realpathSync(process.execPath);
  const base: [string, string][] = [
    ['--rx', dirname(dirname(node))],
    ['--rx', '/usr'],
    ['--rx', '/lib'],
    ['--rx', '/lib64'],
    ['--ro', '/etc/ld.so.cache'],
    ['--ro', '/etc/ssl'],
    ['--ro', '/proc'],
    ['--ro', '/sys'],
    ['--rw', '/dev/null'],
    ['--ro', '/dev/urandom'],
    ['--ro', nativeBuildDir()],
    // the bundles import msgpackr from the package, and node reads package.json for their type
    ['--ro', join(nativeBuildDir(), '..', '..', '..', 'node_modules')],
    ['--ro', join(nativeBuildDir(), '..', '..', '..', 'package.json')],
    ...bundleDirs.map((d): [string, string] => ['--ro', d]),
    // the toolstack's paths: single files or devices, symlinks refused by the launcher
    ...spec.ro.map((p): [string, string] => ['--ro-file', p]),
    ...spec.rw.map((p): [string, string] => ['--rw-file', p]),
    ...(spec.rwTrees ?? []).map((p): [string, string] => ['--rw-tree', p]),
  ];
  // the directory itself: only sockets may be made and names removed there
  if (spec.sockDir !== undefined) base.push(['--sock-dir', spec.sockDir]);
  const args = base.flat();
  if (spec.netns !== undefined) args.push('--netns', `${NETNS_DIR}/${spec.netns}`);
  if (spec.netAdmin) args.push('--keep-cap', 'net_admin');
  args.push('--');
  return args;
}
