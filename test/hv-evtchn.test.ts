import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestPlatform, type Probe } from './support/platform.js';
import { until } from './support/until.js';

/** Polls `get` until `ok` holds of its answer (30 s at most); fails naming what was awaited and the last answer. */
describe('event channels between domain processes', () => {
  let t: TestPlatform;
  let front: Probe;
  let back: Probe;

  beforeAll(async () => {
    t = new TestPlatform();
    front = await t.probe('evt-front');
    back = await t.probe('evt-back');
  });
  afterAll(async () => t?.close());

  async function pair(): Promise<{ fp: number; bp: number }> {
    const { port: fp } = await front.cmd('allocUnbound', { remoteDom: back.domid });
    const { port: bp } = await back.cmd('bind', { remoteDom: front.domid, remotePort: fp });
    // the bound event reaches the allocator asynchronously
    await until(`dom${front.domid} port ${fp} bound`, () => front.cmd('hypercall', { op: 'evtchn_status', args: { port: fp } }), (st) => st.result?.state === 'interdomain');
    return { fp, bp };
  }

  it('delivers in both directions and coalesces repeated sends into one event', async () => {
    const { fp, bp } = await pair();
    await back.cmd('notify', { port: bp, times: 50 });
    const ev = await until('the first event on the frontend', () => front.cmd('events', { port: fp }), (e) => e.count >= 1);
    expect(ev.count).toBeLessThan(50);
    await front.cmd('notify', { port: fp });
    const got = await until('the event on the backend', () => back.cmd('events', { port: bp }), (e) => e.count >= 1);
    expect(got.count).toBe(1);
  });

  it('holds a send made while masked and delivers it on unmask', async () => {
    const { fp, bp } = await pair();
    await front.cmd('mask', { port: fp });
    await back.cmd('notify', { port: bp, times: 3 });
    const masked = await until('the masked send to be pending', () => front.cmd('events', { port: fp }), (e) => e.pending === true);
    expect(masked.count).toBe(0);
    await front.cmd('unmask', { port: fp });
    const after = await until('delivery after unmask', () => front.cmd('events', { port: fp }), (e) => e.count >= 1);
    expect(after.count).toBe(1);
    expect(after.pending).toBe(false);
  });

  it('reports an error for a closed port and unbinds the peer', async () => {
    const { fp, bp } = await pair();
    await front.cmd('closePort', { port: fp });
    const r = await front.cmd('notify', { port: fp });
    expect(r.ok).toBe(false);
    expect(r.code).toBe('EINVAL');
    await until(`dom${back.domid} port ${bp} unbound`, () => back.cmd('hypercall', { op: 'evtchn_status', args: { port: bp } }), (st) => st.result?.state === 'unbound');
    // Sending on the now-unbound peer goes nowhere but is not an error (Xen semantics).
    expect((await back.cmd('notify', { port: bp })).ok).toBe(true);
  });

  it('refuses to bind a port allocated for another domain', async () => {
    const other = await t.probe('evt-other');
    const { port } = await front.cmd('allocUnbound', { remoteDom: back.domid });
    const r = await other.cmd('bind', { remoteDom: front.domid, remotePort: port });
    expect(r.ok).toBe(false);
    expect(r.code).toBe('EINVAL');
    expect(r.error).toMatch(/allocated for dom/);
  });
});
