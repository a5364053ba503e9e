import { describe, expect, it } from 'vitest';
import { THREADS_PER_CONTROLLER, sizeThreadpool } from './threadpool.js';

describe("hw's threadpool", () => {
  it('has room for every controller to run its medium jobs at once, within bounds, unless the operator chose', () => {
    const env: NodeJS.ProcessEnv = {};
    expect(sizeThreadpool(3, env)).toBe(3 * THREADS_PER_CONTROLLER);
    expect(env.UV_THREADPOOL_SIZE).toBe(String(3 * THREADS_PER_CONTROLLER));
    expect(sizeThreadpool(0, {})).toBe(4);
    expect(sizeThreadpool(1000, {})).toBe(128);
    const chosen: NodeJS.ProcessEnv = { UV_THREADPOOL_SIZE: '7' };
    expect(sizeThreadpool(10, chosen)).toBe(7);
    expect(chosen.UV_THREADPOOL_SIZE).toBe('7');
  });
});
