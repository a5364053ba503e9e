// What every process on the host holds open, read from /proc: the tests' way of proving that a
// system left no descriptor behind (a log, a memfd) once it is down.
import { readdirSync, readlinkSync } from 'node:fs';

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
