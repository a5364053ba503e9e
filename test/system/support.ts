// Whole-system test helpers: a system written to a temp dir, deployed with the real CLI
// (`node dist/ringside.js up SYSTEM --state DIR --detach --json`), driven with real tools, and
// always torn down. Everything here is asynchronous (the tools talk to processes we started).
import { alive } from '../../src/cli/lifecycle.js';
import { procStatus } from '../support/proc.js';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DIST } from '../support/platform.js';
import type { DomainRow } from '../../src/control/wire.js';

export const CLI = join(DIST, 'ringside.js');

/** Names of the host's network namespaces (`ip netns list`, which may add "(id: N)"). */
export async function netnsNames(): Promise<string[]> {
  return (await run('ip', ['netns', 'list'])).stdout.split('\n').map((l) => l.split(' ')[0]).filter((n) => n !== '');
}
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

import { run, type Run } from '../support/run.js';
export { run, type Run };

export { alive };

export interface UpJson {
  domains: DomainRow[];
  xenstoredPath: string;
  hvPid: number;
}

/** A system directory and its state directory, both under one fresh temp dir. */
export class SystemUnderTest {
  readonly work: string;
  readonly sys: string;
  readonly state: string;
  /** every pid any `up` reported, for the last-resort cleanup */
  readonly pids = new Set<number>();
  last: UpJson | null = null;

  constructor(prefix: string, files: Record<string, string>) {
    this.work = mkdtempSync(join(tmpdir(), prefix));
    this.sys = join(this.work, 'sys');
    this.state = join(this.work, 'state');
    mkdirSync(this.sys);
    for (const [f, text] of Object.entries(files)) writeFileSync(join(this.sys, f), text);
  }

  cli(args: string[], timeoutMs = 60_000): Promise<Run> {
    return run(process.execPath, [CLI, ...args, '--state', this.state], { timeoutMs });
  }

  /** `ringside up` as it went, failure included. */
  tryUp(): Promise<Run> {
    return run(process.execPath, [CLI, 'up', this.sys, '--state', this.state, '--detach', '--json'], { timeoutMs: 60_000 });
  }

  async up(): Promise<UpJson> {
    const r = await this.tryUp();
    if (r.code !== 0) throw new Error(`ringside up failed (code ${r.code}):\n${r.stderr}\n${r.stdout}\n--- log tail ---\n${this.logTail()}`);
    const j = JSON.parse(r.stdout) as UpJson;
    this.pids.add(j.hvPid);
    for (const d of j.domains) if (d.pid) this.pids.add(d.pid);
    this.last = j;
    return j;
  }

  async down(): Promise<Run> {
    return this.cli(['down'], 60_000);
  }

  async list(): Promise<DomainRow[]> {
    const r = await this.cli(['list', '--json'], 15_000);
    if (r.code !== 0) throw new Error(`ringside list failed: ${r.stderr}`);
    const rows = JSON.parse(r.stdout) as DomainRow[];
    for (const d of rows) if (d.pid) this.pids.add(d.pid);
    return rows;
  }

  /** Polls `list` until `pred` holds; returns the last rows either way. */
  async waitList(pred: (rows: DomainRow[]) => boolean, ms: number): Promise<{ ok: boolean; rows: DomainRow[] }> {
    const end = Date.now() + ms;
    for (;;) {
      let rows: DomainRow[] = [];
      try {
        rows = await this.list();
        if (pred(rows)) return { ok: true, rows };
      } catch {
        /* control domain busy or restarting */
      }
      if (Date.now() > end) return { ok: false, rows };
      await sleep(200);
    }
  }

  log(): string {
    try {
      return readFileSync(join(this.state, 'ringside.log'), 'utf8');
    } catch {
      return '';
    }
  }

  logTail(lines = 40): string {
    return this.log().trimEnd().split('\n').filter((l) => l.trim() !== '').slice(-lines).join('\n');
  }

  /**
   * The end of every system test: `down` (a failure is reported), then SIGKILL whatever of ours
   * is still alive, then the work directory goes.
   */
  async teardown(): Promise<void> {
    const d = await this.down();
    if (d.code !== 0) console.warn(`ringside down failed: ${d.stderr}`);
    const left = this.killLeftovers();
    if (left.length) console.warn(`killed leftover pids after down: ${left.join(' ')}`);
    rmSync(this.work, { recursive: true, force: true });
  }

  /** Last resort after a failed `down`: SIGKILL whatever of ours is still alive. */
  killLeftovers(): number[] {
    const left = [...this.pids].filter(alive);
    for (const pid of left) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    return left;
  }

  /**
   * SIGKILL hv's process group and every domain of the running system by pid, as a crash would
   * (only pids `list` reports now: an older one may belong to someone else by now). Returns them.
   */
  async crash(): Promise<number[]> {
    if (!this.last) throw new Error('crash(): no system is up');
    const hv = this.last.hvPid;
    const pids = [...new Set([hv, ...(await this.list()).map((d) => d.pid).filter((p): p is number => !!p)])];
    try {
      process.kill(-hv, 'SIGKILL');
    } catch {
      /* already gone */
    }
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    const end = Date.now() + 5000;
    while (pids.some(alive) && Date.now() < end) await sleep(50);
    return pids;
  }

  socketsUnderState(): string[] {
    if (!existsSync(this.state)) return [];
    return readdirSync(this.state, { recursive: true, encoding: 'utf8' }).filter((f) => statSync(join(this.state, f), { throwIfNoEntry: false })?.isSocket());
  }
}

/** The confinement fields of /proc/<pid>/status (capabilities as hex masks). */
export { procStatus };

/** A one-line summary of every device in `list` rows: name f/b states. */
export function deviceStates(rows: DomainRow[]): string {
  return rows.flatMap((d) => d.devices.map((v) => `${d.name}:${v.type}/${v.name}=${v.frontendState}/${v.backendState}`)).join(' ');
}

/** Every domain running and every device Connected at both ends (a VM's disk: at the backend, its frontend being QEMU). */
export const allConnected = (rows: DomainRow[]) =>
  rows.every((d) => d.state === 'running' && d.devices.every((v) => (v.transport === 'vhost-user' || v.frontendState === 4) && v.backendState === 4));
