// Test harness for real Linux VMs: the guest image (built once per machine), the guest's serial
// console as a command runner, a tiny QMP client, and QEMU itself (TCG: nested KVM hangs on the CI
// machine kind) with built-in or vhost-user disks. Everything started here is killed and removed by
// close()/kill(), and by a last-resort exit hook if a test forgets.
import { spawn, type ChildProcess } from 'node:child_process';
import { createConnection, type Socket } from 'node:net';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { buildVmImage, type VmImage } from '../../src/vm/image.js';
import { VM_READY_LINE } from '../../src/vm/init.js';
import { qemuArgv, type VmDisk } from '../../src/vm/qemu.js';

/** TCG boots in 3-5 s here, but a loaded CI machine can take many times that. */
export const VM_BOOT_TIMEOUT_MS = 120_000;

/** Shared by every test file and worktree on the machine, so the image is built once. */
export const VM_IMAGE_CACHE = join(tmpdir(), 'ringside-vm-image');

let image: Promise<VmImage> | undefined;

/** The guest kernel and initramfs, built into VM_IMAGE_CACHE on first use (later calls reuse it). */
export function ensureVmImage(): Promise<VmImage> {
  image ??= buildVmImage({ outDir: VM_IMAGE_CACHE, progress: (l) => process.stderr.write(`vm-image: ${l}\n`) });
  return image;
}

const tail = (s: string, n = 1500) => (s.length > n ? '…' + s.slice(-n) : s);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Connects to a Unix socket that may not exist yet; gives up at the deadline or when `abandon` says so. */
async function connectUnix(path: string, timeoutMs: number, what: string, abandon: () => string | undefined = () => undefined): Promise<Socket> {
  const deadline = Date.now() + timeoutMs;
  let last = 'socket not created';
  for (;;) {
    const why = abandon();
    if (why) throw new Error(`${what}: gave up connecting to ${path}: ${why}`);
    if (existsSync(path)) {
      try {
        return await new Promise<Socket>((resolve, reject) => {
          const s = createConnection(path);
          s.once('connect', () => {
            s.removeListener('error', reject);
            resolve(s);
          });
          s.once('error', reject);
        });
      } catch (e) {
        last = (e as Error).message;
      }
    }
    if (Date.now() > deadline) throw new Error(`${what}: could not connect to ${path} within ${timeoutMs} ms (${last})`);
    await sleep(20);
  }
}

interface Waiter {
  test: () => boolean;
  fail: (e: Error) => void;
}

/**
 * The guest's serial console (a QEMU `-chardev socket,server=on` in stream mode). Keeps everything
 * the guest printed; `run` sends one shell command wrapped between two marker lines that only the
 * guest's printf can produce (the echoed input never contains them), and reads the exit status from
 * the second.
 */
export class VmConsole {
  /** Everything the guest printed since we connected, with CRs removed. */
  output = '';
  private waiters = new Set<Waiter>();
  private closedWhy: string | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private seq = 0;
  private readonly nonce = randomBytes(3).toString('hex');

