// Waiting in a test for a state, never for a time: the deadline (30 s unless said) is only there
// so a broken build fails with what was awaited and what was last seen instead of hanging, and it
// is long enough that a machine whose neighbour took the cores for seconds still passes.
import { setTimeout as sleep } from 'node:timers/promises';

const POLL_MS = 5;

/** Polls until `ok` holds of what `get` returns, and returns that value. */
export async function until<T>(what: string, get: () => T | Promise<T>, ok: (v: T) => boolean, seconds = 30): Promise<T> {
  const end = Date.now() + seconds * 1000;
  for (;;) {
    const v = await get();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`waited ${seconds} s for ${what}; last seen ${describe(v)}`);
    await sleep(POLL_MS);
  }
}

/** until() for a plain condition; unless told what it waits for, the failure quotes the condition. */
export async function waitFor(cond: () => boolean, what = conditionText(cond), seconds = 30): Promise<void> {
  await until(what, cond, (v) => v, seconds);
}

function conditionText(cond: () => boolean): string {
  return `\`${cond.toString().replace(/^\(\)\s*=>\s*/, '').replace(/\s+/g, ' ').slice(0, 300)}\``;
}

function describe(v: unknown): string {
  try {
    return JSON.stringify(v)?.slice(0, 2000) ?? String(v);
  } catch {
    return String(v);
  }
}
