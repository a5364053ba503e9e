// What /proc says of one process: its CPU time and resident memory, for `ringside top` and the
// benches' per-domain split. A process that is gone gives null, never an error.
import { readFileSync } from 'node:fs';

/** USER_HZ on Linux: the unit of /proc/PID/stat's times */
export const CLOCK_TICKS = 100;

/** utime + stime of `pid` (all its threads), in clock ticks */
export function cpuTicks(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // the command name may hold spaces and parentheses: fields are counted from the last ')'
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]);
  } catch {
    return null;
  }
}

export function rssKiB(pid: number): number | null {
  try {
    const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}
