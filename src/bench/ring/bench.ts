// The ring throughput lab's runner: plans the cases, starts the two peer processes of each (TS or C
// ring ends over memfd frames, or a Node transport), collects their results and computes the rows
// and ratios. Only the peers sit on the data path; this process waits on pipes.

import { spawn, type ChildProcess } from 'node:child_process';
import { cpus, tmpdir } from 'node:os';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { native } from '../../native/index.js';
import { XEN_PAGE_SIZE, ringBytes, ringSlots } from '../../abi/sring.js';
import { BLKIF_REQUEST_SIZE } from '../../abi/blkif.js';
import { buildCPeer, cHeaderDeps, cPeerSourcePath, findRepoFile } from './cpeer.js';
import { histQuantile, medianWindowRate } from './hist.js';
import { fmtNs, fmtRate } from './report.js';
import {
  BASELINE_KINDS,
  parsePeerResult,
  type BaselineKind,
  type BaselinePeerConfig,
  type PeerResult,
  type QueueFds,
  type RingMode,
  type RingPeerConfig,
} from './protocol.js';

export type RingBenchImpl = 'ts' | 'c' | BaselineKind;
export const RING_BENCH_IMPLS: readonly RingBenchImpl[] = ['ts', 'c', ...BASELINE_KINDS];

export interface RingBenchCase {
  impl: RingBenchImpl;
  /** ring page order (baselines: the in-flight window is that ring's slot count) */
  order: number;
  mode: RingMode;
  /** most requests per push; 0 = as many as the ring has free */
  batch: number;
  queues: number;
  /** bytes of data moved per request through its data page: 0 or 4096 */
  payload: number;
}

export interface RingBenchOptions {
  /** ring orders for the busy-poll sweep; notification modes run at the smallest and largest */
  orders: number[];
  modes: RingMode[];
  /** batch sizes besides "full" (0), run at the smallest order in busy-poll mode */
  batches: number[];
  queues: number[];
  /** also run the 4 KiB payload cases */
  payload: boolean;
  /** the comparisons to run besides the TS ring: 'c' and the Node transports */
  baselines: Exclude<RingBenchImpl, 'ts'>[];
  durationMs: number;
  warmupMs: number;
  /** runs per case; the median is reported */
  repeat: number;
  /**
   * extra attempts for a run whose peers were starved (p50 latency over 1 ms: on a small VM the
   * host sometimes runs both vCPUs on one physical CPU, and busy-polling peers then take turns by
   * timeslice); the best attempt is kept and the row is flagged if all were starved
   */
  retries: number;
  /** futex mode: idle polls before sleeping */
  spin: number;
  /**
   * how the C peer's busy-poll loop spins: 'none' (default) spins like JavaScript must, 'pause'
   * adds the x86 PAUSE a C spin loop normally has, which under KVM also lets pause-loop exiting
   * give the CPU to a preempted sibling vCPU: an edge on an overcommitted host that JS cannot have
   */
  cRelax: 'none' | 'pause';
  /** write V8 CPU profiles of the TS peers into this directory */
  cpuProf?: string;
  /** a prebuilt peer bundle (default: next to this module, or bundled from source with esbuild) */
  peerScript?: string;
  cc?: string;
  /** explicit cases instead of the plan derived from the options */
  cases?: RingBenchCase[];
  onProgress?: (p: RingBenchProgress) => void;
}

export interface RingBenchProgress {
  index: number;
  total: number;
  label: string;
  row?: RingBenchRow;
  message: string;
}

