import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Polls until `ok` holds of what `get` returns. Tests wait for a state, never for a time: the
 * deadline is only there so a broken build fails with what it last saw instead of hanging.
 */
export async function until<T>(what: string, get: () => T | Promise<T>, ok: (v: T) => boolean, seconds = 30): Promise<T> {
  const end = Date.now() + seconds * 1000;
  for (;;) {
    const v = await get();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`waited ${seconds} s for ${what}; last seen ${describe(v)}`);
    await sleep(20);
  }
}

function describe(v: unknown): string {
  try {
    return JSON.stringify(v)?.slice(0, 2000) ?? String(v);
  } catch {
    return String(v);
  }
}
