// `ringside bench ring` options: parsing (every bad value is named, with what is allowed) and the
// command body the CLI calls: progress on stderr, the table or JSON on stdout, optional HTML file.

import { writeFileSync } from 'node:fs';
import { MAX_RING_PAGE_ORDER } from '../../abi/sring.js';
import { RING_BENCH_DEFAULTS, RING_BENCH_IMPLS, runRingBench, type RingBenchImpl, type RingBenchOptions, type RingBenchReport } from './bench.js';
import { RING_MODES, type RingMode } from './protocol.js';
import { formatRingBenchTable, ringBenchHtml } from './report.js';

export const RING_BENCH_USAGE = `usage: ringside bench ring [options]

Two processes exchange blkif requests over a shared ring; the TypeScript ring is measured side by
side with a C peer built from Xen's ring.h and with Node transports, in one run.

  --orders LIST      ring page orders 0..${MAX_RING_PAGE_ORDER} for the busy-poll sweep (default 0,1,2,3,4)
  --modes LIST       poll, eventfd, futex (default all)
  --batches LIST     extra batch sizes, requests per push (default 1,8; "full" is always run)
  --queues LIST      queue pairs, 1..4 (default 1,2)
  --no-payload       skip the 4 KiB payload cases
  --baselines LIST   c, postmessage, unix, process-send, or none (default all)
  --duration MS      measured time per run (default ${RING_BENCH_DEFAULTS.durationMs})
  --warmup MS        warm-up per run (default ${RING_BENCH_DEFAULTS.warmupMs})
  --repeat N         runs per case, the median is kept (default ${RING_BENCH_DEFAULTS.repeat})
  --retries N        extra attempts for a run starved of CPU (default ${RING_BENCH_DEFAULTS.retries})
  --spin N           futex mode: idle polls before sleeping (default ${RING_BENCH_DEFAULTS.spin})
  --c-relax KIND     C busy-poll spin: none (like JS, default) or pause (x86 PAUSE)
  --quick            orders 0 and 4, 200 ms runs
  --cpu-prof DIR     write V8 CPU profiles of the TypeScript peers to DIR
  --json             print the report as JSON instead of the table
  --html FILE        also write a self-contained HTML report with plots
  -h, --help         this text`;

export class RingBenchArgError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RingBenchArgError';
  }
}

export interface RingBenchArgs {
  options: Partial<RingBenchOptions>;
  json: boolean;
  html: string | null;
  help: boolean;
}

function intIn(name: string, v: string, min: number, max: number): number {
  if (!/^\d+$/.test(v)) throw new RingBenchArgError(`${name}: "${v}" is not a whole number (expected ${min}..${max})`);
  const n = Number(v);
  if (n < min || n > max) throw new RingBenchArgError(`${name}: ${n} is outside ${min}..${max}`);
  return n;
}

function list(name: string, v: string): string[] {
  const items = v
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (items.length === 0) throw new RingBenchArgError(`${name}: empty list`);
  return items;
}