export interface RingBenchRow extends RingBenchCase {
  label: string;
  /** slots per ring (baselines: the window) */
  slots: number;
  roundTrips: number;
  elapsedNs: number;
  /**
   * round trips per second: the median of the ~10 ms windows' rates, i.e. the rate while both peers
   * had a CPU (a noisy host takes it away now and then); falls back to meanRate
   */
  rate: number;
  /** round trips over the whole measured time */
  meanRate: number;
  /** payload MB/s (10^6 bytes), null without payload */
  mbps: number | null;
  p50Ns: number | null;
  p99Ns: number | null;
  p999Ns: number | null;
  /** notifications sent per request (both directions); null where it means nothing */
  notifiesPerRequest: number | null;
  wakeupsPerRequest: number | null;
  /** frontend requests per publish of req_prod (how well batching amortises the index updates) */
  requestsPerPush: number | null;
  errors: number;
  /** every attempt was starved of CPU (see RingBenchOptions.retries): the figure is the host's, not the ring's */
  starved: boolean;
  attempts: number;
  /** rate over the C peer's rate for the comparable case */
  ratioToC: number | null;
  hist: [number, number][];
}

export interface RingBenchGoals {
  /** TS busy-poll 1-page ring / C peer (goal >= 0.25, aim 0.5) */
  tsOverC: number | null;
  /** TS busy-poll 1-page ring / postMessage (goal >= 10) */
  tsOverPostMessage: number | null;
  /** TS busy-poll 1-page ring / corked Unix socket (goal >= 2) */
  tsOverUnix: number | null;
  tsOverProcessSend: number | null;
  /** the same TS/C ratio at each batch size measured on the 1-page busy-poll ring ("full" = 0) */
  tsOverCByBatch: { batch: number; ratio: number }[];
  /** notifications per request of the TS ring with eventfd notification, 1-page ring */
  tsEventfdNotifiesPerRequest: number | null;
}

export interface RingBenchReport {
  version: 1;
  startedAt: string;
  wallMs: number;
  host: { cpus: number; cpuModel: string; node: string; platform: string };
  options: Omit<RingBenchOptions, 'onProgress' | 'cases'>;
  cPeer: { source: string; headers: string[] } | null;
  rows: RingBenchRow[];
  goals: RingBenchGoals;
}

export const RING_BENCH_DEFAULTS: Readonly<Omit<RingBenchOptions, 'onProgress' | 'cases' | 'cpuProf' | 'peerScript' | 'cc'>> = Object.freeze({
  orders: [0, 1, 2, 3, 4],
  modes: ['poll', 'eventfd', 'futex'] as RingMode[],
  batches: [1, 8],
  queues: [1, 2],
  payload: true,
  baselines: ['c', 'postmessage', 'unix', 'process-send'] as Exclude<RingBenchImpl, 'ts'>[],
  durationMs: 500,
  warmupMs: 150,
  repeat: 1,
  retries: 2,
  spin: 2000,
  cRelax: 'none' as const,
});

export function caseLabel(c: RingBenchCase): string {
  const size = c.payload > 0 ? ` ${c.payload / 1024}KiB` : '';
  if (c.impl !== 'ts' && c.impl !== 'c') return `${c.impl} window ${ringSlots(ringBytes(c.order), BLKIF_REQUEST_SIZE)}${size}`;
  return `${c.impl} order ${c.order} ${c.mode} batch ${c.batch || 'full'} q${c.queues}${size}`;
}

function sameShape(a: RingBenchCase, b: RingBenchCase): boolean {
  return a.order === b.order && a.mode === b.mode && a.batch === b.batch && a.queues === b.queues && a.payload === b.payload;
}

