// What the bench runner tells a peer process (one JSON argument) and what the peer answers (one JSON
// line on stdout). The C peer speaks the same result format, so every row is parsed the same way.

export type RingMode = 'poll' | 'eventfd' | 'futex';
export const RING_MODES: readonly RingMode[] = ['poll', 'eventfd', 'futex'];

/** bench-private operation: "no more requests"; the backend answers it and exits */
export const OP_STOP = 0xff;

/** descriptor numbers as the peer sees them (3, 4, ...); -1 when absent */
export interface QueueFds {
  frames: number[];
  data: number;
  /** eventfd this end signals to wake its peer */
  kick: number;
  /** eventfd this end sleeps on */
  irq: number;
}

export interface RingPeerConfig {
  kind: 'ring';
  role: 'front' | 'back';
  queues: QueueFds[];
  mode: RingMode;
  durationMs: number;
  warmupMs: number;
  /** most requests (responses) per push */
  batch: number;
  /** 0 or 4096: bytes copied through the slot's data page per request */
  payload: number;
  /** futex mode: idle polls before sleeping */
  spin: number;
  latency: boolean;
}

export type BaselineKind = 'postmessage' | 'unix' | 'process-send';
export const BASELINE_KINDS: readonly BaselineKind[] = ['postmessage', 'unix', 'process-send'];

export interface BaselinePeerConfig {
  kind: BaselineKind;
  role: 'front' | 'back';
  /** requests kept in flight, like the ring's slots */
  window: number;
  durationMs: number;
  warmupMs: number;
  payload: number;
  socketPath?: string;
}

export type PeerConfig = RingPeerConfig | BaselinePeerConfig;

export interface PeerResult {
  role: 'front' | 'back';
  completed: number;
  elapsed_ns: number;
  notifies: number;
  wakeups: number;
  pushes: number;
  errors: number;
  ring_size: number;
  hist: [number, number][];
  /** [completions, ns] per ~10 ms window of the measured time */
  windows: [number, number][];
}

function isNum(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v);
}

/** Validate a peer's result line (the peer may be C, or crash half-way through a line). */
export function parsePeerResult(line: string): PeerResult {
  const v: unknown = JSON.parse(line);
  if (typeof v !== 'object' || v === null) throw new Error('peer result is not an object');
  const o = v as Record<string, unknown>;
  if (o.role !== 'front' && o.role !== 'back') throw new Error('peer result has no role');
  for (const k of ['completed', 'notifies', 'wakeups', 'pushes', 'errors']) {
    if (!isNum(o[k])) throw new Error(`peer result field ${k} is not a number`);
  }
  const pairsOf = (v: unknown): [number, number][] => {
    const out: [number, number][] = [];
    if (Array.isArray(v)) for (const p of v) if (Array.isArray(p) && p.length === 2 && isNum(p[0]) && isNum(p[1])) out.push([p[0], p[1]]);
    return out;
  };
  return {
    role: o.role,
    completed: o.completed as number,
    elapsed_ns: isNum(o.elapsed_ns) ? o.elapsed_ns : 0,
    notifies: o.notifies as number,
    wakeups: o.wakeups as number,
    pushes: o.pushes as number,
    errors: o.errors as number,
    ring_size: isNum(o.ring_size) ? o.ring_size : 0,
    hist: pairsOf(o.hist),
    windows: pairsOf(o.windows),
  };
}
