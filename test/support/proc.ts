// What the tests read from /proc: every process's open descriptors (proof that a stopped system
// left none behind) and a process's confinement as the kernel reports it.
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';

/** The confinement fields of /proc/PID/status (PID may be 'self'). */
export function procStatus(pid: number | 'self'): { capEff?: string; capBnd?: string; nnp?: string; seccomp?: string } {
  const st = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (k: string) => new RegExp(`^${k}:\\s*(\\S+)`, 'm').exec(st)?.[1];
  return { capEff: field('CapEff'), capBnd: field('CapBnd'), nnp: field('NoNewPrivs'), seccomp: field('Seccomp') };
}

/** Each open descriptor of each process as { pid, target }, target being /proc/PID/fd/N's link. */
export function openFdTargets(): { pid: string; target: string }[] {
  const out: { pid: string; target: string }[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // gone, or not ours to read
    }
    for (const fd of fds) {
      try {
        out.push({ pid, target: readlinkSync(`/proc/${pid}/fd/${fd}`) });
      } catch {
        /* raced with exit */
      }
    }
  }
  return out;
}

/** Processes whose command line holds `needle` (a state or work directory), as "pid: command". */
export function processesMentioning(needle: string): string[] {
  const out: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cmd.includes(needle)) out.push(`${pid}: ${cmd.slice(0, 120)}`);
    } catch {
      /* gone */
    }
  }
  return out;
}
