// Presenting a ring bench report: a text table with ratios to the C peer, and a self-contained HTML
// page with inline SVG plots (no scripts, fonts or images from anywhere else).

import { histBucketRange, histTotal } from './hist.js';
import type { RingBenchGoals, RingBenchReport, RingBenchRow } from './bench.js';

export function fmtRate(r: number): string {
  if (r >= 1e9) return `${(r / 1e9).toFixed(2)}G`;
  if (r >= 1e6) return `${(r / 1e6).toFixed(2)}M`;
  if (r >= 1e3) return `${(r / 1e3).toFixed(1)}k`;
  return r.toFixed(0);
}

export function fmtNs(ns: number | null): string {
  if (ns === null) return '-';
  if (ns >= 1e9) return `${(ns / 1e9).toFixed(2)}s`;
  if (ns >= 1e6) return `${(ns / 1e6).toFixed(2)}ms`;
  if (ns >= 1e3) return `${(ns / 1e3).toFixed(2)}us`;
  return `${Math.round(ns)}ns`;
}

function fmtRatio(r: number | null): string {
  if (r === null) return '-';
  return r >= 10 ? `${r.toFixed(0)}x` : `${r.toFixed(2)}x`;
}

function fmtPer(v: number | null): string {
  if (v === null) return '-';
  return v === 0 ? '0' : v < 0.001 ? v.toExponential(1) : v.toFixed(3);
}

function ringCol(r: RingBenchRow): string {
  return r.impl === 'ts' || r.impl === 'c' ? `o${r.order}/${r.slots}` : `win ${r.slots}`;
}

const IMPL_NAMES: Record<RingBenchRow['impl'], string> = {
  ts: 'ts ring',
  c: 'c ring.h',
  postmessage: 'postMessage',
  unix: 'unix sock',
  'process-send': 'process.send',
};

function note(r: RingBenchRow): string {
  const n: string[] = [];
  if (r.errors > 0) n.push(`${r.errors} errors`);
  if (r.starved) n.push('starved');
  return n.join(', ');
}

