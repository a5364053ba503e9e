// `ringside vm-image`: a small Linux guest built from Debian packages, for VMs that dom0 runs under
// QEMU and for the tests that boot them. The kernel is Debian's cloud kernel, fetched with apt-get
// download and unpacked with dpkg -x (never installed on the host); the initramfs is busybox-static,
// the virtio modules, the host's fio and iperf3 with their libraries, and the /init from ./init.ts.
// A cache key over every input makes a second build with the same inputs return at once.
import { createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import {
  closeSync,
  copyFileSync,
  createWriteStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
  chmodSync,
} from 'node:fs';
import { dirname, join, resolve, relative } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip, gunzipSync } from 'node:zlib';
import { VM_CMDLINE, VM_MODULES, renderInit } from './init.js';
import { loadOrder, moduleDepends, moduleName } from './kmod.js';
import {
  VmImageError,
  downloadFailedMessage,
  findTool,
  parseAptDepends,
  parseAptVersion,
  parseLdd,
  run,
  type HostTool,
} from './host.js';

export { VmImageError } from './host.js';

/** The metapackage that always depends on Debian's newest cloud kernel. */
export const KERNEL_METAPACKAGE = 'linux-image-cloud-amd64';
/** Bumped whenever the layout of the image changes in a way the inputs below do not show. */
const IMAGE_FORMAT = 1;
const MANIFEST = 'image.json';

export interface VmImage {
  /** The directory holding the files. */
  dir: string;
  kernel: string;
  initrd: string;
  cmdline: string;
  key: string;
  kernelPackage: string;
  kernelVersion: string;
  /** The kernel release the modules belong to (uname -r inside the guest). */
  kernelRelease: string;
  modules: string[];
  /** Host programs copied into the initramfs, with the Debian package version each came from. */
  programs: { path: string; package: string; version: string }[];
  initrdBytes: number;
  /** Which apt package lists the kernel was chosen from (a cache hit skips apt when they are unchanged). */
  aptFingerprint: string;
  /** True when the files were already there for this key. */
  cached: boolean;
  buildMs: number;
}

export interface BuildVmImageOptions {
  /** Where vmlinuz, initrd.gz and image.json go (created if missing). */
  outDir: string;
  progress?: (line: string) => void;
  /** Waits this long for another build of the same directory to finish (default 10 minutes). */
  lockTimeoutMs?: number;
}

/** Host programs the guest gets, and the package each comes from (for the cache key and for errors). */
const PROGRAMS: { tool: HostTool; package: string; guestPath: string }[] = [
  { tool: 'fio', package: 'fio', guestPath: '/usr/bin/fio' },
  { tool: 'iperf3', package: 'iperf3', guestPath: '/usr/bin/iperf3' },
];

interface Inputs {
  tools: Record<HostTool, string>;
  kernelPackage: string;
  kernelVersion: string;
  aptFingerprint: string;
  busyboxVersion: string;
  programs: { tool: HostTool; path: string; guestPath: string; package: string; version: string; libs: string[] }[];
  /** /init rendered with the modules as listed; the real one has them in the kernel's dependency order. */
  init: string;
}

/** The cache key: every input that changes what the build would produce. */
export function imageKey(i: {
  kernelPackage: string;
  kernelVersion: string;
  busyboxVersion: string;
  programs: { path: string; version: string; libs: { path: string; size: number; mtimeMs: number }[] }[];
  init: string;
  modules: readonly string[];
  cmdline: string;
}): string {
  const h = createHash('sha256');
  h.update(
    JSON.stringify({
      format: IMAGE_FORMAT,
      kernel: [i.kernelPackage, i.kernelVersion],
      busybox: i.busyboxVersion,
      programs: i.programs,
      init: createHash('sha256').update(i.init).digest('hex'),
      modules: i.modules,
      cmdline: i.cmdline,
    }),
  );
  return h.digest('hex').slice(0, 32);
}

