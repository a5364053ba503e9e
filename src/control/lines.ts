// Lines from a peer's stream (a domain's log pipe, a JSON-lines control socket). A peer that
// dies resets its end, and readline re-emits its input's 'error' on the interface, where an
// unheard error is an uncaught exception in whoever was reading: a dead peer must only end
// its lines ('close' follows), never take the reader down.
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';

export function readLines(input: Readable, onLine: (line: string) => void): void {
  input.on('error', () => undefined);
  createInterface({ input }).on('line', onLine).on('error', () => undefined);
}