  private constructor(
    private readonly sock: Socket,
    readonly path: string,
  ) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      this.output += d.replace(/\r/g, '');
      for (const w of [...this.waiters]) if (w.test()) this.waiters.delete(w);
    });
    sock.on('error', (e) => this.closed(`console socket error: ${e.message}`));
    sock.on('close', () => this.closed('the console socket closed (QEMU exited?)'));
  }

  static async connect(path: string, opts: { timeoutMs?: number; abandon?: () => string | undefined } = {}): Promise<VmConsole> {
    return new VmConsole(await connectUnix(path, opts.timeoutMs ?? VM_BOOT_TIMEOUT_MS, 'VM console', opts.abandon), path);
  }

  private closed(why: string): void {
    if (this.closedWhy) return;
    this.closedWhy = why;
    for (const w of this.waiters) w.fail(new Error(why));
    this.waiters.clear();
  }

  /** Waits until `test` holds on the output; the error names `what` and shows the last output seen. */
  waitFor<T>(what: string, test: (output: string) => T | undefined, timeoutMs: number): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const w: Waiter = {
        test: () => {
          const r = test(this.output);
          if (r === undefined) return false;
          clearTimeout(timer);
          resolve(r);
          return true;
        },
        fail: (e) => {
          clearTimeout(timer);
          reject(new Error(`VM console: ${e.message} while waiting for ${what}; last output:\n${tail(this.output)}`));
        },
      };
      if (w.test()) return;
      if (this.closedWhy) return w.fail(new Error(this.closedWhy));
      timer = setTimeout(() => {
        this.waiters.delete(w);
        reject(new Error(`VM console: no ${what} within ${timeoutMs} ms; last output:\n${tail(this.output)}`));
      }, timeoutMs);
      this.waiters.add(w);
    });
  }

  /**
   * Waits for the guest's ready line. Output the guest printed before we connected is lost (QEMU
   * drops it when no client is attached), so a probe command answered by the shell also counts.
   */
  async waitReady(opts: { timeoutMs?: number } = {}): Promise<void> {
    const timeoutMs = opts.timeoutMs ?? VM_BOOT_TIMEOUT_MS;
    const probe = `RSREADY-${this.nonce}`;
    const probeTimer = setInterval(() => this.send(`printf '%s-%s\\n' RSREADY ${this.nonce}`), 10_000);
    try {
      await this.waitFor(`'${VM_READY_LINE}'`, (o) => (o.includes(VM_READY_LINE) || o.includes(`\n${probe}\n`) ? true : undefined), timeoutMs);
    } finally {
      clearInterval(probeTimer);
    }
  }

  /** Writes one line to the guest's shell as is. */
  send(line: string): void {
    if (!this.closedWhy) this.sock.write(line + '\n');
  }

  /** Runs a shell command in the guest; resolves with its exit status and what it printed. */
  run(cmd: string, opts: { timeoutMs?: number } = {}): Promise<{ code: number; output: string }> {
    const next = this.queue.then(() => this.runNow(cmd, opts.timeoutMs ?? 60_000));
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async runNow(cmd: string, timeoutMs: number): Promise<{ code: number; output: string }> {
    const id = `${this.nonce}-${++this.seq}`;
    const from = this.output.length;
    const quoted = `'${cmd.replace(/'/g, `'\\''`)}'`;
    this.send(`printf '%s-%s\\n' RSB ${id}; eval ${quoted}; printf '%s-%s %d\\n' RSE ${id} $?`);
    const begin = `\nRSB-${id}\n`;
    // not anchored to a line start: a command's output need not end in a newline (sysfs serial)
    const end = new RegExp(`RSE-${id} (\\d+)\\n`);
    try {
      return await this.waitFor(
        `the end marker of '${cmd}'`,
        (o) => {
          const seen = o.slice(from);
          const b = seen.indexOf(begin);
          if (b < 0) return undefined;
          const body = seen.slice(b + begin.length - 1);
          const m = end.exec(body);
          if (!m) return undefined;
          return { code: Number(m[1]), output: body.slice(1, m.index) };
        },
        timeoutMs,
      );
    } catch (e) {
      throw new Error(`VM command '${cmd}' failed: ${(e as Error).message}`);
    }
  }

  close(): void {
    this.closed('the console was closed by the test');
    this.sock.destroy();
  }
}

/** A QMP connection: capabilities negotiated, then one command at a time by id. */
export class Qmp {
  readonly events: { event: string; data?: unknown }[] = [];
  private buf = '';
  private pending = new Map<string, { resolve: (v: unknown) => void; reject: (e: Error) => void; cmd: string }>();
  private greeting: ((v: unknown) => void) | undefined;
  private seq = 0;
  private closedWhy: string | undefined;

  private constructor(private readonly sock: Socket) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      this.buf += d;
      for (let nl = this.buf.indexOf('\n'); nl >= 0; nl = this.buf.indexOf('\n')) {
        const line = this.buf.slice(0, nl).trim();
        this.buf = this.buf.slice(nl + 1);
        if (line) this.message(line);
      }
    });
    sock.on('error', (e) => this.closed(`QMP socket error: ${e.message}`));
    sock.on('close', () => this.closed('the QMP socket closed (QEMU exited?)'));
  }

  static async connect(path: string, opts: { timeoutMs?: number; abandon?: () => string | undefined } = {}): Promise<Qmp> {
    const timeoutMs = opts.timeoutMs ?? VM_BOOT_TIMEOUT_MS;
    const q = new Qmp(await connectUnix(path, timeoutMs, 'QMP', opts.abandon));
    await new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`QMP: no greeting from ${path} within ${timeoutMs} ms`)), timeoutMs);
      q.greeting = (v) => {
        clearTimeout(t);
        resolve(v);
      };
    });
    await q.execute('qmp_capabilities');
    return q;
  }

  private message(line: string): void {
    let m: { QMP?: unknown; id?: string; return?: unknown; error?: { class: string; desc: string }; event?: string; data?: unknown };
    try {
      m = JSON.parse(line) as typeof m;
    } catch {
      return this.closed(`QMP sent a line that is not JSON: ${line.slice(0, 200)}`);
    }
    if (m.QMP !== undefined) return this.greeting?.(m.QMP);
    if (m.event) {
      this.events.push({ event: m.event, data: m.data });
      return;
    }
    const p = m.id === undefined ? undefined : this.pending.get(m.id);
    if (!p || m.id === undefined) return;
    this.pending.delete(m.id);
    if (m.error) p.reject(new Error(`QMP ${p.cmd}: ${m.error.class}: ${m.error.desc}`));
    else p.resolve(m.return);
  }

  private closed(why: string): void {
    if (this.closedWhy) return;
    this.closedWhy = why;
    for (const p of this.pending.values()) p.reject(new Error(`QMP ${p.cmd}: ${why}`));
    this.pending.clear();
    this.sock.destroy();
  }

  execute<T = unknown>(cmd: string, args?: Record<string, unknown>, timeoutMs = 30_000): Promise<T> {
    if (this.closedWhy) return Promise.reject(new Error(`QMP ${cmd}: ${this.closedWhy}`));
    const id = `t${++this.seq}`;
    return new Promise<T>((resolve, reject) => {
      const t = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`QMP ${cmd}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        cmd,
        resolve: (v) => {
          clearTimeout(t);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(t);
          reject(e);
        },
      });
      this.sock.write(JSON.stringify({ execute: cmd, ...(args ? { arguments: args } : {}), id }) + '\n');
    });
  }

  close(): void {
    this.closed('closed by the test');
  }
}

