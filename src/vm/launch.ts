// Starting QEMU and QEMU's own vhost-user-blk daemon from the host, for the VM tests and the
// baselines of `ringside bench vm`. Each runs in its own process group; whatever is still running
// when this process exits is killed by an exit hook, so an interrupted run leaves no QEMU behind.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Qmp, VmConsole, VM_BOOT_TIMEOUT_MS, tail } from './console.js';
import { qemuArgv, type VmDisk } from './qemu.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export type QemuDisk = VmDisk;

export interface BootQemuOptions {
  image: { kernel: string; initrd: string; cmdline: string };
  memoryMiB?: number;
  vcpus?: number;
  disks?: QemuDisk[];
  /** Guest RAM as a shared memfd (always on when a vhost-user disk is given). */
  sharedMemory?: boolean;
  extraArgs?: string[];
  /** A migration's destination: QEMU waits for the stream on this Unix socket (then waitReady is ignored). */
  incoming?: string;
  /** Wait for the guest's ready line before returning (default true). */
  waitReady?: boolean;
  bootTimeoutMs?: number;
}

/** Every QEMU and storage daemon still running: killed when this process exits, whatever happened. */
const running = new Set<{ killNow(): void }>();
process.once('exit', () => {
  for (const vm of running) vm.killNow();
});

export type ExitStatus = { code: number | null; signal: NodeJS.Signals | null };

/**
 * A child in a process group of its own (QEMU, qemu-storage-daemon): its stderr tail, how it
 * exited, and a synchronous SIGKILL of the group for the exit hook.
 */
class GroupChild {
  /** the child's stderr (the last 16 KiB) */
  stderr = '';
  exitStatus: ExitStatus | undefined;
  readonly exited: Promise<ExitStatus>;

  constructor(readonly proc: ChildProcess) {
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

  /** SIGKILL to the child's process group, synchronously (for the exit hook). */
  killNow(): void {
    if (this.exitStatus === undefined && this.proc.pid !== undefined) {
      try {
        process.kill(-this.proc.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  }

  /** Kills the group and waits for the child to be gone. */
  protected async killAndWait(): Promise<void> {
    this.killNow();
    if (this.proc.pid !== undefined) await this.exited;
    running.delete(this);
  }
}

export class QemuVm extends GroupChild {
  console!: VmConsole;
  qmp!: Qmp;
  /** Milliseconds from spawning QEMU to the guest's ready line (when bootQemu waited for it). */
  bootMs = 0;

  constructor(
    proc: ChildProcess,
    readonly dir: string,
    readonly args: string[],
  ) {
    super(proc);
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
  async waitExit(timeoutMs = 60_000): Promise<ExitStatus> {
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

  /** Kills QEMU, waits for it to be gone, and removes its sockets. Safe to call more than once. */
  async kill(): Promise<void> {
    await this.killAndWait();
    this.console?.close();
    this.qmp?.close();
    rmSync(this.dir, { recursive: true, force: true });
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
export async function bootQemu(opts: BootQemuOptions): Promise<QemuVm> {
  const image = opts.image;
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
      ...(opts.incoming !== undefined ? { incoming: opts.incoming } : {}),
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
    if (opts.waitReady !== false && opts.incoming === undefined) {
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
export class StorageDaemon extends GroupChild {
  private constructor(
    proc: ChildProcess,
    readonly socket: string,
  ) {
    super(proc);
  }

  static async start(opts: { image: string; socket: string; writable?: boolean; queues?: number; timeoutMs?: number }): Promise<StorageDaemon> {
    const args = [
      '--blockdev',
      `driver=file,node-name=f0,filename=${opts.image},cache.direct=off`,
      '--export',
      `type=vhost-user-blk,id=e0,node-name=f0,addr.type=unix,addr.path=${opts.socket},writable=${opts.writable === false ? 'off' : 'on'},num-queues=${opts.queues ?? 1}`,
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
    await this.killAndWait();
    rmSync(this.socket, { force: true });
  }
}
