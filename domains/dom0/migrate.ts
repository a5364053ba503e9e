// Live migration between two ringside hosts, dom0's part (xl migrate's sequence, with QEMU's
// stream in the middle): the source asks the destination to take the VM, the destination checks
// it can and starts QEMU waiting for the stream, the source's QEMU sends memory and device state
// while blkdom and netdom log what they write, and only once the destination says its copy runs
// does the source let its own go. Until that point every failure leaves the VM running at the
// source; after it, the VM runs at the destination whatever happens to the source.
import { existsSync } from 'node:fs';
import { freemem } from 'node:os';
import { join, normalize } from 'node:path';
import { clipPeerText as clip, request, type ControlReply, type MigrationReport } from '../../src/control/wire.js';
import { statePaths, vmDir, vmQmpSocket, type StatePaths } from '../../src/control/paths.js';
import { tryConnect } from '../../src/control/unix.js';
import { Qmp } from '../../src/vm/console.js';
import { LOCAL_LINK, migrate, progressLine, type MigrationSummary } from '../../src/vm/migration.js';
import type { Accelerator } from '../../src/vm/qemu.js';

export interface VmSource {
  file: string;
  text: string;
  base: string;
  accel: Accelerator;
  /** the CPU model it runs: the destination must offer it, and runs it as it is */
  cpu: string;
}

/** What the toolstack lends a migration, either side. */
export interface MigrationHost {
  readonly state: StatePaths;
  /** host.cfg's `host` */
  readonly hostName: string;
  log(line: string): void;
  /** a running VM's config file as it was started, and the accelerator it runs under (the destination's must match) */
  vmConfig(name: string): VmSource;
  /** starts the config as a VM whose QEMU waits for a stream on `incoming`; resolves with its domid */
  startIncoming(name: string, src: VmSource, incoming: string): Promise<number>;
  /** the VM goes for good (it moved away, or its arrival was called off) */
  dropVm(name: string, why: string): Promise<void>;
  /** the VM's domid here, or undefined */
  domidOf(name: string): number | undefined;
  /** VMs whose migration to this host has not finished: only these may be called off */
  readonly arriving: Set<string>;
}

/** how long a destination's QEMU gets to listen, and then to run the guest it received */
const DEST_START_MS = 30_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function ok(r: ControlReply, what: string): ControlReply & { ok: true } {
  if (!r.ok) throw new Error(`${what}: ${clip(String(r.error))}`);
  return r;
}

/** Whether the destination's incoming socket is a plain path inside one of its VM directories (no .., no QEMU option separator). */
function isIncomingSocket(p: unknown, vmRoot: string): p is string {
  return typeof p === 'string' && p.length < 108 && !p.includes(',') && p.startsWith(vmRoot + '/') && normalize(p) === p && !p.split('/').includes('..');
}

const isDomid = (d: unknown): d is number => typeof d === 'number' && Number.isInteger(d) && d > 0 && d < 0x7ff0;

/** Source side of `ringside migrate NAME DEST`. */
export async function migrateOut(h: MigrationHost, name: string, dest: string, progress: (line: string) => void, bandwidthMiB?: number): Promise<MigrationReport> {
  const to = statePaths(dest);
  if (to.dir === h.state.dir) throw new Error(`${dest} is this host's own state directory: name the destination host's`);
  const src = h.vmConfig(name);
  const sock = await tryConnect(to.control);
  if (!sock) throw new Error(`no ringside host answers at ${to.control}: start the destination with 'ringside up SYSTEM --state ${dest}'`);
  let destGone: string | undefined;
  sock.on('close', () => (destGone ??= "the destination's control domain went away"));
  sock.on('error', () => undefined);
  try {
    const started = Date.now();
    progress(`${name}: asking the host at ${to.dir} to take it`);
    const asked = await request(sock, { op: 'migrate-incoming', name, ...src }).catch((e: Error) => {
      throw new Error(`the destination at ${to.dir} did not answer migrate-incoming: ${clip(e.message)}`);
    });
    const prep = ok(asked, `the destination refused ${name}`);
    const incoming = prep.incoming;
    // The destination is another host: its answer is checked before QEMU is pointed at it.
    if (!isIncomingSocket(incoming, to.vm)) throw new Error(`the destination answered with incoming socket ${clip(JSON.stringify(incoming) ?? String(incoming))}: not a socket in one of its VM directories (${to.vm})`);
    if (!isDomid(prep.domid)) throw new Error(`the destination answered with domid ${clip(JSON.stringify(prep.domid) ?? String(prep.domid))}: not a domain id`);
    const qmp = await Qmp.connect(vmQmpSocket(h.state, name), { timeoutMs: 10_000 });
    try {
      let summary: MigrationSummary;
      try {
        summary = await migrate(qmp, `unix:${incoming}`, {
          ...LOCAL_LINK,
          ...(bandwidthMiB !== undefined ? { maxBandwidth: bandwidthMiB * (1 << 20) } : {}),
          onProgress: (p) => progress(`${name}: ${progressLine(p)}`),
          abandon: () => destGone,
        });
      } catch (e) {
        // Before the switch-over: QEMU keeps (or puts) the guest running here, with its devices.
        await resumeHere(qmp, h, name);
        if (!destGone) await request(sock, { op: 'migrate-abort', name }).catch(() => undefined);
        throw e;
      }
      progress(`${name}: stream complete (${summary.rounds} rounds, downtime ${summary.downtimeMs} ms); waiting for it to run at the destination`);
      const fin = await request(sock, { op: 'migrate-finish', name }).catch((e: Error): ControlReply => ({ ok: false, error: e.message }));
      if (!fin.ok) {
        // The destination has the guest but cannot run it: the source's copy is still whole.
        await resumeHere(qmp, h, name);
        await request(sock, { op: 'migrate-abort', name }).catch(() => undefined);
        throw new Error(`the destination could not run ${name} (${clip(String(fin.error))}): it runs on here`);
      }
      qmp.close();
      await h.dropVm(name, `migrated to ${to.dir}`);
      const report: MigrationReport = { ...summary, name, from: h.state.dir, to: to.dir, fromHost: h.hostName, toHost: typeof prep.host === 'string' ? clip(prep.host.slice(0, 63)) : '?', domid: isDomid(fin.domid) ? fin.domid : prep.domid, cpu: src.cpu };
      h.log(`dom0: ${name} migrated to host ${report.toHost} (${to.dir}) as dom${report.domid}: ${summary.totalMs} ms total, ${summary.downtimeMs} ms downtime, ${summary.rounds} rounds, ${(summary.transferredBytes / (1 << 20)).toFixed(1)} MiB sent (${Date.now() - started} ms end to end)`);
      return report;
    } finally {
      qmp.close();
    }
  } finally {
    sock.destroy();
  }
}