export type QemuDisk = VmDisk;

export interface BootQemuOptions {
  image?: { kernel: string; initrd: string; cmdline: string };
  memoryMiB?: number;
  vcpus?: number;
  disks?: QemuDisk[];
  /** Guest RAM as a shared memfd (always on when a vhost-user disk is given). */
  sharedMemory?: boolean;
  extraArgs?: string[];
  /** Wait for the guest's ready line before returning (default true). */
  waitReady?: boolean;
  bootTimeoutMs?: number;
}

/** Every QEMU and storage daemon still running: killed when the test process exits, whatever happened. */
const running = new Set<{ killNow(): void }>();
process.once('exit', () => {
  for (const vm of running) vm.killNow();
});

export class QemuVm {
  /** QEMU's stderr (the last 16 KiB). */
  stderr = '';
  exitStatus: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  console!: VmConsole;
  qmp!: Qmp;
  /** Milliseconds from spawning QEMU to the guest's ready line (when bootQemu waited for it). */
  bootMs = 0;

  constructor(
    readonly proc: ChildProcess,
    readonly dir: string,
    readonly args: string[],
  ) {
    proc.stderr?.setEncoding('utf8');
    proc.stderr?.on('data', (d: string) => (this.stderr = (this.stderr + d).slice(-16384)));
    proc.stdout?.resume();
    proc.on('error', (e) => (this.stderr += `\nspawn error: ${e.message}`));
    this.exited = new Promise((resolve) =>
      proc.once('exit', (code, signal) => {
        this.exitStatus = { code, signal };
        resolve(this.exitStatus);
      }),
    );
    running.add(this);
  }

  get consolePath(): string {
    return join(this.dir, 'console.sock');
  }
  get qmpPath(): string {
    return join(this.dir, 'qmp.sock');
  }

  /** Why waiting on this QEMU is pointless (it exited), or undefined while it runs. */
  deadReason(): string | undefined {
    if (!this.exitStatus) return undefined;
    return `QEMU exited (code ${this.exitStatus.code}, signal ${this.exitStatus.signal}); its stderr:\n${tail(this.stderr)}`;
  }

