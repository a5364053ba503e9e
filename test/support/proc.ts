// What the tests read from /proc: every process's open descriptors (proof that a stopped system
// left none behind) and a process's confinement as the kernel reports it.
import { readFileSync, readdirSync, readlinkSync, statSync } from 'node:fs';

/** The confinement fields of /proc/PID/status (PID may be 'self'). */
export function procStatus(pid: number | 'self'): { capEff?: string; capBnd?: string; nnp?: string; seccomp?: string } {
  const st = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (k: string) => new RegExp(`^${k}:\\s*(\\S+)`, 'm').exec(st)?.[1];
  return { capEff: field('CapEff'), capBnd: field('CapBnd'), nnp: field('NoNewPrivs'), seccomp: field('Seccomp') };
}

/** Each open descriptor of each process as { pid, target }, target being /proc/PID/fd/N's link. */
export function openFdTargets(): { pid: string; fd: string; target: string }[] {
  const out: { pid: string; fd: string; target: string }[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // gone, or not ours to read
    }
    for (const fd of fds) {
      try {
        out.push({ pid, fd, target: readlinkSync(`/proc/${pid}/fd/${fd}`) });
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

/** The inode of every memfd the given processes hold: what "this system's memfds" means exactly. */
export function memfdInodes(pids: readonly number[]): Set<number> {
  const out = new Set<number>();
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('/memfd:')) out.add(statSync(`/proc/${pid}/fd/${fd}`).ino);
      } catch {
        /* raced with close or exit */
      }
    }
  }
  return out;
}

/**
 * Processes still holding one of `inodes`, as "pid:target". By inode, not by name, so another
 * ringside on the same machine (whose dom0 also has a Domain-0-gnttab) is not taken for a leak.
 */
export function holdersOf(inodes: ReadonlySet<number>): string[] {
  const out: string[] = [];
  for (const { pid, target, fd } of openFdTargets()) {
    if (!target.startsWith('/memfd:')) continue;
    try {
      if (inodes.has(statSync(`/proc/${pid}/fd/${fd}`).ino)) out.push(`${pid}:${target}`);
    } catch {
      /* raced with exit */
    }
  }
  return out;
}