/** The cases a run covers, each TS case immediately followed by its C twin (same noise conditions). */
export function planRingBench(o: RingBenchOptions): RingBenchCase[] {
  if (o.cases) return o.cases;
  const orders = [...new Set(o.orders)].sort((a, b) => a - b);
  const lo = orders[0] ?? 0;
  const hi = orders[orders.length - 1] ?? 0;
  const withC = o.baselines.includes('c');
  const shapes: Omit<RingBenchCase, 'impl'>[] = [];
  const add = (s: Omit<RingBenchCase, 'impl'>): void => {
    if (!shapes.some((x) => sameShape({ ...x, impl: 'ts' }, { ...s, impl: 'ts' }))) shapes.push(s);
  };
  const base = { mode: 'poll' as RingMode, batch: 0, queues: 1, payload: 0 };
  if (o.modes.includes('poll')) for (const order of orders) add({ ...base, order });
  for (const mode of o.modes) {
    if (mode === 'poll') continue;
    add({ ...base, mode, order: lo });
    add({ ...base, mode, order: hi });
  }
  if (o.modes.includes('poll')) for (const batch of o.batches) if (batch > 0) add({ ...base, order: lo, batch });
  for (const queues of o.queues) {
    if (queues <= 1) continue;
    for (const mode of o.modes) if (mode !== 'futex') add({ ...base, mode, order: lo, queues });
  }
  if (o.payload) {
    if (o.modes.includes('poll')) add({ ...base, order: lo, payload: 4096 });
    for (const mode of o.modes) if (mode !== 'futex') add({ ...base, mode, order: lo, payload: 4096 });
  }
  // the Node transports run right after the ring case they are compared with, so that a host
  // whose speed drifts during the run skews the ratios as little as possible
  const transports = o.baselines.filter((b): b is BaselineKind => b !== 'c');
  const cases: RingBenchCase[] = [];
  for (const s of shapes) {
    cases.push({ ...s, impl: 'ts' });
    if (withC) cases.push({ ...s, impl: 'c' });
    const headline = s.order === lo && s.mode === 'poll' && s.batch === 0 && s.queues === 1;
    if (headline) for (const b of transports) cases.push({ ...s, impl: b });
  }
  if (!o.modes.includes('poll')) {
    for (const b of transports) {
      cases.push({ ...base, order: lo, impl: b });
      if (o.payload) cases.push({ ...base, order: lo, impl: b, payload: 4096 });
    }
  }
  return cases;
}

// ---------------------------------------------------------------- peer processes

let bundled: Promise<string> | null = null;

/**
 * The JS entry of the peer processes: an explicit path, $RINGSIDE_RING_PEER, a bundle next to this
 * module (dist/bench/ring-peer.js beside dist/ringside.js), or src/bench/ring/peer.ts bundled with
 * esbuild into node_modules/.cache/ringside/ (so the bundle still finds native/ by walking up).
 */
export async function resolvePeerScript(explicit?: string): Promise<string> {
  if (explicit) return explicit;
  const env = process.env.RINGSIDE_RING_PEER;
  if (env) return env;
  const here = dirname(fileURLToPath(import.meta.url));
  for (const c of [join(here, 'ring-peer.js'), join(here, 'bench', 'ring-peer.js')]) if (existsSync(c)) return c;
  const src = findRepoFile(join('src', 'bench', 'ring', 'peer.ts'));
  if (src === null) throw new Error('ring bench peer not found: build it (dist/bench/ring-peer.js) or set RINGSIDE_RING_PEER');
  bundled ??= bundlePeer(src);
  return bundled;
}

interface EsbuildLike {
  build(opts: Record<string, unknown>): Promise<unknown>;
}

async function bundlePeer(src: string): Promise<string> {
  const root = dirname(dirname(dirname(dirname(src))));
  const outDir = join(root, 'node_modules', '.cache', 'ringside');
  mkdirSync(outDir, { recursive: true });
  const out = join(outDir, 'ring-peer.js');
  const tmp = join(outDir, `ring-peer.${process.pid}.tmp.js`);
  // a computed specifier keeps a bundler from pulling esbuild into the CLI bundle
  const name = 'esbuild';
  const esbuild = (await import(name)) as EsbuildLike;
  await esbuild.build({
    entryPoints: [src],
    outfile: tmp,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    logLevel: 'warning',
    external: ['*.node'],
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  });
  renameSync(tmp, out);
  return out;
}

class Peer {
  readonly child: ChildProcess;
  readonly ready: Promise<void>;
  readonly exited: Promise<number | null>;
  stdout = '';
  stderr = '';