export async function buildVmImage(opts: BuildVmImageOptions): Promise<VmImage> {
  const started = Date.now();
  const say = opts.progress ?? (() => undefined);
  const dir = resolve(opts.outDir);
  prepareOutDir(dir);
  const unlock = await lockDir(dir, opts.lockTimeoutMs ?? 600_000, say);
  try {
    const previous = readManifestFile(dir);
    const inputs = await gatherInputs(say, previous);
    const key = imageKey({
      kernelPackage: inputs.kernelPackage,
      kernelVersion: inputs.kernelVersion,
      busyboxVersion: inputs.busyboxVersion,
      programs: inputs.programs.map((p) => ({ path: p.path, version: p.version, libs: [p.path, ...p.libs].map(fileIdentity) })),
      init: inputs.init,
      modules: VM_MODULES,
      cmdline: VM_CMDLINE,
    });
    const cached = previous && manifestMatches(dir, previous, key) ? previous : undefined;
    if (cached) {
      say(`vm image up to date in ${dir} (key ${key})`);
      return { ...cached, dir, kernel: join(dir, 'vmlinuz'), initrd: join(dir, 'initrd.gz'), cached: true, buildMs: Date.now() - started };
    }
    for (const e of readdirSync(dir)) if (e.startsWith('.build-')) rmSync(join(dir, e), { recursive: true, force: true });
    const work = mkdtempSync(join(dir, '.build-'));
    try {
      const built = await buildInto(work, inputs, say);
      renameSync(built.kernel, join(dir, 'vmlinuz'));
      renameSync(built.initrd, join(dir, 'initrd.gz'));
      const image: VmImage = {
        dir,
        kernel: join(dir, 'vmlinuz'),
        initrd: join(dir, 'initrd.gz'),
        cmdline: VM_CMDLINE,
        key,
        kernelPackage: inputs.kernelPackage,
        kernelVersion: inputs.kernelVersion,
        kernelRelease: built.kernelRelease,
        modules: built.modules,
        programs: inputs.programs.map((p) => ({ path: p.path, package: p.package, version: p.version })),
        initrdBytes: statSync(join(dir, 'initrd.gz')).size,
        aptFingerprint: inputs.aptFingerprint,
        cached: false,
        buildMs: Date.now() - started,
      };
      // The manifest goes last: its presence says the two files beside it are complete.
      writeFileSync(join(dir, MANIFEST + '.tmp'), JSON.stringify({ ...image, kernelBytes: statSync(image.kernel).size }, null, 2) + '\n');
      renameSync(join(dir, MANIFEST + '.tmp'), join(dir, MANIFEST));
      say(`vm image built in ${dir} in ${(image.buildMs / 1000).toFixed(1)} s (initrd ${(image.initrdBytes / 1048576).toFixed(1)} MiB)`);
      return image;
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  } finally {
    unlock();
  }
}

function prepareOutDir(dir: string): void {
  try {
    makeDirs(dir);
    if (!statSync(dir).isDirectory()) throw new Error('not a directory');
  } catch (e) {
    throw new VmImageError(`cannot use '${dir}' as the image directory: ${(e as Error).message}; give --out a directory you can write`);
  }
}

/**
 * mkdir -p, one level at a time: Node's recursive mkdirSync spins forever when the kernel answers
 * ENOENT for a parent that exists (e.g. anything under /proc), so it cannot be given a user's path.
 */
function makeDirs(dir: string): void {
  const missing: string[] = [];
  for (let d = dir; !existsSync(d); d = dirname(d)) {
    if (dirname(d) === d) break;
    missing.unshift(d);
  }
  for (const d of missing) mkdirSync(d);
}

/** One build per directory at a time: a lock file with the builder's pid; a dead builder's lock is taken over. */
async function lockDir(dir: string, timeoutMs: number, say: (l: string) => void): Promise<() => void> {
  const lock = join(dir, '.lock');
  const deadline = Date.now() + timeoutMs;
  let told = false;
  for (;;) {
    try {
      const fd = openSync(lock, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return () => rmSync(lock, { force: true });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EEXIST') throw new VmImageError(`cannot write in the image directory '${dir}': ${(e as Error).message}`);
    }
    const holder = Number(readFileOr(lock, ''));
    if (!(holder > 0) || !alive(holder)) {
      rmSync(lock, { force: true });
      continue;
    }
    if (Date.now() > deadline) throw new VmImageError(`another build (pid ${holder}) has held ${lock} for too long; stop it or remove the lock`);
    if (!told) say(`waiting for another vm-image build (pid ${holder}) of ${dir}`);
    told = true;
    await new Promise((r) => setTimeout(r, 250));
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readFileOr(path: string, fallback: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return fallback;
  }
}

function fileIdentity(path: string): { path: string; size: number; mtimeMs: number } {
  const st = statSync(path);
  return { path, size: st.size, mtimeMs: Math.floor(st.mtimeMs) };
}

type Manifest = VmImage & { kernelBytes?: number };

function readManifestFile(dir: string): Manifest | undefined {
  try {
    return JSON.parse(readFileSync(join(dir, MANIFEST), 'utf8')) as Manifest;
  } catch {
    return undefined;
  }
}

function manifestMatches(dir: string, m: Manifest, key: string): boolean {
  if (m.key !== key) return false;
  try {
    return statSync(join(dir, 'vmlinuz')).size === m.kernelBytes && statSync(join(dir, 'initrd.gz')).size === m.initrdBytes;
  } catch {
    return false;
  }
}

/**
 * Names, sizes and mtimes of apt's configuration and package lists: while they are unchanged, apt
 * would choose the same kernel, so a cache hit need not ask it (apt-cache takes about a second).
 */
export function aptFingerprint(): string {
  const h = createHash('sha256');
  for (const d of ['/etc/apt', '/etc/apt/sources.list.d', '/etc/apt/preferences.d', '/var/lib/apt/lists']) {
    let names: string[];
    try {
      names = readdirSync(d).sort();
    } catch {
      continue;
    }
    for (const n of names) {
      try {
        const st = statSync(join(d, n));
        if (st.isFile()) h.update(`${d}/${n} ${st.size} ${Math.floor(st.mtimeMs)}\n`);
      } catch {
        /* vanished while listing */
      }
    }
  }
  return h.digest('hex').slice(0, 16);
}

async function gatherInputs(say: (l: string) => void, previous: Manifest | undefined): Promise<Inputs> {
  const names: HostTool[] = ['busybox', 'fio', 'iperf3', 'dpkg', 'dpkg-query', 'apt-get', 'apt-cache', 'ldd'];
  const tools = Object.fromEntries(names.map((t) => [t, findTool(t)])) as Record<HostTool, string>;

  const bb = await run(tools.ldd, [tools.busybox]);
  if (parseLdd(bb.stdout + bb.stderr, tools.busybox) !== undefined)
    throw new VmImageError(`${tools.busybox} is dynamically linked, and the initramfs needs a static busybox; install it with: apt-get install -y busybox-static`);

  const fingerprint = aptFingerprint();
  const kernel =
    previous?.aptFingerprint === fingerprint && previous.kernelPackage && previous.kernelVersion
      ? { kernelPackage: previous.kernelPackage, kernelVersion: previous.kernelVersion }
      : await resolveKernel(tools, say);
  const programs: Inputs['programs'] = [];
  for (const p of PROGRAMS) {
    const path = tools[p.tool];
    const l = await run(tools.ldd, [path]);
    const libs = parseLdd(l.stdout + l.stderr, path) ?? [];
    programs.push({ tool: p.tool, path, guestPath: p.guestPath, package: p.package, version: await packageVersion(tools['dpkg-query'], p.package), libs });
  }
  return {
    tools,
    ...kernel,
    aptFingerprint: fingerprint,
    busyboxVersion: await packageVersion(tools['dpkg-query'], 'busybox-static'),
    programs,
    init: renderInit(VM_MODULES),
  };
}

/** The newest cloud kernel apt offers: the metapackage's dependency, and its candidate version. */
async function resolveKernel(tools: Record<HostTool, string>, say: (l: string) => void): Promise<{ kernelPackage: string; kernelVersion: string }> {
  say(`resolving ${KERNEL_METAPACKAGE}`);
  const deps = await run(tools['apt-cache'], ['depends', KERNEL_METAPACKAGE]);
  const kernelPackage = deps.code === 0 ? parseAptDepends(deps.stdout, 'linux-image-') : undefined;
  if (!kernelPackage)
    throw new VmImageError(
      `apt does not know ${KERNEL_METAPACKAGE} (apt-cache depends: ${(deps.stderr || deps.stdout).trim() || 'no Depends line'}); run apt-get update, with Debian's main component in /etc/apt/sources.list(.d)`,
    );
  const show = await run(tools['apt-cache'], ['show', '--no-all-versions', kernelPackage]);
  const kernelVersion = parseAptVersion(show.stdout);
  if (show.code !== 0 || !kernelVersion) throw new VmImageError(`apt knows no version of ${kernelPackage}; run apt-get update`);
  return { kernelPackage, kernelVersion };
}

async function packageVersion(dpkgQuery: string, pkg: string): Promise<string> {
  const r = await run(dpkgQuery, ['-W', '-f=${Version}', pkg]);
  // A tool installed some other way still builds; its file identity in the key catches changes.
  return r.code === 0 && r.stdout.trim() ? r.stdout.trim() : 'not-from-dpkg';
}

async function buildInto(work: string, inputs: Inputs, say: (l: string) => void): Promise<{ kernel: string; initrd: string; kernelRelease: string; modules: string[] }> {
  const debDir = join(work, 'deb');
  const unpacked = join(work, 'kernel');
  const root = join(work, 'root');
  mkdirSync(debDir);
  // apt-get download drops privileges to _apt when it can; a directory it may write avoids its warning.
  chmodSync(work, 0o755);
  chmodSync(debDir, 0o777);

  say(`downloading ${inputs.kernelPackage} ${inputs.kernelVersion}`);
  const dl = await run(inputs.tools['apt-get'], ['download', '-q', `${inputs.kernelPackage}=${inputs.kernelVersion}`], { cwd: debDir });
  const deb = readdirSync(debDir).find((f) => f.endsWith('.deb'));
  if (dl.code !== 0 || !deb) throw new VmImageError(downloadFailedMessage(inputs.kernelPackage, dl.stderr));

  say(`unpacking ${deb}`);
  const x = await run(inputs.tools.dpkg, ['-x', join(debDir, deb), unpacked]);
  if (x.code !== 0) throw new VmImageError(`dpkg -x ${deb} failed: ${x.stderr.trim()}`);
  const vmlinuz = readdirSync(join(unpacked, 'boot')).find((f) => f.startsWith('vmlinuz-'));
  if (!vmlinuz) throw new VmImageError(`${deb} holds no boot/vmlinuz-*`);
  const kernelRelease = vmlinuz.slice('vmlinuz-'.length);
  const modRoot = join(unpacked, 'lib', 'modules', kernelRelease);
  if (!existsSync(modRoot)) throw new VmImageError(`${deb} holds no lib/modules/${kernelRelease}`);

  // Modules: found by name anywhere under kernel/, decompressed (busybox insmod takes plain .ko only).
  const found = new Map<string, string>();
  for (const f of walkFiles(join(modRoot, 'kernel'))) found.set(moduleName(f), f);
  // Read the wanted modules and, transitively, what they depend on; then order them.
  const koBytes = new Map<string, Buffer>();
  const depends = new Map<string, string[]>();
  const pending: string[] = [...VM_MODULES];
  for (let m = pending.shift(); m !== undefined; m = pending.shift()) {
    const file = found.get(m);
    if (depends.has(m) || !file) continue;
    const bytes = await decompressModule(file);
    let deps: string[];
    try {
      deps = moduleDepends(bytes);
    } catch (e) {
      throw new VmImageError(`${relative(unpacked, file)}: ${(e as Error).message}`);
    }
    koBytes.set(m, bytes);
    depends.set(m, deps);
    pending.push(...deps);
  }
  let modules: string[];
  try {
    modules = loadOrder(VM_MODULES, (m) => depends.get(m));
  } catch (e) {
    throw new VmImageError(`the virtio modules of ${kernelRelease} cannot be loaded: ${(e as Error).message}`);
  }
  say(`modules in load order: ${modules.join(' ')}`);
  mkdirSync(root);
  for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'lib/modules', 'etc', 'proc', 'sys', 'dev', 'tmp', 'root', 'run'])
    mkdirSync(join(root, d), { recursive: true });
  copyFileSync(inputs.tools.busybox, join(root, 'bin', 'busybox'));
  chmodSync(join(root, 'bin', 'busybox'), 0o755);
  for (const [m, bytes] of koBytes) writeFileSync(join(root, 'lib', 'modules', `${m}.ko`), bytes);
  let libCount = 0;
  for (const p of inputs.programs) {
    place(root, p.path, p.guestPath, 0o755);
    // Each library goes where ldd found it, so the loader's default paths and RUNPATHs find it again.
    for (const lib of p.libs) if (place(root, lib, lib, 0o755)) libCount++;
  }
  writeFileSync(join(root, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  writeFileSync(join(root, 'etc', 'group'), 'root:x:0:\n');
  writeFileSync(join(root, 'etc', 'hosts'), '127.0.0.1 localhost\n::1 localhost\n');
  writeFileSync(join(root, 'init'), renderInit(modules), { mode: 0o755 });

  const files = listTree(root);
  say(`packing initramfs: ${files.length} entries, ${modules.length} modules, fio and iperf3 with ${libCount} libraries`);
  const initrd = join(work, 'initrd.gz');
  await packCpio(inputs.tools.busybox, root, files, initrd);
  return { kernel: copyOut(join(unpacked, 'boot', vmlinuz), join(work, 'vmlinuz')), initrd, kernelRelease, modules };
}

function copyOut(from: string, to: string): string {
  copyFileSync(from, to);
  return to;
}

/** Copies a host file (symlinks followed) to the same-named path in the tree; false if already there. */
function place(root: string, hostPath: string, guestPath: string, mode: number): boolean {
  const dest = join(root, guestPath);
  if (existsSync(dest)) return false;
  mkdirSync(dirname(dest), { recursive: true });
  copyFileSync(hostPath, dest);
  chmodSync(dest, mode);
  return true;
}

function* walkFiles(dir: string): Generator<string> {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) yield* walkFiles(p);
    else if (/\.ko(\.(xz|zst|gz))?$/.test(e.name)) yield p;
  }
}

/** Every entry of the tree, relative, each directory before what it holds (cpio's order). */
function listTree(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = join(dir, e.name);
      out.push(relative(root, p));
      if (e.isDirectory()) walk(p);
    }
  };
  walk(root);
  return out;
}

