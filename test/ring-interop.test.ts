// The TypeScript rings against a C peer built here, now, from Debian libxen-dev's own ring.h and
// blkif.h macros (src/bench/ring/blkif_peer.c): two processes, one sring in memfd frames, thousands of
// requests of every layout, every field checked on both sides.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { native } from '../src/native/index.js';
import { XEN_PAGE_SIZE } from '../src/abi/sring.js';
import { BLKIF_RING } from '../src/abi/blkif.js';
import { FrontRing } from '../src/ring/front.js';
import { BackRing } from '../src/ring/back.js';
import { sharedRingIndices } from '../src/ring/sring.js';
import { buildCPeer, cHeaderDeps } from '../src/bench/ring/cpeer.js';
import { runFrontVerifyEvented, runFrontVerifyPoll, serveVerifyEvented, serveVerifyPoll, type VerifyStats } from './cpeer/verify.js';

let peer = '';

beforeAll(() => {
  peer = buildCPeer();
});

interface CResult {
  role: string;
  completed: number;
  errors: number;
  notifies: number;
  wakeups: number;
  ring_size: number;
}

class CPeer {
  readonly child: ChildProcess;
  readonly ready: Promise<void>;
  readonly exit: Promise<{ code: number | null; stdout: string; stderr: string }>;
  /** everything the peer printed so far */
  private stdout = '';
  constructor(args: string[], fds: number[]) {
    this.child = spawn(peer, args, { stdio: ['pipe', 'pipe', 'pipe', ...fds] });
    let stderr = '';
    this.ready = new Promise((resolve, reject) => {
      this.child.stdout?.on('data', (d: Buffer) => {
        this.stdout += d.toString();
        if (this.stdout.startsWith('ready\n')) resolve();
      });
      this.child.once('exit', () => reject(new Error(`C peer exited before ready: ${stderr}`)));
    });
    this.ready.catch(() => {});
    this.child.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    // A peer that dies resets its pipes under us: that shows in its exit status, not as an uncaught error.
    for (const s of [this.child.stdin, this.child.stdout, this.child.stderr]) s?.on('error', () => undefined);
    this.exit = new Promise((resolve) => this.child.once('close', (code) => resolve({ code, stdout: this.stdout, stderr })));
  }
  /** Resolves once the peer has printed `line` (e.g. "waiting"); rejects, with what it printed, if it exits first. */
  printed(line: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (!this.stdout.split('\n').includes(line)) return;
        this.child.stdout?.off('data', check);
        resolve();
      };
      this.child.stdout?.on('data', check);
      check(); // it may have come in the same chunk as "ready"
      void this.exit.then((r) => reject(new Error(`C peer exited (code ${r.code}) before printing "${line}"; stdout: ${r.stdout} stderr: ${r.stderr}`)));
    });
  }
  async result(): Promise<CResult> {
    const { code, stdout, stderr } = await this.exit;
    if (code !== 0) throw new Error(`C peer exit ${code}: ${stderr}`);
    const line = stdout.split('\n').find((l) => l.startsWith('{'));
    if (!line) throw new Error(`C peer printed no result: ${stdout}`);
    return JSON.parse(line) as CResult;
  }
  kill(): void {
    if (this.child.exitCode === null) this.child.kill('SIGKILL');
  }
}

const live: CPeer[] = [];
afterAll(() => live.forEach((p) => p.kill()));

interface Setup {
  frames: number[];
  buf: ArrayBuffer;
  toBack: number;
  toFront: number;
  close(): void;
}

function setup(order: number, eventfd: boolean): Setup {
  const frames = Array.from({ length: 1 << order }, () => native.memfdCreate('sring', XEN_PAGE_SIZE));
  const buf = native.mmapFrames(frames, true);
  const toBack = eventfd ? native.eventfd() : -1;
  const toFront = eventfd ? native.eventfd() : -1;
  return {
    frames,
    buf,
    toBack,
    toFront,
    close() {
      native.munmap(buf);
      for (const fd of [...frames, toBack, toFront]) if (fd >= 0) native.close(fd);
    },
  };
}

/** the --queue spec for the C peer: its frames at 3.., then its kick and irq eventfds */
function queueSpec(s: Setup, role: 'front' | 'back'): { spec: string; fds: number[] } {
  const fds = [...s.frames];
  let spec = s.frames.map((_, i) => 3 + i).join(',');
  if (s.toBack >= 0) {
    const kick = role === 'front' ? s.toBack : s.toFront;
    const irq = role === 'front' ? s.toFront : s.toBack;
    fds.push(kick, irq);
    spec += `:kick=${3 + s.frames.length}:irq=${4 + s.frames.length}`;
  }
  return { spec, fds };
}

function cArgs(role: 'front' | 'back', spec: string, count: number, start: number, mode: string, batch: number): string[] {
  return [role, '--workload', 'verify', '--queue', spec, '--count', String(count), '--start', String(start), '--mode', mode, '--batch', String(batch)];
}

function expectClean(ts: VerifyStats, c: CResult, count: number): void {
  expect(ts.errors).toBe(0);
  expect(c.errors).toBe(0);
  expect(ts.completed).toBe(count);
}

