// libuv's threadpool runs every medium transfer of every NVMe controller hw serves. Its default
// four threads would let one controller's slow transfers hold up everyone else's: each
// controller brings threads of its own (a controller's jobs in libuv's queue are bounded
// separately, by MEDIUM_JOBS). libuv reads the size once, when the pool is first used, and
// Node's ESM loader uses the pool before hw's first line runs: so hv puts the size in hw's
// environment when it starts it.

/** Threads each controller adds: enough to keep a fast medium busy at queue depth. */
export const THREADS_PER_CONTROLLER = 4;

/** libuv's own ceiling is 1024; past this many threads the host's cores are the limit anyway. */
const MAX_THREADS = 128;
const MIN_THREADS = 4;

/** Threads for `controllers` NVMe controllers; an operator's UV_THREADPOOL_SIZE is left alone. */
export function sizeThreadpool(controllers: number, env: NodeJS.ProcessEnv = process.env): number {
  const set = Number(env.UV_THREADPOOL_SIZE);
  if (env.UV_THREADPOOL_SIZE !== undefined && Number.isInteger(set) && set > 0) return set;
  const n = Math.min(MAX_THREADS, Math.max(MIN_THREADS, controllers * THREADS_PER_CONTROLLER));
  env.UV_THREADPOOL_SIZE = String(n);
  return n;
}