/** After a failed migration: the guest must be running here again. */
async function resumeHere(qmp: Qmp, h: MigrationHost, name: string): Promise<void> {
  try {
    const st = (await qmp.execute('query-status')) as { status?: unknown };
    if (st.status !== 'running') {
      await qmp.execute('cont');
      h.log(`dom0: ${name}: migration failed with the guest ${String(st.status)}: resumed here`);
    }
  } catch (e) {
    h.log(`dom0: ${name}: cannot check that the guest runs on after the failed migration: ${(e as Error).message}`);
  }
}

/** Destination side: take a VM, start its QEMU waiting for the stream. */
export async function receiveIncoming(h: MigrationHost, name: string, src: VmSource): Promise<{ incoming: string; domid: number }> {
  if (h.domidOf(name) !== undefined) throw new Error(`a domain named '${name}' already runs on this host`);
  const incoming = join(vmDir(h.state, name), 'incoming.sock');
  let domid: number;
  try {
    domid = await h.startIncoming(name, src, incoming);
  } catch (e) {
    await h.dropVm(name, `its arrival failed: ${(e as Error).message}`);
    throw e;
  }
  const end = Date.now() + DEST_START_MS;
  while (!existsSync(incoming)) {
    if (Date.now() > end || h.domidOf(name) === undefined) {
      await h.dropVm(name, 'its QEMU did not listen for the stream');
      throw new Error(`QEMU for ${name} did not listen on ${incoming} within ${DEST_START_MS / 1000} s`);
    }
    await sleep(20);
  }
  h.arriving.add(name);
  h.log(`dom0: ${name}: receiving a migration as dom${domid} on ${incoming}`);
  return { incoming, domid };
}

/**
 * Destination side, once the stream is through: the guest must be running here. `waitMs` bounds
 * how long QEMU may still be loading the stream ('inmigrate'); without a source to say the stream
 * is through, only QEMU itself can end that wait, by running the guest or by failing.
 */
export async function finishIncoming(h: MigrationHost, name: string, waitMs = DEST_START_MS): Promise<number> {
  const domid = h.domidOf(name);
  if (domid === undefined || !h.arriving.has(name)) throw new Error(`no incoming VM named '${name}' here`);
  const qmp = await Qmp.connect(vmQmpSocket(h.state, name), { timeoutMs: 10_000 });
  try {
    const end = Date.now() + waitMs;
    for (;;) {
      const st = (await qmp.execute('query-status')) as { status?: unknown };
      if (st.status === 'running') break;
      // 'inmigrate' until QEMU has loaded the last of the stream
      if (st.status !== 'inmigrate' || Date.now() > end) throw new Error(`${name} is ${String(st.status)} here, not running`);
      await sleep(20);
    }
  } finally {
    qmp.close();
  }
  h.arriving.delete(name);
  h.log(`dom0: ${name}: migration received; running as dom${domid}`);
  return domid;
}

/**
 * Destination side: the source's dom0 went away (its host died, or its connection broke) with
 * the VM still arriving. Whether the switch-over happened is QEMU's to say: if the guest runs
 * here it stays (the source's copy was paused for good at the switch-over), and if the stream
 * broke first QEMU fails and the copy goes, the VM running on at the source.
 */
export async function sourceGone(h: MigrationHost, name: string): Promise<void> {
  if (!h.arriving.has(name)) return;
  h.log(`dom0: ${name}: the source host went away while the VM was arriving; waiting for QEMU to run it or give up`);
  try {
    const domid = await finishIncoming(h, name, Number.POSITIVE_INFINITY);
    h.log(`dom0: ${name}: the switch-over had happened: it runs here as dom${domid}`);
  } catch (e) {
    if (!h.arriving.delete(name)) return;
    await h.dropVm(name, `the source host went away before the switch-over (${(e as Error).message})`);
  }
}

/** Destination side: the source gave up before the switch-over; the copy being received goes. */
export async function abortIncoming(h: MigrationHost, name: string): Promise<void> {
  if (!h.arriving.has(name)) throw new Error(`no incoming VM named '${name}' here: only a VM still arriving can be called off`);
  h.arriving.delete(name);
  await h.dropVm(name, 'the migration that was bringing it here failed');
}

/** Whether the host has room for a VM of `memoryMiB` (the check xl makes before it builds one). */
export function checkMemory(name: string, memoryMiB: number): void {
  const free = Math.floor(freemem() / (1 << 20));
  if (free < memoryMiB + 64) throw new Error(`${name} needs ${memoryMiB} MiB; this host has ${free} MiB free`);
}
