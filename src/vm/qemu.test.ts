import { describe, expect, it } from 'vitest';
import { qemuArgv, TCG_RAM_PAD_KIB, type QemuSpec } from './qemu.js';

const spec = (accel: 'tcg' | 'kvm'): QemuSpec => ({
  accel, memoryMiB: 256, vcpus: 2, kernel: '/k', cmdline: 'console=ttyS0', disks: [{ kind: 'vhost-user', socket: '/run/d.sock' }], consoleSocket: '/run/c.sock', qmpSocket: '/run/q.sock',
});

/** guest RAM in KiB as -m and the memfd backend give it; they must agree */
function ramKiB(argv: string[]): number {
  const m = argv[argv.indexOf('-m') + 1];
  const backend = /memory-backend-memfd,id=mem,size=([^,]+),share=on/.exec(argv.join(' '))?.[1];
  expect(backend).toBe(m);
  const [, n, unit] = /^(\d+)([KM])$/.exec(m) ?? [];
  return Number(n) * (unit === 'M' ? 1024 : 1);
}

describe('guest RAM size on the QEMU command line', () => {
  it('under TCG is 8 KiB off the 256 KiB grain, so QEMU < 9.0 syncs the dirty bitmap page by page and resets the TLBs', () => {
    const k = ramKiB(qemuArgv(spec('tcg')));
    expect(k).toBe(256 * 1024 + TCG_RAM_PAD_KIB);
    // the fast path of cpu_physical_memory_sync_dirty_bitmap needs a whole number of 64 pages
    expect(k % 256).not.toBe(0);
    // QEMU rounds RAM up to 8 KiB: the pad must survive that
    expect(k % 8).toBe(0);
  });

  it('under KVM is exactly what the config asked for', () => {
    expect(ramKiB(qemuArgv(spec('kvm')))).toBe(256 * 1024);
  });
});
