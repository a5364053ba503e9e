// Real NBD tools run asynchronously (the server under test lives in this event loop).

import { run, type Run as ToolResult } from '../../support/run.js';
export { run, type ToolResult };

export const nbdUri = (sock: string) => `nbd+unix:///?socket=${sock}`;

export function qemuIo(sock: string, cmds: string[]): Promise<ToolResult> {
  return run('qemu-io', ['-f', 'raw', nbdUri(sock), ...cmds.flatMap((c) => ['-c', c])]);
}

export interface FioVerify {
  code: number;
  errors: number;
  output: string;
}

/** fio random writes with crc32c verification; `errors` sums fio's error counts */
export async function fioVerify(sock: string, opts: { bs: string; size: string; iodepth: number; offset?: string; name?: string }): Promise<FioVerify> {
  const r = await run('fio', [
    `--name=${opts.name ?? 'verify'}`, '--ioengine=nbd', `--uri=${nbdUri(sock)}`, '--rw=randwrite', `--bs=${opts.bs}`,
    `--size=${opts.size}`, `--offset=${opts.offset ?? '0'}`, `--iodepth=${opts.iodepth}`, '--verify=crc32c', '--do_verify=1',
    '--verify_fatal=1', '--verify_state_save=0', '--output-format=json',
  ], 300_000);
  let errors = 0;
  try {
    const j = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as { jobs: { error: number; total_err?: number }[] };
    for (const job of j.jobs) errors += (job.error ?? 0) + (job.total_err ?? 0);
  } catch {
    errors = -1;
  }
  return { code: r.code, errors, output: r.stdout + r.stderr };
}
