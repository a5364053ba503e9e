// The CPU a VM sees, and whether a host can offer it. A VM runs one named QEMU model (cpu =
// "MODEL" in its config) for its whole life, across migrations: the destination must offer every
// feature of that model or the guest would find instructions gone under it. What a host offers is
// what its QEMU reports under its accelerator (query-cpu-definitions' unavailable-features), less
// the features host.cfg's cpu_mask takes away, which is how one machine poses as a host of an older
// or other-vendor CPU. `cpu = "baseline"` is the levelling Xen leaves to the toolstack and libvirt
// calls cpu-baseline: the most capable model every host of the pool offers.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isFixedCpuModel } from '../config/domain.js';
import { Qmp } from './console.js';
import type { Accelerator } from './qemu.js';

export interface CpuModel {
  /** features QEMU under this accelerator cannot offer the model here */
  unavailable: string[];
  /** the model's features (CPUID bits QEMU sets for it) */
  features: Set<string>;
}

/** What one host's QEMU can offer, probed once per accelerator. */
export interface HostCpu {
  accel: Accelerator;
  /** migration-safe named models */
  models: Map<string, CpuModel>;
  /** every feature name QEMU knows (cpu_mask may name only these) */
  known: Set<string>;
}

const PROBE_TIMEOUT_MS = 20_000;

/** query-cpu-model-expansion's properties: the model's features and its other knobs */
function expansion(v: unknown, what: string): Record<string, unknown> {
  const props = (v as { model?: { props?: unknown } } | null)?.model?.props;
  if (typeof props !== 'object' || props === null) throw new Error(`QEMU's expansion of ${what} has no model.props`);
  return props as Record<string, unknown>;
}

const trueProps = (v: unknown, what: string) => new Set(Object.entries(expansion(v, what)).filter(([, on]) => on === true).map(([k]) => k));

/** Asks a QEMU with no machine what it can offer under `accel`. */
export async function probeHostCpu(accel: Accelerator, opts: { qemu?: string } = {}): Promise<HostCpu> {
  const dir = mkdtempSync(join(tmpdir(), 'ringside-cpu-probe-'));
  const sock = join(dir, 'qmp.sock');
  const p = spawn(opts.qemu ?? 'qemu-system-x86_64', ['-machine', 'none', '-accel', accel, '-nodefaults', '-no-user-config', '-display', 'none', '-qmp', `unix:${sock},server=on,wait=off`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  p.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-2000)));
  let exited: string | undefined;
  p.on('exit', (code, signal) => (exited = `QEMU exited (${signal ?? code}): ${stderr.trim().split('\n').pop() ?? ''}`));
  p.on('error', (e) => (exited = `QEMU could not start: ${e.message}`));
  let qmp: Qmp | undefined;
  try {
    qmp = await Qmp.connect(sock, { timeoutMs: PROBE_TIMEOUT_MS, abandon: () => exited });
    const defs = await qmp.execute('query-cpu-definitions');
    if (!Array.isArray(defs)) throw new Error('query-cpu-definitions gave no list');
    // Features QEMU cannot offer here (off in max) are still names cpu_mask may use.
    const known = new Set(Object.keys(expansion(await qmp.execute('query-cpu-model-expansion', { type: 'full', model: { name: 'max' } }), 'max')));
    const models = new Map<string, CpuModel>();
    for (const d of defs as { name?: unknown; 'unavailable-features'?: unknown; 'migration-safe'?: unknown }[]) {
      if (typeof d.name !== 'string' || !isFixedCpuModel(d.name) || d['migration-safe'] !== true) continue;
      const unavailable = Array.isArray(d['unavailable-features']) ? d['unavailable-features'].filter((f): f is string => typeof f === 'string') : [];
      models.set(d.name, { unavailable, features: trueProps(await qmp.execute('query-cpu-model-expansion', { type: 'full', model: { name: d.name } }), d.name) });
    }
    if (models.size === 0) throw new Error('QEMU listed no migration-safe CPU model');
    return { accel, models, known };
  } catch (e) {
    throw new Error(`probing the CPU models QEMU offers under ${accel.toUpperCase()}: ${(e as Error).message}`);
  } finally {
    qmp?.close();
    p.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

/** cpu_mask names checked against what QEMU knows: a typo must not pass as "masked". */
export function checkMask(host: HostCpu, mask: readonly string[]): void {
  const unknown = mask.filter((f) => !host.known.has(f));
  if (unknown.length > 0) throw new Error(`host.cfg cpu_mask names ${unknown.map((f) => `'${f}'`).join(', ')}, which QEMU does not know as CPU feature(s): use QEMU's names (qemu-system-x86_64 -cpu help lists them)`);
}

/** Why this host cannot offer `model`: an empty list means it can. */
export function missingFeatures(host: HostCpu, mask: readonly string[], model: string): { missing: string[]; why: string } {
  const m = host.models.get(model);
  if (!m) return { missing: [model], why: `QEMU here has no migration-safe CPU model '${model}' (qemu-system-x86_64 -cpu help lists the models)` };
  const masked = mask.filter((f) => m.features.has(f));
  const missing = [...new Set([...m.unavailable, ...masked])].sort();
  if (missing.length === 0) return { missing, why: '' };
  const parts = [];
  if (m.unavailable.length > 0) parts.push(`${m.unavailable.join(', ')} (not offered under ${host.accel.toUpperCase()} here)`);
  if (masked.length > 0) parts.push(`${masked.join(', ')} (masked by host.cfg cpu_mask)`);
  return { missing, why: `CPU model ${model} needs features this host lacks: ${parts.join('; ')}` };
}

/**
 * The most capable model every host offers: the one with most features among those nobody
 * lacks anything of (ties go to the name that sorts first, so every host picks the same one).
 * `others` holds, per other host, the features it lacks for each candidate.
 */
export function baselineModel(local: HostCpu, mask: readonly string[], others: readonly Record<string, readonly string[]>[]): string {
  const fits = [...local.models.keys()].filter((name) => missingFeatures(local, mask, name).missing.length === 0 && others.every((o) => (o[name] ?? [name]).length === 0));
  if (fits.length === 0) throw new Error('no CPU model is offered by every host of the pool');
  fits.sort((x, y) => (local.models.get(y)?.features.size ?? 0) - (local.models.get(x)?.features.size ?? 0) || (x < y ? -1 : 1));
  return fits[0] as string;
}
