// `ringside top`: the domains with live CPU and memory use, read from /proc for each domain's
// process, refreshed in place.
import type { DomainRow } from '../control/wire.js';
import { control } from './control.js';
import { table } from './table.js';
import { CLOCK_TICKS, cpuTicks, rssKiB } from '../tools/proc.js';

export interface TopSample {
  domains: (DomainRow & { cpuPercent: number | null; rssMiB: number | null })[];
}

export async function topSamples(stateDir: string, intervalMs: number, iterations: number, each: (s: TopSample) => void): Promise<void> {
  let prev = new Map<number, number>();
  let prevAt = Date.now();
  for (let i = 0; i < iterations; i++) {
    const rows = (await control(stateDir, { op: 'list' })).domains ?? [];
    const now = Date.now();
    const next = new Map<number, number>();
    const domains = rows.map((d) => {
      const t = d.pid ? cpuTicks(d.pid) : null;
      if (d.pid && t !== null) next.set(d.pid, t);
      const before = d.pid ? prev.get(d.pid) : undefined;
      const cpuPercent = t !== null && before !== undefined ? ((t - before) / CLOCK_TICKS / ((now - prevAt) / 1000)) * 100 : null;
      const rss = d.pid ? rssKiB(d.pid) : null;
      return { ...d, cpuPercent, rssMiB: rss === null ? null : rss / 1024 };
    });
    if (i > 0 || iterations === 1) each({ domains });
    prev = next;
    prevAt = now;
    if (i + 1 < iterations) await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export function formatTop(s: TopSample): string {
  return table(
    ['Name', 'ID', 'Role', 'State', 'CPU%', 'RSS(MiB)', 'Grants', 'Evtchns', 'Restarts'],
    s.domains.map((d) => [d.name, d.domid, d.role, d.state, d.cpuPercent === null ? '-' : d.cpuPercent.toFixed(1), d.rssMiB === null ? '-' : d.rssMiB.toFixed(1), d.grantsMapped, d.evtchns, d.restarts]),
    new Set([1, 4, 5, 6, 7, 8]),
  );
}
