// Entry point of a ring-bench peer process (bundled by esbuild; see resolvePeerScript in bench.ts).
// argv[2] is a JSON PeerConfig; the peer prints "ready", works, prints one JSON result line and
// exits. The same file is the postMessage baseline's worker (it re-enters here with workerData).

import { fileURLToPath } from 'node:url';
import { runRingPeer } from './ringpeer.js';
import { maybeRunPostMessageWorker, runBaselinePeer } from './baselines.js';
import { BASELINE_KINDS, RING_MODES, type PeerConfig } from './protocol.js';

function parseConfig(text: string | undefined): PeerConfig {
  if (text === undefined) throw new Error('usage: ring-peer.js <json config>');
  const v: unknown = JSON.parse(text);
  if (typeof v !== 'object' || v === null) throw new Error('peer config is not an object');
  const o = v as { kind?: unknown; role?: unknown; mode?: unknown };
  if (o.role !== 'front' && o.role !== 'back') throw new Error('peer config: role must be front or back');
  if (o.kind === 'ring') {
    if (!RING_MODES.includes(o.mode as never)) throw new Error('peer config: bad mode');
    return v as PeerConfig;
  }
  if (BASELINE_KINDS.includes(o.kind as never)) return v as PeerConfig;
  throw new Error(`peer config: unknown kind ${String(o.kind)}`);
}

async function main(): Promise<void> {
  const cfg = parseConfig(process.argv[2]);
  if (cfg.kind === 'ring') await runRingPeer(cfg);
  else await runBaselinePeer(cfg, fileURLToPath(import.meta.url));
}

if (!maybeRunPostMessageWorker()) {
  main().then(
    () => process.exit(0),
    (e: unknown) => {
      process.stderr.write(`ring-peer: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      process.exit(1);
    },
  );
}
