// QEMU's own live migration, driven over QMP from the source's side: pre-copy rounds while the
// guest runs, then stop-and-copy. The driver domains take part through vhost-user (dirty logging
// while the rounds run, their rings drained and handed over at the stop); this module only asks
// QEMU and reads back what it reports. QEMU's answers are checked like any other input: a field
// of the wrong type is an error naming it, never a NaN in the summary.
import type { Qmp } from './console.js';

/** What one poll of query-migrate says while the migration runs. */
export interface MigrationProgress {
  status: string;
  /** completed dirty-bitmap syncs: round 1 is the bulk copy */
  round: number;
  remainingBytes: number;
  totalBytes: number;
  transferredBytes: number;
  dirtyPagesRate: number;
  mbps: number;
  /** auto-converge's current guest CPU throttle, 0 when it has not started */
  throttlePct: number;
}

export interface MigrationSummary {
  totalMs: number;
  /** how long the guest was stopped, as QEMU measured it */
  downtimeMs: number;
  setupMs: number;
  transferredBytes: number;
  rounds: number;
  /** the highest CPU throttle auto-converge reached (0: it never had to) */
  throttlePct: number;
  /** how the migration is made to converge under a guest that dirties memory faster than the link */
  convergence: 'auto-converge';
}

export interface MigrateOptions {
  /** bytes per second QEMU may send (its default, 128 MiB/s, is for a real network) */
  maxBandwidth: number;
  /** the longest stop-and-copy QEMU aims for */
  downtimeLimitMs: number;
  onProgress?(p: MigrationProgress): void;
  /** checked between polls: a reason stops the migration (the destination died, the operator gave up) */
  abandon?(): string | undefined;
  /** how often to ask QEMU how it is going */
  pollMs?: number;
}

/**
 * What dom0 asks of QEMU between two hosts on one machine, and what the bench gives the baseline
 * so both migrate alike: most of a local link (QEMU's 128 MiB/s default is for a shared network),
 * and QEMU's own 300 ms target for the stop-and-copy.
 */
export const LOCAL_LINK = { maxBandwidth: 1 << 30, downtimeLimitMs: 300 } as const;

/** how long QEMU gets to fill in a completed migration's times */
const SETTLE_MS = 10_000;

export class MigrationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MigrationError';
  }
}

const STATUSES = new Set(['none', 'setup', 'cancelling', 'cancelled', 'active', 'postcopy-active', 'postcopy-paused', 'postcopy-recover', 'completed', 'failed', 'colo', 'pre-switchover', 'device', 'wait-unplug']);

function num(o: Record<string, unknown>, key: string, where: string): number {
  const v = o[key];
  if (v === undefined) return 0;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new MigrationError(`QEMU's query-migrate gave ${where}${key} = ${JSON.stringify(v)}, not a count`);
  return v;
}

/** query-migrate's answer, checked. */
export function parseQueryMigrate(v: unknown): MigrationProgress & { totalMs: number; downtimeMs: number; setupMs: number; error: string | undefined } {
  if (typeof v !== 'object' || v === null) throw new MigrationError(`QEMU's query-migrate gave ${JSON.stringify(v)}, not an object`);
  const o = v as Record<string, unknown>;
  const status = o.status === undefined ? 'none' : o.status;
  if (typeof status !== 'string' || !STATUSES.has(status)) throw new MigrationError(`QEMU's query-migrate gave status ${JSON.stringify(status)}, which no QEMU reports`);
  const ram = o.ram === undefined ? {} : o.ram;
  if (typeof ram !== 'object' || ram === null) throw new MigrationError(`QEMU's query-migrate gave ram = ${JSON.stringify(ram)}, not an object`);
  const r = ram as Record<string, unknown>;
  const err = o['error-desc'];
  return {
    status,
    round: num(r, 'dirty-sync-count', 'ram.'),
    remainingBytes: num(r, 'remaining', 'ram.'),
    totalBytes: num(r, 'total', 'ram.'),
    transferredBytes: num(r, 'transferred', 'ram.'),
    dirtyPagesRate: num(r, 'dirty-pages-rate', 'ram.'),
    mbps: num(r, 'mbps', 'ram.'),
    throttlePct: num(o, 'cpu-throttle-percentage', ''),
    totalMs: num(o, 'total-time', ''),
    downtimeMs: num(o, 'downtime', ''),
    setupMs: num(o, 'setup-time', ''),
    error: typeof err === 'string' ? err.slice(0, 500) : undefined,
  };
}

/** One line of progress, the way an operator reads it on stderr. */
export function progressLine(p: MigrationProgress): string {
  const mib = (b: number) => (b / (1 << 20)).toFixed(1);
  const throttle = p.throttlePct > 0 ? `, guest CPU throttled ${p.throttlePct}%` : '';
  return `${p.status}: round ${p.round}, ${mib(p.remainingBytes)} of ${mib(p.totalBytes)} MiB left, dirtying ${p.dirtyPagesRate} pages/s, ${p.mbps.toFixed(0)} Mbit/s${throttle}`;
}

/**
 * Migrates the guest behind `qmp` to `uri` and resolves once QEMU reports it completed (the
 * guest is then paused here and runs at the destination). On failure QEMU resumes the guest here
 * by itself; this cancels what it started and throws with QEMU's reason.
 */
export async function migrate(qmp: Qmp, uri: string, o: MigrateOptions): Promise<MigrationSummary> {
  const before = parseQueryMigrate(await qmp.execute('query-migrate'));
  if (before.status !== 'none' && before.status !== 'completed' && before.status !== 'failed' && before.status !== 'cancelled')
    throw new MigrationError(`a migration of this VM is already ${before.status}`);
  // Auto-converge throttles the guest's vCPUs when it dirties memory faster than the stream
  // drains it; post-copy would need userfaultfd support in every backend that maps guest memory.
  await qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'auto-converge', state: true }, { capability: 'events', state: true }] });
  await qmp.execute('migrate-set-parameters', { 'max-bandwidth': o.maxBandwidth, 'downtime-limit': o.downtimeLimitMs });
  await qmp.execute('migrate', { uri });
  let throttle = 0;
  let settleBy: number | undefined;
  const poll = o.pollMs ?? 100;
  for (;;) {
    const q = parseQueryMigrate(await qmp.execute('query-migrate'));
    throttle = Math.max(throttle, q.throttlePct);
    // QEMU sets the state before it fills in the times: a poll in between sees 'completed' at 0 ms.
    if (q.status === 'completed' && q.totalMs === 0 && Date.now() < (settleBy ??= Date.now() + SETTLE_MS)) {
      await new Promise((r) => setTimeout(r, 10));
      continue;
    }
    if (q.status === 'completed') {
      return { totalMs: q.totalMs, downtimeMs: q.downtimeMs, setupMs: q.setupMs, transferredBytes: q.transferredBytes, rounds: q.round, throttlePct: throttle, convergence: 'auto-converge' };
    }
    if (q.status === 'failed' || q.status === 'cancelled') throw new MigrationError(`QEMU reports the migration ${q.status}${q.error ? `: ${q.error}` : ''}`);
    o.onProgress?.(q);
    const why = o.abandon?.();
    if (why !== undefined) {
      await qmp.execute('migrate_cancel').catch(() => undefined);
      throw new MigrationError(`migration abandoned: ${why}`);
    }
    await new Promise((r) => setTimeout(r, poll));
  }
}
