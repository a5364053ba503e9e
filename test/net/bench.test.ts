// `ringside bench net` end to end, briefly: both paths measured, figures sane, nothing left over.
import { describe, expect, it } from 'vitest';
import { formatNetBench, runNetBench } from '../../src/bench/net.js';
import { missingTool, netUnsupported, run } from './support.js';

const why = (await netUnsupported()) ?? ((await missingTool('iperf3')) ? 'iperf3 is not installed' : null);
if (why) console.warn(`skipping net bench test: ${why}`);

describe.skipIf(why !== null)('bench net', () => {
  it('measures veth and netdom side by side and cleans up', async () => {
    const r = await runNetBench({ seconds: Number(process.env.RINGSIDE_BENCH_SECONDS ?? 2) });
    console.log(formatNetBench(r));
    console.log(JSON.stringify(r));
    expect(r.veth.tcpGbps).toBeGreaterThan(0);
    expect(r.ringside.tcpGbps).toBeGreaterThan(0);
    expect(r.ringside.pps).toBeGreaterThan(0);
    expect(r.ratio.tcp).toBeGreaterThan(0);
    const ns = await run('ip', ['netns', 'list']);
    expect(ns.stdout).not.toMatch(new RegExp(`rsb${process.pid % 100000}`));
  }, 120_000);
});
