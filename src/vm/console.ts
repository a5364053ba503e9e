// A running VM's Unix sockets: its serial console as a command runner, and QMP. Used by the tests,
// `ringside bench vm` and anything else that drives a guest from the host.
import { createConnection, type Socket } from 'node:net';
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { VM_READY_LINE } from './init.js';

/** TCG boots in 3-5 s here, but a loaded machine can take many times that. */
export const VM_BOOT_TIMEOUT_MS = 120_000;

export const tail = (s: string, n = 1500) => (s.length > n ? '…' + s.slice(-n) : s);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Connects to a Unix socket that may not exist yet; gives up at the deadline or when `abandon` says so. */
export async function connectUnix(path: string, timeoutMs: number, what: string, abandon: () => string | undefined = () => undefined): Promise<Socket> {
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
  private readonly listeners = new Set<(chunk: string) => void>();

  private constructor(
    private readonly sock: Socket,
    readonly path: string,
  ) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      const chunk = d.replace(/\r/g, '');
      this.output += chunk;
      for (const l of this.listeners) l(chunk);
      for (const w of [...this.waiters]) if (w.test()) this.waiters.delete(w);
    });
    sock.on('error', (e) => this.closed(`console socket error: ${e.message}`));
    sock.on('close', () => this.closed('the console socket closed (QEMU exited?)'));
  }

  static async connect(path: string, opts: { timeoutMs?: number; abandon?: () => string | undefined } = {}): Promise<VmConsole> {
    return new VmConsole(await connectUnix(path, opts.timeoutMs ?? VM_BOOT_TIMEOUT_MS, 'VM console', opts.abandon), path);
  }

  /** Calls `fn` with each piece of output as it arrives (when it arrived matters, not just what); returns the unsubscribe. */
  onOutput(fn: (chunk: string) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
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
    // Each marker is written twice, by two printf calls. CI lost one marker line twice, both times
    // just as a background job of the guest's shell ended; our guess is the shell's SIGCHLD
    // interrupting a printf blocked on the slow serial line. A lost copy is now harmless: losing
    // both would take two such coincidences in one command.
    const mark = (m: string, arg = '') => `printf '%s-%s${arg ? ' %d' : ''}\\n' ${m} ${id}${arg ? ` ${arg}` : ''}`;
    this.send(`${mark('RSB')}; ${mark('RSB')}; eval ${quoted}; __rs=$?; ${mark('RSE', '$__rs')}; ${mark('RSE', '$__rs')}`);
    const begin = `RSB-${id}\n`;
    // not anchored to a line start: a command's output need not end in a newline (sysfs serial)
    const end = new RegExp(`RSE-${id} (\\d+)\\n`);
    try {
      return await this.waitFor(
        `the end marker of '${cmd}'`,
        (o) => {
          const seen = o.slice(from);
          const b = seen.indexOf(`\n${begin}`);
          if (b < 0) return undefined;
          let start = b + 1 + begin.length;
          if (seen.startsWith(begin, start)) start += begin.length;
          const body = seen.slice(start);
          const m = end.exec(body);
          if (!m) return undefined;
          return { code: Number(m[1]), output: body.slice(0, m.index) };
        },
        timeoutMs,
      );
    } catch (e) {
      throw new Error(`VM command '${cmd}' failed: ${(e as Error).message}`);
    }
  }

  close(): void {
    this.closed('the console was closed');
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
    this.closed('closed by its owner');
  }
}