async function decompressModule(file: string): Promise<Buffer> {
  if (file.endsWith('.ko')) return readFileSync(file);
  if (file.endsWith('.gz')) return gunzipSync(readFileSync(file));
  const tool = file.endsWith('.xz') ? 'xz' : 'zstd';
  const r = await new Promise<Buffer>((res, rej) => {
    const p = spawn(tool, ['-dc', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    let err = '';
    p.stdout.on('data', (c: Buffer) => chunks.push(c));
    p.stderr.on('data', (c: Buffer) => (err += c.toString()));
    p.on('error', () => rej(new VmImageError(`${file} is compressed and '${tool}' is not installed; install it with: apt-get install -y ${tool === 'xz' ? 'xz-utils' : 'zstd'}`)));
    p.on('close', (code) => (code === 0 ? res(Buffer.concat(chunks)) : rej(new VmImageError(`${tool} -dc ${file} failed: ${err.trim()}`))));
  });
  return r;
}

/** `busybox cpio -o -H newc` over the file list, gzipped on the way to `out`. */
async function packCpio(busybox: string, root: string, files: string[], out: string): Promise<void> {
  const p = spawn(busybox, ['cpio', '-o', '-H', 'newc'], { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] });
  let err = '';
  p.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const exited = once(p, 'close') as Promise<[number | null]>;
  p.stdin.on('error', () => undefined); // an early exit is reported through its status below
  p.stdin.end(files.join('\n') + '\n');
  await pipeline(p.stdout, createGzip({ level: 6 }), createWriteStream(out));
  const [code] = await exited;
  // busybox cpio prints the block count on stderr even when it succeeds.
  if (code !== 0) throw new VmImageError(`busybox cpio failed (status ${code}): ${err.trim()}`);
}
