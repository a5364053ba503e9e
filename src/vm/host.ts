// The host tools the image build runs, and what their answers mean. Every failure names the tool and
// the Debian package that provides it, so a fresh machine is one apt-get away from a working build.
import { runTool, type ToolRun } from '../tools/run.js';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

/** An error meant for whoever runs the build: says what was wrong and what to do. */
export class VmImageError extends Error {}

/** The Debian package that ships each host tool the build needs. */
export const TOOL_PACKAGES = {
  busybox: 'busybox-static',
  fio: 'fio',
  iperf3: 'iperf3',
  dpkg: 'dpkg',
  'dpkg-query': 'dpkg',
  'apt-get': 'apt',
  'apt-cache': 'apt',
  ldd: 'libc-bin',
} as const;
export type HostTool = keyof typeof TOOL_PACKAGES;

export function missingToolMessage(tool: HostTool): string {
  return `'${tool}' is not installed (not found on PATH); install it with: apt-get install -y ${TOOL_PACKAGES[tool]}`;
}

/** The absolute path of a tool on PATH, or a VmImageError naming its package. */
export function findTool(tool: HostTool, path = process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'): string {
  for (const dir of path.split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, tool);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      /* not in this directory */
    }
  }
  throw new VmImageError(missingToolMessage(tool));
}

/** Runs a program to completion and gives its output whatever its exit status (a failure to start throws). */
export async function run(file: string, args: readonly string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<ToolRun> {
  const r = await runTool(file, args, { ...opts, timeoutMs: 0 });
  if (r.spawnError !== null) throw new VmImageError(`could not run ${file}: ${r.spawnError}`);
  return r;
}

/**
 * The files `ldd` says a program loads: every resolved library and the dynamic loader, in the order
 * listed (the vDSO has no file and is left out). A library ldd could not find is an error.
 * `undefined` means the program is static.
 */
export function parseLdd(output: string, program: string): string[] | undefined {
  if (/not a dynamic executable|statically linked/.test(output)) return undefined;
  const files: string[] = [];
  for (const raw of output.split('\n')) {
    const line = raw.trim();
    if (!line || line.endsWith(':')) continue;
    const missing = /^(\S+) => not found$/.exec(line);
    if (missing) throw new VmImageError(`${program} needs ${missing[1]}, which ldd cannot find on this host; reinstall the package that ships ${program}`);
    const resolved = /^\S+ => (\/\S+) \(0x[0-9a-f]+\)$/.exec(line);
    const direct = /^(\/\S+) \(0x[0-9a-f]+\)$/.exec(line);
    const file = resolved?.[1] ?? direct?.[1];
    if (file && !files.includes(file)) files.push(file);
  }
  if (files.length === 0) throw new VmImageError(`could not read ldd's answer for ${program}: ${JSON.stringify(output.slice(0, 200))}`);
  return files;
}

/** The package a metapackage points at: `apt-cache depends` lists `Depends: <name>` lines. */
export function parseAptDepends(output: string, prefix: string): string | undefined {
  const names = [...output.matchAll(/^\s*Depends:\s*(\S+)\s*$/gm)].map((m) => m[1]).filter((n) => n.startsWith(prefix));
  return names.sort(compareVersionedNames).at(-1);
}

/** Orders linux-image-6.1.0-9-... before linux-image-6.1.0-57-...: digit runs compare as numbers. */
export function compareVersionedNames(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

/** `Version:` of the first stanza `apt-cache show --no-all-versions` prints. */
export function parseAptVersion(output: string): string | undefined {
  return /^Version:\s*(\S+)\s*$/m.exec(output)?.[1];
}

/** What to tell the user when apt-get download fails: most often the mirror is out of reach. */
export function downloadFailedMessage(pkg: string, aptStderr: string): string {
  const said = aptStderr
    .split('\n')
    .filter((l) => l.startsWith('E:') || l.startsWith('Err:'))
    .join('; ');
  return (
    `could not download ${pkg} from the Debian mirror (apt-get download: ${said || aptStderr.trim() || 'failed'}). ` +
    'Check that this machine reaches the mirror in /etc/apt/sources.list(.d) (proxy settings included), then run apt-get update and try again'
  );
}
