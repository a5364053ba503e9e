import { describe, expect, it } from 'vitest';
import { hasTool, mustRun, runTool, ToolError } from './run.js';

describe('runTool', () => {
  it('gives the exit status and both streams whatever the status', async () => {
    const r = await runTool('sh', ['-c', 'echo out; echo err >&2; exit 3']);
    expect(r).toEqual({ code: 3, signal: null, spawnError: null, stdout: 'out\n', stderr: 'err\n' });
  });

  it('says a program that cannot start is code -1 with the reason, without throwing', async () => {
    const r = await runTool('/nonexistent/tool', []);
    expect(r.code).toBe(-1);
    expect(r.spawnError).toMatch(/ENOENT/);
  });

  it('kills a tool that outlives its time limit and says so', async () => {
    const r = await runTool('sleep', ['30'], { timeoutMs: 200 });
    expect(r.code).toBe(-1);
    expect(r.signal).toBe('SIGKILL');
  });
});

describe('mustRun', () => {
  it('returns stdout, or throws with the tool\'s own message', async () => {
    expect(await mustRun('echo', ['hi'])).toBe('hi\n');
    const e = await mustRun('sh', ['-c', 'echo "no such device" >&2; exit 1']).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ToolError);
    expect((e as Error).message).toBe('sh -c echo "no such device" >&2; exit 1: no such device');
  });
});

describe('hasTool', () => {
  it('finds sh, misses a made-up name, and refuses anything but a program name', async () => {
    expect(await hasTool('sh')).toBe(true);
    expect(await hasTool('no-such-tool-here')).toBe(false);
    await expect(hasTool('sh; true')).rejects.toThrow(/not a program name/);
  });
});
