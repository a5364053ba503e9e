import { connect } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setImmediate as tick } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { native } from '../native/index.js';
import { readLines } from './lines.js';

describe('readLines', () => {
  const cleanups: (() => void)[] = [];
  afterEach(() => {
    for (const c of cleanups.splice(0).reverse()) c();
  });

  it('delivers lines, and a peer that resets its end (unread data at close) only ends them', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rs-lines-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const listener = native.unixListen(join(dir, 's'), 1);
    cleanups.push(() => native.close(listener));
    const ours = connect(join(dir, 's'));
    cleanups.push(() => ours.destroy());
    await new Promise((r) => ours.once('connect', r));
    let peer: number | null = null;
    while ((peer = native.accept(listener)) === null) await tick();
    const lines: string[] = [];
    readLines(ours, (l) => lines.push(l));
    const uncaught: Error[] = [];
    const onUncaught = (e: Error) => uncaught.push(e);
    process.prependListener('uncaughtException', onUncaught);
    cleanups.push(() => process.off('uncaughtException', onUncaught));
    native.writeFd(peer, Buffer.from('one\ntwo\n'));
    while (lines.length < 2) await tick();
    // the peer never reads what we send: closing with it queued makes the kernel reset our end
    await new Promise<void>((r) => ours.write('never read\n', () => r()));
    const closed = new Promise((r) => ours.once('close', r));
    native.close(peer);
    await closed;
    await tick();
    expect(lines).toEqual(['one', 'two']);
    expect(uncaught).toEqual([]);
  });
});