  constructor(
    readonly label: string,
    cmd: string,
    args: string[],
    fds: number[],
  ) {
    this.child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe', ...fds] });
    let readyResolve: () => void = () => {};
    let readyReject: (e: Error) => void = () => {};
    this.ready = new Promise((res, rej) => {
      readyResolve = res;
      readyReject = rej;
    });
    this.ready.catch(() => {});
    this.child.stdout?.setEncoding('utf8');
    this.child.stdout?.on('data', (d: string) => {
      this.stdout += d;
      if (/^ready$/m.test(this.stdout)) readyResolve();
    });
    this.child.stderr?.setEncoding('utf8');
    this.child.stderr?.on('data', (d: string) => {
      this.stderr += d;
    });
    this.exited = new Promise((resolve) => {
      this.child.once('error', (e) => {
        this.stderr += String(e);
        readyReject(new Error(`${label}: ${e.message}`));
        resolve(null);
      });
      this.child.once('close', (code) => {
        readyReject(new Error(`${label} exited (${code}) before it was ready: ${this.stderr.trim()}`));
        resolve(code);
      });
    });
  }

  go(): void {
    this.child.stdin?.write('go\n');
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }

  async result(): Promise<PeerResult> {
    const code = await this.exited;
    const line = this.stdout.split('\n').reverse().find((l) => l.startsWith('{'));
    if (code !== 0 || line === undefined) {
      throw new Error(`${this.label} failed (exit ${code}): ${this.stderr.trim() || this.stdout.trim() || 'no output'}`);
    }
    return parsePeerResult(line);
  }
}

interface RunContext {
  opts: RingBenchOptions;
  peerScript: string | null;
  cPeer: string | null;
  serial: number;
}

function nodeArgs(ctx: RunContext, name: string): string[] {
  const a: string[] = [];
  if (ctx.opts.cpuProf) a.push('--cpu-prof', '--cpu-prof-dir', ctx.opts.cpuProf, '--cpu-prof-name', `${name}.cpuprofile`);
  return a;
}

async function withDeadline<T>(p: Promise<T>, ms: number, peers: Peer[], what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      for (const peer of peers) peer.kill();
      reject(new Error(`${what} did not finish within ${Math.round(ms / 1000)} s`));
    }, ms);
  });
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

interface PairResult {
  front: PeerResult;
  back: PeerResult | null;
}

