// The ring throughput lab (`ringside bench ring`). The peer processes' entry is ./peer.ts, bundled
// to dist/bench/ring-peer.js next to the CLI bundle.
export {
  runRingBench,
  planRingBench,
  resolvePeerScript,
  computeGoals,
  isStarved,
  caseLabel,
  RING_BENCH_DEFAULTS,
  RING_BENCH_IMPLS,
  type RingBenchCase,
  type RingBenchGoals,
  type RingBenchImpl,
  type RingBenchOptions,
  type RingBenchProgress,
  type RingBenchReport,
  type RingBenchRow,
} from './bench.js';
export { formatRingBenchTable, ringBenchHtml } from './report.js';
export { parseRingBenchArgs, ringBenchMain, RingBenchArgError, RING_BENCH_USAGE, type RingBenchArgs, type RingBenchIo } from './args.js';
export { buildCPeer, cHeaderDeps, CPeerBuildError } from './cpeer.js';
export type { RingMode } from './protocol.js';
