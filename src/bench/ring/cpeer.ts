// Building the C peer (src/bench/ring/blkif_peer.c) with gcc against the system's Xen headers, at test
// and bench time. The peer must use Debian libxen-dev's own ring.h and blkif.h, never a copy: the
// point of it is to check our bytes and index discipline against Xen's.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const CPEER_SOURCE_REL = join('src', 'bench', 'ring', 'blkif_peer.c');
export const CPEER_CFLAGS: readonly string[] = ['-O2', '-std=gnu11', '-Wall', '-Wextra', '-Werror'];
/** the headers the peer must be compiled against */
export const XEN_RING_HEADERS: readonly string[] = ['xen/io/ring.h', 'xen/io/blkif.h'];

export class CPeerBuildError extends Error {
  constructor(
    message: string,
    readonly stderr: string,
  ) {
    super(message);
    this.name = 'CPeerBuildError';
  }
}

/** Walk up from this module to find a file of the source tree (works from src/ and from dist/ bundles). */
export function findRepoFile(rel: string, from: string = dirname(fileURLToPath(import.meta.url))): string | null {
  let dir = from;
  for (;;) {
    const candidate = join(dir, rel);
    if (existsSync(candidate)) return candidate;
    const up = dirname(dir);
    if (up === dir) return null;
    dir = up;
  }
}

export function cPeerSourcePath(): string {
  const p = findRepoFile(CPEER_SOURCE_REL);
  if (p === null) throw new CPeerBuildError(`C peer source ${CPEER_SOURCE_REL} not found above ${dirname(fileURLToPath(import.meta.url))}`, '');
  return p;
}

export interface CompileResult {
  ok: boolean;
  binary: string;
  stderr: string;
}

export function compileC(source: string, binary: string, extraFlags: readonly string[] = [], cc = 'gcc'): CompileResult {
  const r = spawnSync(cc, [...CPEER_CFLAGS, ...extraFlags, '-o', binary, source], { encoding: 'utf8' });
  if (r.error) return { ok: false, binary, stderr: `${cc}: ${r.error.message}` };
  return { ok: r.status === 0, binary, stderr: r.stderr ?? '' };
}

export interface BuildCPeerOptions {
  /** where to put the binary (default: node_modules/.cache/ringside beside the source tree, reused by every run) */
  outDir?: string;
  extraFlags?: readonly string[];
  cc?: string;
  source?: string;
}

/** Compile the C peer; throws CPeerBuildError saying what to install when the Xen headers are missing. */
export function buildCPeer(opts: BuildCPeerOptions = {}): string {
  const source = opts.source ?? cPeerSourcePath();
  const outDir = opts.outDir ?? join(dirname(dirname(dirname(dirname(source)))), 'node_modules', '.cache', 'ringside');
  mkdirSync(outDir, { recursive: true });
  // Built under a name of our own and renamed into place, so parallel test workers never run a
  // half-written binary.
  const binary = join(outDir, 'blkif_peer');
  const tmp = `${binary}.${process.pid}.tmp`;
  const r = compileC(source, tmp, opts.extraFlags ?? [], opts.cc);
  if (r.ok) renameSync(tmp, binary);
  else rmSync(tmp, { force: true });
  if (!r.ok) {
    const missing = /xen\/io\/(ring|blkif)\.h/.test(r.stderr) && /No such file|not found|#error/i.test(r.stderr);
    const hint = missing
      ? "Xen's public headers are missing: install Debian's libxen-dev (apt-get install libxen-dev)"
      : `gcc failed to build ${source}`;
    throw new CPeerBuildError(`${hint}\n${r.stderr.trim()}`, r.stderr);
  }
  return binary;
}

/** The headers a compile of `source` actually reads (gcc -M), to prove they are the system's. */
export function cHeaderDeps(source: string = cPeerSourcePath(), extraFlags: readonly string[] = [], cc = 'gcc'): string[] {
  const r = spawnSync(cc, [...extraFlags, '-M', source], { encoding: 'utf8' });
  if (r.status !== 0) throw new CPeerBuildError(`${cc} -M failed`, r.stderr ?? '');
  return r.stdout
    .replace(/\\\n/g, ' ')
    .split(/\s+/)
    .filter((t) => t.endsWith('.h'));
}