export function parseRingBenchArgs(argv: readonly string[]): RingBenchArgs {
  const options: Partial<RingBenchOptions> = {};
  let json = false;
  let html: string | null = null;
  let help = false;
  const needsValue = new Set(['--orders', '--modes', '--batches', '--queues', '--baselines', '--duration', '--warmup', '--repeat', '--retries', '--spin', '--c-relax', '--cpu-prof', '--html', '--peer', '--cc']);
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i];
    let value: string | undefined;
    const eq = arg.indexOf('=');
    if (arg.startsWith('--') && eq > 0) {
      value = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    if (needsValue.has(arg) && value === undefined) {
      value = argv[++i];
      if (value === undefined) throw new RingBenchArgError(`${arg} needs a value (see --help)`);
    } else if (!needsValue.has(arg) && value !== undefined) {
      throw new RingBenchArgError(`${arg} takes no value`);
    }
    const v = value ?? '';
    switch (arg) {
      case '--orders':
        options.orders = list(arg, v).map((s) => intIn(arg, s, 0, MAX_RING_PAGE_ORDER));
        break;
      case '--modes':
        options.modes = list(arg, v).map((s) => {
          if (!RING_MODES.includes(s as RingMode)) throw new RingBenchArgError(`--modes: unknown mode "${s}" (expected ${RING_MODES.join(', ')})`);
          return s as RingMode;
        });
        break;
      case '--batches':
        options.batches = list(arg, v)
          .filter((s) => s !== 'full')
          .map((s) => intIn(arg, s, 1, 1 << 16));
        break;
      case '--queues':
        options.queues = list(arg, v).map((s) => intIn(arg, s, 1, 4));
        break;
      case '--no-payload':
        options.payload = false;
        break;
      case '--baselines': {
        const items = list(arg, v);
        if (items.length === 1 && items[0] === 'none') {
          options.baselines = [];
          break;
        }
        options.baselines = items.map((s) => {
          if (s === 'ts' || !RING_BENCH_IMPLS.includes(s as RingBenchImpl)) {
            throw new RingBenchArgError(`--baselines: unknown baseline "${s}" (expected c, postmessage, unix, process-send or none)`);
          }
          return s as Exclude<RingBenchImpl, 'ts'>;
        });
        break;
      }
      case '--duration':
        options.durationMs = intIn(arg, v, 20, 600_000);
        break;
      case '--warmup':
        options.warmupMs = intIn(arg, v, 0, 600_000);
        break;
      case '--repeat':
        options.repeat = intIn(arg, v, 1, 50);
        break;
      case '--retries':
        options.retries = intIn(arg, v, 0, 20);
        break;
      case '--spin':
        options.spin = intIn(arg, v, 1, 1 << 30);
        break;
      case '--c-relax':
        if (v !== 'none' && v !== 'pause') throw new RingBenchArgError(`--c-relax: "${v}" is not none or pause`);
        options.cRelax = v;
        break;
      case '--quick':
        options.orders ??= [0, 4];
        options.durationMs ??= 200;
        options.warmupMs ??= 60;
        break;
      case '--cpu-prof':
        options.cpuProf = v;
        break;
      case '--peer':
        options.peerScript = v;
        break;
      case '--cc':
        options.cc = v;
        break;
      case '--json':
        json = true;
        break;
      case '--html':
        if (v === '') throw new RingBenchArgError('--html needs a file name');
        html = v;
        break;
      case '-h':
      case '--help':
        help = true;
        break;
      default:
        throw new RingBenchArgError(`unknown option "${arg}" (see --help)`);
    }
  }
  return { options, json, html, help };
}

export interface RingBenchIo {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
}

const defaultIo: RingBenchIo = {
  stdout: (s) => process.stdout.write(s),
  stderr: (s) => process.stderr.write(s),
};

/** The whole `ringside bench ring` command; returns the exit code. */
export async function ringBenchMain(argv: readonly string[], io: RingBenchIo = defaultIo): Promise<number> {
  let args: RingBenchArgs;
  try {
    args = parseRingBenchArgs(argv);
  } catch (e) {
    if (e instanceof RingBenchArgError) {
      io.stderr(`ringside bench ring: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
  if (args.help) {
    io.stdout(RING_BENCH_USAGE + '\n');
    return 0;
  }
  let report: RingBenchReport;
  try {
    report = await runRingBench({
      ...args.options,
      onProgress: (p) => io.stderr(`[${String(p.index).padStart(2)}/${p.total}] ${p.message}\n`),
    });
  } catch (e) {
    io.stderr(`ringside bench ring: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
  io.stdout(args.json ? JSON.stringify(report, null, 2) + '\n' : formatRingBenchTable(report) + '\n');
  if (args.html !== null) {
    writeFileSync(args.html, ringBenchHtml(report));
    io.stderr(`wrote ${args.html}\n`);
  }
  return report.rows.some((r) => r.errors > 0) ? 1 : 0;
}
