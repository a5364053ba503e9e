// `ringside up` / `down`: start hv (which starts the control domain, which builds the system),
// wait until every device is connected, and tear it all down again leaving nothing behind.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync, closeSync } from 'node:fs';
import { resolve } from 'node:path';
import { pack } from 'msgpackr';
import { tryConnect } from '../control/unix.js';
import { loadSystem } from '../config/system.js';
import { control } from './control.js';
import { CliError } from './errors.js';
import { hvBundle, statePaths, defaultSystem, type StatePaths } from './paths.js';
import type { DomainRow } from '../control/wire.js';
import { NetnsRecords, deleteRecordedNetns } from '../netns/netns.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface UpOptions {
  system?: string;
  stateDir: string;
  detach: boolean;
  timeoutMs: number;
  progress: (line: string) => void;
}

export interface UpResult {
  domains: DomainRow[];
  xenstoredPath: string;
  hvPid: number;
  state: StatePaths;
}

/** Whether a process of that pid exists (signal 0 probes without sending). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function controlAnswers(path: string): Promise<boolean> {
  const s = await tryConnect(path);
  s?.destroy();
  return s !== null;
}

export async function up(o: UpOptions): Promise<UpResult> {
  const systemDir = resolve(o.system ?? defaultSystem());
  // Check the configuration here first, so mistakes are reported before anything starts.
  loadSystem(systemDir);
  const p = statePaths(o.stateDir);
  if (await controlAnswers(p.control)) throw new CliError(`a system is already running in ${p.dir}: run 'ringside down --state ${o.stateDir}' first`);
  if (existsSync(p.hvPid)) {
    const pid = Number(readFileSync(p.hvPid, 'utf8'));
    if (pid > 0 && alive(pid)) throw new CliError(`hv (pid ${pid}) from an earlier run in ${p.dir} is still alive: run 'ringside down --state ${o.stateDir}'`);
  }
  for (const n of await cleanState(p)) o.progress(n);
  mkdirSync(p.dir, { recursive: true });
  const logFd = openSync(p.log, 'a');
  const dom0Args = Buffer.from(pack({ stateDir: p.dir, systemDir })).toString('base64');
  const hv = spawn(process.execPath, ['--enable-source-maps', hvBundle(), '--dom0', 'dom0', '--dom0-args', dom0Args], {
    stdio: ['ignore', logFd, logFd],
    detached: true,
  });
  closeSync(logFd);
  const hvPid = hv.pid!;
  writeFileSync(p.hvPid, String(hvPid));
  let exited: string | null = null;
  hv.once('exit', (code, sig) => (exited = sig ?? `code ${code}`));
  hv.unref();
  o.progress(`hv started (pid ${hvPid}); log: ${p.log}`);

  const deadline = Date.now() + o.timeoutMs;
  while (!(await controlAnswers(p.control))) {
    if (exited) throw new CliError(`hv exited (${exited}) before the control domain came up; see ${p.log}:\n${tail(p.log)}`);
    if (Date.now() > deadline) throw new CliError(`the control domain did not come up within ${o.timeoutMs} ms; see ${p.log}`);
    await sleep(50);
  }
  o.progress('control domain up; building domains');
  const r = await control(p.dir, { op: 'wait-ready', timeoutMs: Math.max(1000, deadline - Date.now()) });
  if (!r.ready) {
    throw new CliError(`system did not become ready: ${(r.problems ?? []).join('; ') || r.message}\nsee ${p.log}; stop it with 'ringside down --state ${o.stateDir}'`);
  }
  return { domains: r.domains ?? [], xenstoredPath: r.xenstoredPath ?? p.xenstored, hvPid, state: p };
}

export async function down(stateDir: string, timeoutMs = 30_000): Promise<string[]> {
  const p = statePaths(stateDir);
  const notes: string[] = [];
  const pid = existsSync(p.hvPid) ? Number(readFileSync(p.hvPid, 'utf8')) : 0;
  if (await controlAnswers(p.control)) {
    try {
      await control(p.dir, { op: 'down' });
    } catch (e) {
      notes.push(`control domain did not answer 'down' (${(e as Error).message}); killing hv`);
    }
  } else if (!(pid > 0 && alive(pid))) {
    if (!existsSync(p.dir)) throw new CliError(`no system in ${p.dir}`);
    notes.push('no running system; cleaning up the state directory');
  }
  if (pid > 0) {
    const end = Date.now() + timeoutMs;
    while (alive(pid) && Date.now() < end) await sleep(50);
    if (alive(pid)) {
      notes.push(`hv (pid ${pid}) did not stop in time: SIGKILL`);
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        process.kill(pid, 'SIGKILL');
      }
    }
  }
  notes.push(...(await cleanState(p)));
  return notes;
}

/**
 * Removes sockets, pid files and the network namespaces of a stopped system (those ringside
 * recorded; dom0 normally removes them itself, but not after a crash or a SIGKILL); keeps logs
 * and disk images. Returns what it did or could not do, for the user.
 */
async function cleanState(p: StatePaths): Promise<string[]> {
  const notes: string[] = [];
  const ns = await deleteRecordedNetns(new NetnsRecords(p.dir));
  if (ns.removed.length > 0) notes.push(`removed leftover network namespace${ns.removed.length > 1 ? 's' : ''}: ${ns.removed.join(' ')}`);
  notes.push(...ns.problems);
  for (const f of [p.control, p.xenstored, p.hvPid]) rmSync(f, { force: true });
  for (const d of [p.xenstoreDomains, p.nbd]) rmSync(d, { recursive: true, force: true });
  if (existsSync(p.dir)) for (const f of readdirSync(p.dir)) if (f.endsWith('.sock')) rmSync(resolve(p.dir, f), { force: true });
  return notes;
}

function tail(file: string, lines = 15): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}
