// Test harness: an in-process hv with the test itself as the control domain, and probe domains
// (real processes, test/domains/probe) driven over a line-oriented control socket.
import { createServer, type Socket } from 'node:net';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CommandClient } from '../../src/control/command-client.js';
import { pack } from 'msgpackr';
import { Hypervisor } from '../../domains/hv/hypervisor.js';
import { HypercallClient } from '../../src/hypercall/client.js';
import type { ConfineSpec, HvEvent } from '../../src/hypercall/protocol.js';
import { waitForSocket } from '../../src/control/unix.js';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const DIST = join(ROOT, 'dist');

export function requireBuilt(): void {
  if (!existsSync(join(DIST, 'test-domains', 'probe.js')))
    throw new Error('dist/ is not built: run `npm run build` (npm test does it) before the integration tests');
}

export class Probe {
  private readonly client: CommandClient;
  constructor(
    readonly domid: number,
    readonly name: string,
    sock: Socket,
  ) {
    this.client = new CommandClient(sock);
  }

  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  cmd(cmd: string, args: Record<string, unknown> = {}): Promise<any> {
    return this.client.request(cmd, args);
  }

  close(): void {
    this.client.close();
  }
}

export class TestPlatform {
  readonly hv: Hypervisor;
  readonly dom0: HypercallClient;
  readonly dir = mkdtempSync(join(tmpdir(), 'ringside-t-'));
  readonly logs: string[] = [];
  readonly events: HvEvent[] = [];
  private probes: Probe[] = [];

  constructor() {
    requireBuilt();
    this.hv = new Hypervisor({
      bundleDirs: [join(DIST, 'domains'), join(DIST, 'test-domains')],
      log: (l) => this.logs.push(l),
    });
    this.dom0 = new HypercallClient(this.hv.attachControlDomain());
    this.dom0.onEvent((ev) => this.events.push(ev));
  }

  async probe(name: string, opts: { ioFrames?: number; grantFrames?: number; kind?: string; confine?: ConfineSpec } = {}): Promise<Probe> {
    const { result } = await this.dom0.call('domain_create', {
      name, kind: opts.kind ?? 'probe', memoryMiB: 64, ioFrames: opts.ioFrames ?? 16, grantFrames: opts.grantFrames ?? 1,
      ...(opts.confine ? { confine: opts.confine } : {}),
    });
    const control = join(this.dir, `${name}.sock`);
    let sock: Socket;
    if (opts.confine) {
      // A confined probe may not create its socket file: it dials ours.
      const server = createServer();
      const accepted = new Promise<Socket>((resolve, reject) => {
        server.once('connection', resolve);
        setTimeout(() => reject(new Error(`confined probe ${name} did not connect within 10 s; logs:\n${this.logs.join('\n')}`)), 10_000).unref();
      });
      await new Promise<void>((r) => server.listen(control, r));
      await this.dom0.call('domain_unpause', { domid: result.domid, bootArgs: pack({ control, dial: true }) });
      try {
        sock = await accepted;
      } finally {
        server.close();
      }
    } else {
      await this.dom0.call('domain_unpause', { domid: result.domid, bootArgs: pack({ control }) });
      sock = await waitConnect(control);
    }
    const p = new Probe(result.domid, name, sock);
    this.probes.push(p);
    return p;
  }

  async waitEvent(pred: (e: HvEvent) => boolean, ms = 10_000): Promise<HvEvent> {
    const end = Date.now() + ms;
    for (;;) {
      const e = this.events.find(pred);
      if (e) return e;
      if (Date.now() > end) throw new Error(`no matching hv event within ${ms} ms; logs:\n${this.logs.join('\n')}`);
      await sleep(20);
    }
  }

  async close(): Promise<void> {
    for (const p of this.probes) p.close();
    const done = new Promise<void>((r) => {
      const t = setInterval(() => {
        if (this.hv.list().every((d) => d.domid === 0)) {
          clearInterval(t);
          r();
        }
      }, 10);
    });
    for (const d of this.hv.list()) if (d.domid !== 0) this.hv.kill(d, 'test teardown');
    await done;
    // the hardware process is this test's child: it goes with the platform, not with the worker
    this.hv.pci?.close();
    this.dom0.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const waitConnect = (path: string, ms = 10_000): Promise<Socket> => waitForSocket(path, ms, 'probe control socket');
