// accel = "auto": use KVM only if a guest actually runs under it. /dev/kvm can exist and open
// while nested KVM spins forever in the first guest instruction (this project's CI machines), so
// the probe boots a one-sector guest that writes to QEMU's isa-debug-exit port, and only that exit
// status within the time limit counts as "KVM works".
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Accelerator } from './qemu.js';

export interface AccelChoice {
  accel: Accelerator;
  why: string;
}

const DEBUG_EXIT_PORT = 0x501;
/** isa-debug-exit makes QEMU exit with (value << 1) | 1; the boot sector writes 1 */
const PROBE_EXIT = 3;
export const KVM_PROBE_TIMEOUT_MS = 5000;

/** A floppy whose boot sector does `mov dx, 0x501; mov al, 1; out dx, al; hlt` and spins. */
function probeImage(): Uint8Array {
  const img = new Uint8Array(1_474_560);
  img.set([0xba, DEBUG_EXIT_PORT & 0xff, DEBUG_EXIT_PORT >> 8, 0xb0, 0x01, 0xee, 0xf4, 0xeb, 0xfd]);
  img[510] = 0x55;
  img[511] = 0xaa;
  return img;
}

/** Runs the probe guest under `accel`; resolves with QEMU's exit code, or null on timeout. */
function runProbe(qemu: string, accel: Accelerator, image: string, timeoutMs: number): Promise<{ code: number | null; stderr: string; spawnError?: string }> {
  return new Promise((resolve) => {
    const args = ['-accel', accel, '-cpu', 'qemu64', '-M', 'pc', '-m', '16', '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot'];
    args.push('-device', `isa-debug-exit,iobase=${DEBUG_EXIT_PORT},iosize=1`, '-drive', `file=${image},format=raw,if=floppy`, '-boot', 'a');
    const p = spawn(qemu, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-2000)));
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('error', (e) => {
      clearTimeout(t);
      resolve({ code: null, stderr, spawnError: e.message });
    });
    p.on('exit', (code, signal) => {
      clearTimeout(t);
      resolve({ code: signal ? null : code, stderr });
    });
  });
}

/** Whether the probe guest reaches its exit port under `accel` within the time limit. */
export async function probeRuns(accel: Accelerator, opts: { qemu?: string; timeoutMs?: number } = {}): Promise<{ ok: boolean; detail: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'ringside-kvm-probe-'));
  try {
    const image = join(dir, 'probe.img');
    writeFileSync(image, probeImage());
    const timeoutMs = opts.timeoutMs ?? KVM_PROBE_TIMEOUT_MS;
    const r = await runProbe(opts.qemu ?? 'qemu-system-x86_64', accel, image, timeoutMs);
    if (r.code === PROBE_EXIT) return { ok: true, detail: `a probe guest ran to its exit port under ${accel.toUpperCase()}` };
    const what = r.spawnError !== undefined ? `could not start: ${r.spawnError}` : r.code === null ? `did not reach its exit port within ${timeoutMs} ms (nested KVM that hangs?)` : `exited with ${r.code}: ${r.stderr.trim().split('\n').pop() ?? ''}`;
    return { ok: false, detail: `a probe guest under ${accel.toUpperCase()} ${what}` };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Settles `auto`; kvm and tcg are taken as written. */
export async function chooseAccel(asked: Accelerator | 'auto', opts: { qemu?: string; timeoutMs?: number } = {}): Promise<AccelChoice> {
  if (asked !== 'auto') return { accel: asked, why: `accel = "${asked}" in the config` };
  if (!existsSync('/dev/kvm')) return { accel: 'tcg', why: 'accel = "auto": no /dev/kvm on this host, so TCG' };
  const r = await probeRuns('kvm', opts);
  return r.ok ? { accel: 'kvm', why: `accel = "auto": ${r.detail}` } : { accel: 'tcg', why: `accel = "auto": ${r.detail}, so TCG` };
}