async function runRingCase(c: RingBenchCase, ctx: RunContext): Promise<PairResult> {
  const { opts } = ctx;
  const owned: number[] = [];
  const frontFds: number[] = [];
  const backFds: number[] = [];
  const frontQ: QueueFds[] = [];
  const backQ: QueueFds[] = [];
  const slots = ringSlots(ringBytes(c.order), BLKIF_REQUEST_SIZE);
  try {
    for (let q = 0; q < c.queues; q++) {
      const frames = Array.from({ length: 1 << c.order }, () => native.memfdCreate(`ring${q}`, XEN_PAGE_SIZE));
      owned.push(...frames);
      const data = c.payload > 0 ? native.memfdCreate(`data${q}`, slots * XEN_PAGE_SIZE) : -1;
      const toBack = c.mode === 'eventfd' ? native.eventfd() : -1;
      const toFront = c.mode === 'eventfd' ? native.eventfd() : -1;
      for (const fd of [data, toBack, toFront]) if (fd >= 0) owned.push(fd);
      const place = (list: number[], fd: number): number => {
        if (fd < 0) return -1;
        list.push(fd);
        return 2 + list.length;
      };
      frontQ.push({ frames: frames.map((f) => place(frontFds, f)), data: place(frontFds, data), kick: place(frontFds, toBack), irq: place(frontFds, toFront) });
      backQ.push({ frames: frames.map((f) => place(backFds, f)), data: place(backFds, data), kick: place(backFds, toFront), irq: place(backFds, toBack) });
    }
    const common = {
      kind: 'ring' as const,
      mode: c.mode,
      durationMs: opts.durationMs,
      warmupMs: opts.warmupMs,
      batch: c.batch,
      payload: c.payload,
      spin: opts.spin,
      latency: true,
    };
    const start = (role: 'front' | 'back', queues: QueueFds[], fds: number[]): Peer => {
      const name = `${c.impl}-${role}-${ctx.serial}`;
      if (c.impl === 'c') {
        if (ctx.cPeer === null) throw new Error('C peer not built');
        const args = [role, '--mode', c.mode, '--workload', 'bench', '--duration-ms', String(opts.durationMs), '--warmup-ms', String(opts.warmupMs)];
        args.push('--batch', String(c.batch > 0 ? c.batch : 1 << 30), '--payload', String(c.payload), '--spin', String(opts.spin), '--latency', '1');
        args.push('--relax', opts.cRelax);
        for (const q of queues) {
          let spec = q.frames.join(',');
          if (q.data >= 0) spec += `:data=${q.data}`;
          if (q.kick >= 0) spec += `:kick=${q.kick}:irq=${q.irq}`;
          args.push('--queue', spec);
        }
        return new Peer(name, ctx.cPeer, args, fds);
      }
      if (ctx.peerScript === null) throw new Error('peer script not resolved');
      const cfg: RingPeerConfig = { ...common, role, queues };
      return new Peer(name, process.execPath, [...nodeArgs(ctx, name), ctx.peerScript, JSON.stringify(cfg)], fds);
    };
    const peers: Peer[] = [];
    const run = async (): Promise<PairResult> => {
      const front = start('front', frontQ, frontFds);
      peers.push(front);
      await front.ready;
      const back = start('back', backQ, backFds);
      peers.push(back);
      await back.ready;
      front.go();
      const [f, b] = await Promise.all([front.result(), back.result()]);
      return { front: f, back: b };
    };
    try {
      return await withDeadline(run(), opts.warmupMs + opts.durationMs + 30_000, peers, caseLabel(c));
    } finally {
      for (const p of peers) p.kill();
    }
  } finally {
    for (const fd of owned) native.close(fd);
  }
}

async function runBaselineCase(c: RingBenchCase, ctx: RunContext): Promise<PairResult> {
  const { opts } = ctx;
  if (ctx.peerScript === null) throw new Error('peer script not resolved');
  const script = ctx.peerScript;
  const kind = c.impl as BaselineKind;
  const cfg: BaselinePeerConfig = {
    kind,
    role: 'front',
    window: ringSlots(ringBytes(c.order), BLKIF_REQUEST_SIZE),
    durationMs: opts.durationMs,
    warmupMs: opts.warmupMs,
    payload: c.payload,
  };
  const peers: Peer[] = [];
  const mk = (role: 'front' | 'back', extra: Partial<BaselinePeerConfig> = {}): Peer => {
    const name = `${kind}-${role}-${ctx.serial}`;
    const p = new Peer(name, process.execPath, [...nodeArgs(ctx, name), script, JSON.stringify({ ...cfg, ...extra, role })], []);
    peers.push(p);
    return p;
  };
  const run = async (): Promise<PairResult> => {
    if (kind === 'unix') {
      const socketPath = join(tmpdir(), `ringside-bench-${process.pid}-${ctx.serial}.sock`);
      rmSync(socketPath, { force: true });
      try {
        const back = mk('back', { socketPath });
        await back.ready;
        const front = mk('front', { socketPath });
        await front.ready;
        const [f, b] = await Promise.all([front.result(), back.result()]);
        return { front: f, back: b };
      } finally {
        rmSync(socketPath, { force: true });
      }
    }
    const front = mk('front');
    await front.ready;
    return { front: await front.result(), back: null };
  };
  try {
    return await withDeadline(run(), opts.warmupMs + opts.durationMs + 30_000, peers, caseLabel(c));
  } finally {
    for (const p of peers) p.kill();
  }
}