function table(header: string[], rows: string[][], rightAlign: boolean[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (rightAlign[i] ? c.padStart(widths[i]) : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

export interface GoalLine {
  name: string;
  value: number | null;
  goal: string;
  met: boolean | null;
}

export function goalLines(g: RingBenchGoals): GoalLine[] {
  const ge = (v: number | null, min: number): boolean | null => (v === null ? null : v >= min);
  return [
    { name: 'TS ring / C ring.h (busy-poll, 1-page ring)', value: g.tsOverC, goal: '>= 0.25x (aim 0.5x)', met: ge(g.tsOverC, 0.25) },
    ...g.tsOverCByBatch
      .filter((b) => b.batch !== 0)
      .map((b) => ({ name: `  same, batch ${b.batch}`, value: b.ratio, goal: '', met: null })),
    { name: 'TS ring / worker postMessage', value: g.tsOverPostMessage, goal: '>= 10x', met: ge(g.tsOverPostMessage, 10) },
    { name: 'TS ring / corked Unix socket', value: g.tsOverUnix, goal: '>= 2x', met: ge(g.tsOverUnix, 2) },
    { name: 'TS ring / process.send', value: g.tsOverProcessSend, goal: '', met: null },
    {
      name: 'TS ring eventfd notifications per request',
      value: g.tsEventfdNotifiesPerRequest,
      goal: 'well below 1',
      met: g.tsEventfdNotifiesPerRequest === null ? null : g.tsEventfdNotifiesPerRequest < 0.5,
    },
  ];
}

export function formatRingBenchTable(report: RingBenchReport): string {
  const header = ['impl', 'ring', 'mode', 'batch', 'q', 'data', 'round trips/s', 'mean', 'MB/s', 'p50', 'p99', 'p99.9', 'notif/req', 'req/push', 'vs C', 'note'];
  const right = [false, false, false, true, true, true, true, true, true, true, true, true, true, true, true, false];
  const isRing = (r: RingBenchRow): boolean => r.impl === 'ts' || r.impl === 'c';
  const rows = report.rows.map((r) => [
    IMPL_NAMES[r.impl],
    ringCol(r),
    isRing(r) ? r.mode : '-',
    isRing(r) ? (r.batch === 0 ? 'full' : String(r.batch)) : '-',
    isRing(r) ? String(r.queues) : '-',
    r.payload > 0 ? `${r.payload / 1024}K` : '-',
    fmtRate(r.rate),
    fmtRate(r.meanRate),
    r.mbps === null ? '-' : r.mbps.toFixed(0),
    fmtNs(r.p50Ns),
    fmtNs(r.p99Ns),
    fmtNs(r.p999Ns),
    fmtPer(r.notifiesPerRequest),
    r.requestsPerPush === null ? '-' : r.requestsPerPush.toFixed(1),
    fmtRatio(r.ratioToC),
    note(r),
  ]);
  const out = [table(header, rows, right), ''];
  out.push('Goals');
  for (const g of goalLines(report.goals)) {
    const v = g.name.includes('per request') ? fmtPer(g.value) : fmtRatio(g.value);
    const verdict = g.met === null ? '' : g.met ? 'met' : 'NOT met';
    out.push(`  ${g.name.padEnd(46)} ${v.padStart(8)}  ${g.goal.padEnd(20)} ${verdict}`.trimEnd());
  }
  out.push('');
  out.push(
    `${report.host.cpus} CPU ${report.host.cpuModel}, node ${report.host.node}; ${report.options.durationMs} ms per run after ${report.options.warmupMs} ms warm-up; ` +
      `latency sampled on 1 request in 64; wall ${(report.wallMs / 1000).toFixed(1)} s`,
    'round trips/s: median over 10 ms windows (the rate while both peers had a CPU); mean: over the whole run; vs C: round trips/s over the C peer\'s in the same shape',
  );
  if (report.cPeer) {
    out.push(`C peer: ${report.cPeer.source} built against ${report.cPeer.headers.join(', ')}`);
    out.push(
      report.options.cRelax === 'pause'
        ? 'C busy-poll loops use PAUSE (--c-relax pause)'
        : 'C busy-poll loops spin without PAUSE, as JavaScript must (--c-relax pause to change)',
    );
  }
  if (report.rows.some((r) => r.starved)) {
    out.push('starved: every attempt waited on a scheduler timeslice (the host ran both peers on one CPU); that figure measures the host');
  }
  return out.join('\n');
}

// ---------------------------------------------------------------- HTML

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

const COLORS: Record<RingBenchRow['impl'], string> = {
  ts: '#2f6fdf',
  c: '#555555',
  postmessage: '#d9822b',
  unix: '#2a9d62',
  'process-send': '#b8475a',
};

interface Series {
  name: string;
  color: string;
  values: (number | null)[];
}

function niceMax(v: number): number {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** grouped vertical bars; `log` uses a log10 axis (values spanning decades) */
export function barChart(title: string, groups: string[], series: Series[], unit: string, log = false): string {
  const W = 720;
  const H = 300;
  const L = 70;
  const R = 16;
  const T = 34;
  const B = 58;
  const all = series.flatMap((s) => s.values.filter((v): v is number => v !== null && v > 0));
  const vmax = all.length ? Math.max(...all) : 1;
  const vmin = all.length ? Math.min(...all) : 1;
  const lo = log ? 10 ** Math.floor(Math.log10(vmin)) : 0;
  const hi = log ? 10 ** Math.ceil(Math.log10(vmax)) : niceMax(vmax);
  const y = (v: number): number => {
    const f = log ? (Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo) || 1) : v / hi;
    return T + (H - T - B) * (1 - f);
  };
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(title)}">`);
  parts.push(`<text x="${W / 2}" y="20" text-anchor="middle" font-size="15" font-weight="600">${esc(title)}</text>`);
  const ticks: number[] = [];
  if (log) for (let v = lo; v <= hi * 1.0001; v *= 10) ticks.push(v);
  else for (let k = 0; k <= 5; k++) ticks.push((hi * k) / 5);
  for (const t of ticks) {
    const yy = log && t <= 0 ? H - B : y(t || (log ? lo : 0));
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${yy.toFixed(1)}" y2="${yy.toFixed(1)}" stroke="#ddd"/>`);
    parts.push(`<text x="${L - 6}" y="${(yy + 4).toFixed(1)}" text-anchor="end" font-size="11">${esc(fmtRate(t))}</text>`);
  }
  parts.push(`<text x="14" y="${(T + H - B) / 2}" font-size="11" transform="rotate(-90 14 ${(T + H - B) / 2})" text-anchor="middle">${esc(unit)}${log ? ' (log)' : ''}</text>`);
  const gw = (W - L - R) / Math.max(1, groups.length);
  const bw = Math.min(40, (gw * 0.8) / Math.max(1, series.length));
  groups.forEach((g, gi) => {
    const gx = L + gi * gw + (gw - bw * series.length) / 2;
    series.forEach((s, si) => {
      const v = s.values[gi];
      if (v === null || v === undefined || v <= 0) return;
      const yy = y(v);
      const x = gx + si * bw;
      parts.push(
        `<rect x="${x.toFixed(1)}" y="${yy.toFixed(1)}" width="${(bw - 2).toFixed(1)}" height="${(H - B - yy).toFixed(1)}" fill="${s.color}"><title>${esc(`${s.name} ${g}: ${fmtRate(v)} ${unit}`)}</title></rect>`,
      );
      parts.push(`<text x="${(x + bw / 2 - 1).toFixed(1)}" y="${(yy - 3).toFixed(1)}" text-anchor="middle" font-size="9">${esc(fmtRate(v))}</text>`);
    });
    parts.push(`<text x="${(L + gi * gw + gw / 2).toFixed(1)}" y="${H - B + 16}" text-anchor="middle" font-size="11">${esc(g)}</text>`);
  });
  parts.push(`<line x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}" stroke="#333"/>`);
  series.forEach((s, si) => {
    const x = L + si * 130;
    parts.push(`<rect x="${x}" y="${H - 20}" width="12" height="12" fill="${s.color}"/><text x="${x + 16}" y="${H - 10}" font-size="11">${esc(s.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('');
}

interface CdfSeries {
  name: string;
  color: string;
  hist: [number, number][];
}

/**
 * Latency by percentile: log10 ns on x, and on y the "nines" (-log10(1 - p)), so p99 and p99.9 get as
 * much room as the median does.
 */
export function cdfChart(title: string, series: CdfSeries[]): string {
  const W = 720;
  const H = 350;
  const L = 56;
  const R = 44;
  const T = 34;
  const B = 100;
  const NINES = 4;
  const usable = series.filter((s) => histTotal(s.hist) > 0);
  let lo = Infinity;
  let hi = 0;
  for (const s of usable) {
    for (const [idx] of s.hist) {
      const [a, b] = histBucketRange(idx);
      lo = Math.min(lo, Math.max(1, a));
      hi = Math.max(hi, b);
    }
  }
  if (!Number.isFinite(lo)) {
    lo = 100;
    hi = 1e6;
  }
  const lx0 = Math.floor(Math.log10(lo));
  const lx1 = Math.max(lx0 + 1, Math.ceil(Math.log10(hi)));
  const x = (ns: number): number => L + ((W - L - R) * (Math.log10(Math.max(ns, 1)) - lx0)) / (lx1 - lx0);
  const y = (f: number): number => {
    const nines = f >= 1 ? NINES : Math.min(NINES, -Math.log10(1 - f));
    return T + (H - T - B) * (1 - nines / NINES);
  };
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(title)}">`);
  parts.push(`<text x="${W / 2}" y="20" text-anchor="middle" font-size="15" font-weight="600">${esc(title)}</text>`);
  for (let e = lx0; e <= lx1; e++) {
    const xx = x(10 ** e);
    parts.push(`<line x1="${xx.toFixed(1)}" x2="${xx.toFixed(1)}" y1="${T}" y2="${H - B}" stroke="#ddd"/>`);
    parts.push(`<text x="${xx.toFixed(1)}" y="${H - B + 15}" text-anchor="middle" font-size="11">${esc(fmtNs(10 ** e))}</text>`);
  }
  for (const [f, label] of [
    [0, 'p0'],
    [0.9, 'p90'],
    [0.99, 'p99'],
    [0.999, 'p99.9'],
    [0.9999, 'p99.99'],
  ] as const) {
    const yy = y(f);
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${yy.toFixed(1)}" y2="${yy.toFixed(1)}" stroke="#eee"/>`);
    parts.push(`<text x="${L - 6}" y="${(yy + 4).toFixed(1)}" text-anchor="end" font-size="11">${label}</text>`);
  }
  const y50 = y(0.5);
  parts.push(`<line x1="${L}" x2="${W - R}" y1="${y50.toFixed(1)}" y2="${y50.toFixed(1)}" stroke="#ccc" stroke-dasharray="4 3"/>`);
  parts.push(`<text x="${L - 6}" y="${(y50 + 4).toFixed(1)}" text-anchor="end" font-size="11">p50</text>`);
  usable.forEach((s) => {
    const total = histTotal(s.hist);
    const sorted = [...s.hist].sort((a, b) => a[0] - b[0]);
    let acc = 0;
    const pts: string[] = [];
    for (const [idx, c] of sorted) {
      const [a, b] = histBucketRange(idx);
      pts.push(`${x(Math.max(a, 1)).toFixed(1)},${y(acc / total).toFixed(1)}`);
      acc += c;
      pts.push(`${x(b).toFixed(1)},${y(acc / total).toFixed(1)}`);
    }
    parts.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${pts.join(' ')}"><title>${esc(s.name)}</title></polyline>`);
  });
  parts.push(`<text x="${(L + W - R) / 2}" y="${H - B + 32}" text-anchor="middle" font-size="11">round-trip latency (log scale)</text>`);
  usable.forEach((s, i) => {
    const lx = L + (i % 3) * 220;
    const ly = H - B + 54 + Math.floor(i / 3) * 16;
    parts.push(`<rect x="${lx}" y="${ly - 6}" width="12" height="4" fill="${s.color}"/><text x="${lx + 16}" y="${ly}" font-size="11">${esc(s.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('');
}

function pick(rows: RingBenchRow[], impl: RingBenchRow['impl'], f: (r: RingBenchRow) => boolean): RingBenchRow | undefined {
  return rows.find((r) => r.impl === impl && f(r));
}

export function ringBenchHtml(report: RingBenchReport): string {
  const rows = report.rows;
  const ringRows = rows.filter((r) => r.impl === 'ts' || r.impl === 'c');
  const lo = ringRows.length ? Math.min(...ringRows.map((r) => r.order)) : 0;
  const plain = (r: RingBenchRow): boolean => r.batch === 0 && r.queues === 1 && r.payload === 0;
  const charts: string[] = [];
  const impls: ('ts' | 'c')[] = ['ts', 'c'];
  const orders = [...new Set(ringRows.filter((r) => r.mode === 'poll' && plain(r)).map((r) => r.order))].sort((a, b) => a - b);
  if (orders.length) {
    charts.push(
      barChart(
        'Round trips/s by ring order (busy-poll)',
        orders.map((o) => `order ${o} (${ringRows.find((r) => r.order === o)?.slots ?? '?'} slots)`),
        impls.map((impl) => ({ name: IMPL_NAMES[impl], color: COLORS[impl], values: orders.map((o) => pick(rows, impl, (r) => r.order === o && r.mode === 'poll' && plain(r))?.rate ?? null) })),
        'round trips/s',
      ),
    );
  }
  const modeKeys = [...new Set(ringRows.filter((r) => plain(r)).map((r) => `${r.mode}|${r.order}`))];
  if (modeKeys.length > 1) {
    charts.push(
      barChart(
        'Round trips/s by notification mode',
        modeKeys.map((k) => k.replace('|', ' o')),
        impls.map((impl) => ({
          name: IMPL_NAMES[impl],
          color: COLORS[impl],
          values: modeKeys.map((k) => pick(rows, impl, (r) => `${r.mode}|${r.order}` === k && plain(r))?.rate ?? null),
        })),
        'round trips/s',
        true,
      ),
    );
  }
  const variants = ringRows.filter((r) => r.impl === 'ts' && r.order === lo && !plain(r));
  if (variants.length) {
    const label = (r: RingBenchRow): string => `${r.mode} b${r.batch || 'full'} q${r.queues}${r.payload ? ' 4K' : ''}`;
    const shapeOf = (r: RingBenchRow): string => `${r.mode}|${r.batch}|${r.queues}|${r.payload}`;
    charts.push(
      barChart(
        `Batch size, queue pairs and 4 KiB payload (order ${lo})`,
        variants.map(label),
        impls.map((impl) => ({ name: IMPL_NAMES[impl], color: COLORS[impl], values: variants.map((v) => pick(rows, impl, (r) => r.order === lo && shapeOf(r) === shapeOf(v))?.rate ?? null) })),
        'round trips/s',
        true,
      ),
    );
  }
  const head = (impl: RingBenchRow['impl'], payload: number): RingBenchRow | undefined =>
    impl === 'ts' || impl === 'c' ? pick(rows, impl, (r) => r.order === lo && r.mode === 'poll' && r.batch === 0 && r.queues === 1 && r.payload === payload) : pick(rows, impl, (r) => r.payload === payload);
  const all: RingBenchRow['impl'][] = ['ts', 'c', 'postmessage', 'unix', 'process-send'];
  const present = all.filter((impl) => head(impl, 0) !== undefined);
  if (present.length > 1) {
    charts.push(
      barChart(
        'Shared ring vs Node transports (same requests, same window)',
        ['64 B-class requests', '4 KiB payload'],
        present.map((impl) => ({ name: IMPL_NAMES[impl], color: COLORS[impl], values: [head(impl, 0)?.rate ?? null, head(impl, 4096)?.rate ?? null] })),
        'round trips/s',
        true,
      ),
    );
    charts.push(
      cdfChart(
        'Latency distribution (busy-poll ring, Node transports)',
        present.flatMap((impl) => {
          const r = head(impl, 0);
          return r ? [{ name: `${IMPL_NAMES[impl]} p50 ${fmtNs(r.p50Ns)}`, color: COLORS[impl], hist: r.hist }] : [];
        }),
      ),
    );
  }
  const evTs = pick(rows, 'ts', (r) => r.mode !== 'poll' && plain(r) && r.order === lo);
  const pollTs = head('ts', 0);
  if (evTs && pollTs) {
    const futexTs = pick(rows, 'ts', (r) => r.mode === 'futex' && plain(r) && r.order === lo);
    const evfd = pick(rows, 'ts', (r) => r.mode === 'eventfd' && plain(r) && r.order === lo);
    const series: CdfSeries[] = [{ name: 'ts busy-poll', color: COLORS.ts, hist: pollTs.hist }];
    if (evfd) series.push({ name: 'ts eventfd', color: '#8e44ad', hist: evfd.hist });
    if (futexTs) series.push({ name: 'ts spin-then-futex', color: '#16a085', hist: futexTs.hist });
    charts.push(cdfChart(`Latency by notification mode (TS ring, order ${lo})`, series));
  }
  const tableText = formatRingBenchTable(report);
  const goals = goalLines(report.goals)
    .map((g) => {
      const v = g.name.includes('per request') ? fmtPer(g.value) : fmtRatio(g.value);
      const cls = g.met === null ? '' : g.met ? 'met' : 'miss';
      return `<tr><td>${esc(g.name)}</td><td class="num">${esc(v)}</td><td>${esc(g.goal)}</td><td class="${cls}">${g.met === null ? '' : g.met ? 'met' : 'not met'}</td></tr>`;
    })
    .join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ringside bench ring</title>
<style>
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}
pre{background:#f6f6f6;padding:12px;overflow-x:auto;font-size:12px}
table.goals td{padding:2px 10px}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.met{color:#2a9d62;font-weight:600}td.miss{color:#b8475a;font-weight:600}
svg{display:block;margin:16px 0;font-family:system-ui,sans-serif}
</style></head><body>
<h1>ringside bench ring</h1>
<p>${esc(report.startedAt)} &middot; ${report.host.cpus} CPU ${esc(report.host.cpuModel)} &middot; node ${esc(report.host.node)} &middot; ${report.options.durationMs} ms per run &middot; wall ${(report.wallMs / 1000).toFixed(1)} s</p>
<h2>Goals</h2>
<table class="goals">${goals}</table>
${charts.join('\n')}
<h2>All figures</h2>
<pre>${esc(tableText)}</pre>
</body></html>
`;
}