describe('C frontend (Xen ring.h) -> TypeScript backend', () => {
  for (const [order, start, count] of [
    [0, 0, 5000],
    [2, 0xfffff000, 8000],
  ] as const) {
    it(`order ${order}, indices from ${start.toString(16)}: every request answered, every field intact`, async () => {
      const s = setup(order, false);
      try {
        const { spec, fds } = queueSpec(s, 'front');
        const c = new CPeer(cArgs('front', spec, count, start, 'poll', 5), fds);
        live.push(c);
        await c.ready; // the frontend has initialised the sring
        const back = BackRing.attach(s.buf, BLKIF_RING, { start });
        expect(back.size).toBe(order === 0 ? 32 : 128);
        c.child.stdin?.write('go\n');
        const ts = serveVerifyPoll(back, 0, 30_000);
        const cr = await c.result();
        expectClean(ts, cr, count);
        expect(cr.completed).toBe(count); // the C frontend checked id, operation and status of each
        expect(ts.byCopy).toBeGreaterThan(0);
        expect(ts.byDecoder).toBeGreaterThan(0);
        const idx = sharedRingIndices(s.buf);
        expect(idx.reqProd).toBe((start + count + 1) % 2 ** 32);
        expect(idx.rspProd).toBe(idx.reqProd);
      } finally {
        s.close();
      }
    });
  }

  it('eventfd notification with suppression, both ends sleeping', async () => {
    const s = setup(0, true);
    try {
      const count = 3000;
      const { spec, fds } = queueSpec(s, 'front');
      const c = new CPeer(cArgs('front', spec, count, 0, 'eventfd', 3), fds);
      live.push(c);
      await c.ready;
      const back = BackRing.attach(s.buf, BLKIF_RING);
      // The frontend starts only once the backend has done its final check and sleeps, so its
      // first request must wake the backend through the event channel.
      const ts = await serveVerifyEvented(back, 0, { kick: s.toFront, irq: s.toBack }, 30_000, () => c.child.stdin?.write('go\n'));
      const cr = await c.result();
      expectClean(ts, cr, count);
      expect(ts.wakeups).toBeGreaterThan(0); // the backend really slept on the event channel
      expect(ts.notifies).toBeLessThanOrEqual(count + 1);
      expect(cr.notifies).toBeLessThanOrEqual(count + 1);
    } finally {
      s.close();
    }
  });
});

describe('TypeScript frontend -> C backend (Xen ring.h)', () => {
  for (const [order, start, count] of [
    [0, 0, 5000],
    [2, 0xfffff800, 8000],
  ] as const) {
    it(`order ${order}, indices from ${start.toString(16)}: every request answered, every field intact`, async () => {
      const s = setup(order, false);
      try {
        const front = FrontRing.init(s.buf, BLKIF_RING, { start });
        const { spec, fds } = queueSpec(s, 'back');
        const c = new CPeer(cArgs('back', spec, count, start, 'poll', 9), fds);
        live.push(c);
        await c.ready;
        const ts = runFrontVerifyPoll(front, 0, count, 30_000);
        const cr = await c.result();
        expectClean(ts, cr, count);
        expect(cr.completed).toBe(count + 1); // + the stop request
        expect(cr.ring_size).toBe(front.size);
      } finally {
        s.close();
      }
    });
  }

  it('eventfd notification with suppression, order 1', async () => {
    const s = setup(1, true);
    try {
      const count = 3000;
      const front = FrontRing.init(s.buf, BLKIF_RING);
      const { spec, fds } = queueSpec(s, 'back');
      const c = new CPeer([...cArgs('back', spec, count, 0, 'eventfd', 4), '--announce-wait', '1'], fds);
      live.push(c);
      await c.ready;
      // The C backend sleeps before the first request, so that request must wake it.
      await c.printed('waiting');
      const ts = await runFrontVerifyEvented(front, 0, count, { kick: s.toBack, irq: s.toFront }, 30_000);
      const cr = await c.result();
      expectClean(ts, cr, count);
      expect(cr.wakeups).toBeGreaterThan(0);
    } finally {
      s.close();
    }
  });

  it("a garbage req_prod is caught by Xen's RING_REQUEST_PROD_OVERFLOW in the C backend", async () => {
    const s = setup(0, false);
    try {
      FrontRing.init(s.buf, BLKIF_RING);
      const { spec, fds } = queueSpec(s, 'back');
      const c = new CPeer(cArgs('back', spec, 10, 0, 'poll', 1), fds);
      live.push(c);
      await c.ready;
      new DataView(s.buf).setUint32(0, 33, true); // 33 requests on a 32-slot ring
      const { code, stderr } = await c.exit;
      expect(code).toBe(3);
      expect(stderr).toMatch(/bogus ring requests/);
    } finally {
      s.close();
    }
  });
});

describe('the C peer is built from the system Xen headers', () => {
  it("reads /usr/include/xen's ring.h and blkif.h", () => {
    const deps = cHeaderDeps();
    expect(deps.some((d) => d.endsWith('/xen/io/ring.h'))).toBe(true);
    expect(deps.some((d) => d.endsWith('/xen/io/blkif.h'))).toBe(true);
  });
});