function toRow(c: RingBenchCase, r: PairResult): RingBenchRow {
  const f = r.front;
  const seconds = f.elapsed_ns / 1e9;
  const meanRate = seconds > 0 ? f.completed / seconds : 0;
  const windowed = medianWindowRate(f.windows);
  // a run starved for most of its windows has a median of 0: the mean still says it moved
  const rate = windowed !== null && windowed > 0 ? windowed : meanRate;
  const isRing = c.impl === 'ts' || c.impl === 'c';
  const perReq = (fv: number, bv: number): number | null => {
    if (!isRing || f.completed === 0) return null;
    const b = r.back;
    return fv / f.completed + (b && b.completed > 0 ? bv / b.completed : 0);
  };
  return {
    ...c,
    label: caseLabel(c),
    slots: isRing ? ringSlots(ringBytes(c.order), BLKIF_REQUEST_SIZE) : f.ring_size,
    roundTrips: f.completed,
    elapsedNs: f.elapsed_ns,
    rate,
    meanRate,
    mbps: c.payload > 0 ? (rate * c.payload) / 1e6 : null,
    p50Ns: histQuantile(f.hist, 0.5),
    p99Ns: histQuantile(f.hist, 0.99),
    p999Ns: histQuantile(f.hist, 0.999),
    notifiesPerRequest: perReq(f.notifies, r.back?.notifies ?? 0),
    wakeupsPerRequest: perReq(f.wakeups, r.back?.wakeups ?? 0),
    requestsPerPush: isRing && f.pushes > 0 ? f.completed / f.pushes : null,
    errors: f.errors + (r.back?.errors ?? 0),
    starved: false,
    attempts: 1,
    ratioToC: null,
    hist: f.hist,
  };
}

/** the C row a row is compared with: same shape for rings, the 1-page busy-poll ring for transports */
export function cTwin(rows: readonly RingBenchRow[], row: RingBenchCase): RingBenchRow | undefined {
  if (row.impl === 'ts' || row.impl === 'c') return rows.find((r) => r.impl === 'c' && sameShape(r, row));
  const lo = Math.min(...rows.filter((r) => r.impl === 'c').map((r) => r.order));
  return rows.find((r) => r.impl === 'c' && r.order === lo && r.mode === 'poll' && r.batch === 0 && r.queues === 1 && r.payload === row.payload);
}

export function computeGoals(rows: readonly RingBenchRow[]): RingBenchGoals {
  const lo = Math.min(...rows.filter((r) => r.impl === 'ts').map((r) => r.order));
  const ts = rows.find((r) => r.impl === 'ts' && r.order === lo && r.mode === 'poll' && r.batch === 0 && r.queues === 1 && r.payload === 0);
  const ratio = (impl: RingBenchImpl): number | null => {
    const other = rows.find((r) => r.impl === impl && r.payload === 0 && (impl !== 'c' || (ts !== undefined && sameShape(r, ts))));
    return ts && other && other.rate > 0 ? ts.rate / other.rate : null;
  };
  const ev = rows.find((r) => r.impl === 'ts' && r.order === lo && r.mode === 'eventfd' && r.batch === 0 && r.queues === 1 && r.payload === 0);
  const byBatch: { batch: number; ratio: number }[] = [];
  for (const t of rows) {
    if (t.impl !== 'ts' || t.order !== lo || t.mode !== 'poll' || t.queues !== 1 || t.payload !== 0) continue;
    const c = rows.find((r) => r.impl === 'c' && sameShape(r, t));
    if (c && c.rate > 0) byBatch.push({ batch: t.batch, ratio: t.rate / c.rate });
  }
  return {
    tsOverCByBatch: byBatch,
    tsOverC: ratio('c'),
    tsOverPostMessage: ratio('postmessage'),
    tsOverUnix: ratio('unix'),
    tsOverProcessSend: ratio('process-send'),
    tsEventfdNotifiesPerRequest: ev?.notifiesPerRequest ?? null,
  };
}