  /** Waits for QEMU to exit by itself (the guest powered off); the error says what it was doing. */
  async waitExit(timeoutMs = 60_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    let t: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      t = setTimeout(() => reject(new Error(`QEMU (pid ${this.proc.pid}) did not exit within ${timeoutMs} ms; last console output:\n${tail(this.console?.output ?? '')}`)), timeoutMs);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(t);
    }
  }

  /** Powers the guest off from inside (sync first) and waits for QEMU to exit. */
  async poweroff(timeoutMs = 60_000): Promise<void> {
    this.console.send('sync; poweroff -f');
    await this.waitExit(timeoutMs);
  }

  /** SIGKILL to QEMU's process group, synchronously (for the exit hook). */
  killNow(): void {
    if (this.exitStatus === undefined && this.proc.pid !== undefined) {
      try {
        process.kill(-this.proc.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  }

  /** Kills QEMU, waits for it to be gone, and removes its sockets. Safe to call more than once. */
  async kill(): Promise<void> {
    this.killNow();
    if (this.proc.pid !== undefined) await this.exited;
    this.console?.close();
    this.qmp?.close();
    rmSync(this.dir, { recursive: true, force: true });
    running.delete(this);
  }

  /** Asks QEMU to quit over QMP, then kills it anyway if it is still there. */
  async close(): Promise<void> {
    if (!this.exitStatus && this.qmp) {
      await this.qmp.execute('quit', undefined, 5_000).catch(() => undefined);
      await Promise.race([this.exited, sleep(5_000)]);
    }
    await this.kill();
  }
}

/** Starts a VM under TCG; by default returns once its shell is ready. Cleans up if anything fails. */
export async function bootQemu(opts: BootQemuOptions = {}): Promise<QemuVm> {
  const image = opts.image ?? (await ensureVmImage());
  const disks = opts.disks ?? [];
  const dir = mkdtempSync(join(tmpdir(), 'rs-vm-'));
  const args = [
    ...qemuArgv({
      accel: 'tcg',
      memoryMiB: opts.memoryMiB ?? 256,
      vcpus: opts.vcpus ?? 1,
      kernel: image.kernel,
      initrd: image.initrd,
      cmdline: image.cmdline,
      disks,
      consoleSocket: join(dir, 'console.sock'),
      qmpSocket: join(dir, 'qmp.sock'),
      sharedMemory: opts.sharedMemory,
    }),
    ...(opts.extraArgs ?? []),
  ];
  const started = Date.now();
  // Its own process group, so kill() takes anything QEMU might start with it.
  const proc = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const vm = new QemuVm(proc, dir, args);
  const timeoutMs = opts.bootTimeoutMs ?? VM_BOOT_TIMEOUT_MS;
  try {
    const abandon = () => vm.deadReason();
    vm.console = await VmConsole.connect(vm.consolePath, { timeoutMs, abandon });
    vm.qmp = await Qmp.connect(vm.qmpPath, { timeoutMs, abandon });
    if (opts.waitReady !== false) {
      await Promise.race([
        vm.console.waitReady({ timeoutMs }),
        vm.exited.then(() => {
          throw new Error(`VM did not boot: ${vm.deadReason()}`);
        }),
      ]);
      vm.bootMs = Date.now() - started;
    }
    return vm;
  } catch (e) {
    await vm.kill();
    throw new Error(`bootQemu: ${(e as Error).message}\n(qemu-system-x86_64 ${args.join(' ')})`);
  }
}

/** qemu-storage-daemon exporting an image as vhost-user-blk on `socket` (QEMU's own backend). */
export class StorageDaemon {
  stderr = '';
  exitStatus: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  readonly exited: Promise<void>;

  private constructor(
    readonly proc: ChildProcess,
    readonly socket: string,
  ) {
    proc.stderr?.setEncoding('utf8');
    proc.stderr?.on('data', (d: string) => (this.stderr = (this.stderr + d).slice(-16384)));
    proc.stdout?.resume();
    proc.on('error', (e) => (this.stderr += `\nspawn error: ${e.message}`));
    this.exited = new Promise((resolve) =>
      proc.once('exit', (code, signal) => {
        this.exitStatus = { code, signal };
        resolve();
      }),
    );
    running.add(this);
  }

  killNow(): void {
    if (this.exitStatus === undefined && this.proc.pid !== undefined) {
      try {
        process.kill(-this.proc.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  }

  static async start(opts: { image: string; socket: string; writable?: boolean; timeoutMs?: number }): Promise<StorageDaemon> {
    const args = [
      '--blockdev',
      `driver=file,node-name=f0,filename=${opts.image},cache.direct=off`,
      '--export',
      `type=vhost-user-blk,id=e0,node-name=f0,addr.type=unix,addr.path=${opts.socket},writable=${opts.writable === false ? 'off' : 'on'}`,
    ];
    const proc = spawn('qemu-storage-daemon', args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const d = new StorageDaemon(proc, opts.socket);
    const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
    while (!existsSync(opts.socket)) {
      if (d.exitStatus) throw new Error(`qemu-storage-daemon exited (code ${d.exitStatus.code}) before listening on ${opts.socket}: ${tail(d.stderr)}`);
      if (Date.now() > deadline) {
        await d.kill();
        throw new Error(`qemu-storage-daemon did not create ${opts.socket} within ${opts.timeoutMs ?? 30_000} ms: ${tail(d.stderr)}`);
      }
      await sleep(20);
    }
    return d;
  }

  async kill(): Promise<void> {
    this.killNow();
    if (this.proc.pid !== undefined) await this.exited;
    rmSync(this.socket, { force: true });
    running.delete(this);
  }
}
