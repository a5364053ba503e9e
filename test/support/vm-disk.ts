// Guest-side disk workloads shared by the VM tests: a pattern written in the guest and read back
// through the device and from the host's side of the medium, and fio with crc32c verification.
import { expect } from 'vitest';
import { mkdtempSync, openSync, readSync, closeSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { VmConsole } from './vm.js';

export const DISK_MIB = 64;
const PATTERN_OFFSET = 32 << 20;
const PATTERN_LINES = 32768; // 32-byte lines: 1 MiB
const patternLine = (i: number) => `ringside-vm line ${String(i).padStart(14, '0')}\n`;
/** Shell that writes the 1 MiB test pattern to /tmp/pat in the guest. */
export const GUEST_PATTERN = `awk 'BEGIN{for(i=0;i<${PATTERN_LINES};i++) printf "ringside-vm line %014d\\n", i}' > /tmp/pat`;
const FIO = 'fio --name=v --filename=/dev/vda --rw=randwrite --bs=4k --size=16M --verify=crc32c --direct=1 --ioengine=psync --output-format=json';

/** A directory with a sparse DISK_MIB image in it; `cleanups` gets its removal. */
export function scratch(cleanups: (() => Promise<void> | void)[]): { dir: string; disk: string } {
  const dir = mkdtempSync(join(tmpdir(), 'rs-vmt-'));
  const disk = join(dir, 'disk.img');
  writeFileSync(disk, '');
  truncateSync(disk, DISK_MIB << 20);
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return { dir, disk };
}

interface FioJson {
  jobs: { error: number; write: { io_kbytes: number; iops: number }; read: { io_kbytes: number } }[];
}

/** The guest half: the disk is there, a pattern goes to it, fio writes and verifies 16 MiB. */
export async function exerciseDisk(vm: { console: VmConsole }): Promise<void> {
  const c = vm.console;
  const dev = await c.run('cat /sys/block/vda/size && ls -l /dev/vda');
  expect(dev.code, dev.output).toBe(0);
  expect(Number(dev.output.split('\n')[0]), 'vda size in sectors').toBe((DISK_MIB << 20) / 512);

  const pat = await c.run(`${GUEST_PATTERN} && dd if=/tmp/pat of=/dev/vda bs=65536 seek=${PATTERN_OFFSET / 65536} conv=fsync`, { timeoutMs: 120_000 });
  expect(pat.code, pat.output).toBe(0);
  // Read back through the device, not the page cache.
  const back = await c.run(`echo 3 > /proc/sys/vm/drop_caches && dd if=/dev/vda bs=65536 skip=${PATTERN_OFFSET / 65536} count=16 2>/dev/null | cmp - /tmp/pat`, { timeoutMs: 120_000 });
  expect(back.code, back.output).toBe(0);

  const started = Date.now();
  const fio = await c.run(FIO, { timeoutMs: 600_000 });
  expect(fio.code, `fio failed in the guest:\n${fio.output}`).toBe(0);
  const json = JSON.parse(fio.output.slice(fio.output.indexOf('{'), fio.output.lastIndexOf('}') + 1)) as FioJson;
  const job = json.jobs[0];
  expect(job.error, 'fio job error').toBe(0);
  expect(job.write.io_kbytes, 'KiB written').toBe(16384);
  expect(job.read.io_kbytes, 'KiB read back to verify').toBe(16384);
  process.stderr.write(`fio randwrite 4k + crc32c verify of 16 MiB: 0 errors, ${Math.round(job.write.iops)} write IOPS under TCG, ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
}

/** The host half: the pattern the guest wrote is in the image file. */
export function expectPatternInImage(disk: string): void {
  const want = Buffer.from(Array.from({ length: PATTERN_LINES }, (_, i) => patternLine(i)).join(''));
  const got = Buffer.alloc(want.length);
  const fd = openSync(disk, 'r');
  try {
    readSync(fd, got, 0, got.length, PATTERN_OFFSET);
  } finally {
    closeSync(fd);
  }
  const at = got.findIndex((b, i) => b !== want[i]);
  expect(at, `first differing byte at ${PATTERN_OFFSET + at}: ${JSON.stringify(got.subarray(at, at + 32).toString())}`).toBe(-1);
}