/** a round trip that waited for a scheduler timeslice: the peers could not run at the same time */
export function isStarved(row: RingBenchRow): boolean {
  return row.rate === 0 || (row.p50Ns !== null && row.p50Ns > 1e6);
}

function median<T>(xs: T[], key: (x: T) => number): T {
  const s = [...xs].sort((a, b) => key(a) - key(b));
  return s[Math.floor((s.length - 1) / 2)];
}

export async function runRingBench(partial: Partial<RingBenchOptions> = {}): Promise<RingBenchReport> {
  const opts: RingBenchOptions = { ...RING_BENCH_DEFAULTS, ...partial };
  const t0 = Date.now();
  const startedAt = new Date(t0).toISOString();
  const cases = planRingBench(opts);
  const progress = (p: RingBenchProgress): void => opts.onProgress?.(p);
  const needTs = cases.some((c) => c.impl !== 'c');
  const needC = cases.some((c) => c.impl === 'c');
  const ctx: RunContext = { opts, peerScript: null, cPeer: null, serial: 0 };
  let cPeerInfo: RingBenchReport['cPeer'] = null;
  if (needC) {
    progress({ index: 0, total: cases.length, label: 'build', message: 'building the C peer against <xen/io/ring.h> and <xen/io/blkif.h>' });
    ctx.cPeer = buildCPeer({ cc: opts.cc });
    const source = cPeerSourcePath();
    cPeerInfo = { source, headers: [...new Set(cHeaderDeps(source, [], opts.cc).filter((h) => /\/xen\//.test(h)))] };
  }
  if (needTs) {
    progress({ index: 0, total: cases.length, label: 'bundle', message: 'preparing the TypeScript peer' });
    ctx.peerScript = await resolvePeerScript(opts.peerScript);
  }
  if (opts.cpuProf) mkdirSync(opts.cpuProf, { recursive: true });
  const rows: RingBenchRow[] = [];
  for (let i = 0; i < cases.length; i++) {
    const c = cases[i];
    const runs: RingBenchRow[] = [];
    for (let k = 0; k < Math.max(1, opts.repeat); k++) {
      let best: RingBenchRow | null = null;
      let attempts = 0;
      while (attempts <= Math.max(0, opts.retries)) {
        attempts++;
        ctx.serial++;
        const r = c.impl === 'ts' || c.impl === 'c' ? await runRingCase(c, ctx) : await runBaselineCase(c, ctx);
        const row = toRow(c, r);
        row.starved = isStarved(row);
        if (best === null || row.rate > best.rate) best = row;
        if (!row.starved) break;
        progress({ index: i, total: cases.length, label: row.label, message: `${row.label}: starved of CPU (p50 ${fmtNs(row.p50Ns)}), retrying` });
      }
      if (best !== null) {
        best.attempts = attempts;
        runs.push(best);
      }
    }
    const row = median(runs, (r) => r.rate);
    rows.push(row);
    const tsTwin = row.impl === 'c' ? rows.find((r) => r.impl === 'ts' && sameShape(r, row)) : undefined;
    const vs = tsTwin && row.rate > 0 ? ` (ts/c ${(tsTwin.rate / row.rate).toFixed(2)}x)` : '';
    progress({ index: i + 1, total: cases.length, label: row.label, row, message: `${row.label}: ${fmtRate(row.rate)} round trips/s, p50 ${fmtNs(row.p50Ns)}${vs}` });
  }
  for (const row of rows) {
    const twin = cTwin(rows, row);
    row.ratioToC = twin && twin.rate > 0 ? row.rate / twin.rate : null;
  }
  const { onProgress: _p, cases: _c, ...keptOpts } = opts;
  return {
    version: 1,
    startedAt,
    wallMs: Date.now() - t0,
    host: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', node: process.version, platform: `${process.platform} ${process.arch}` },
    options: keptOpts,
    cPeer: cPeerInfo,
    rows,
    goals: computeGoals(rows),
  };
}
