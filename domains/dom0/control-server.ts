// The control socket the CLI talks to. Requests are validated before they reach the toolstack;
// a client sending garbage is disconnected, and one client cannot stall another.
import { createServer, type Server, type Socket } from 'node:net';
import { rmSync } from 'node:fs';
import { encodeFrame, FrameReader, type ControlReply } from '../../src/control/wire.js';
import { isAbsolute } from 'node:path';
import { MAX_CONFIG_BYTES } from '../../src/config/xlcfg.js';
import { CPU_NAME, isFixedCpuModel } from '../../src/config/domain.js';
import type { Toolstack } from './toolstack.js';
import { abortIncoming, finishIncoming, migrateOut, receiveIncoming, sourceGone } from './migrate.js';

export function startControlServer(path: string, ts: Toolstack, log: (l: string) => void): Promise<Server> {
  rmSync(path, { force: true });
  const server = createServer((sock) => serve(sock, ts, log));
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve(server));
  });
}

function serve(sock: Socket, ts: Toolstack, log: (l: string) => void): void {
  const reader = new FrameReader();
  const reply = (r: ControlReply) => {
    if (!sock.destroyed) sock.write(encodeFrame(r));
  };
  sock.on('error', () => undefined);
  // VMs another host's dom0 is bringing in over this connection: if it closes before they are
  // finished or called off, QEMU decides whether they stay
  const arriving = new Set<string>();
  sock.on('close', () => {
    for (const name of arriving) void sourceGone(ts, name).catch((e: Error) => log(`dom0: ${name}: after its source went away: ${e.message}`));
  });
  sock.on('data', (chunk: Buffer) => {
    try {
      const progress = (line: string) => {
        if (!sock.destroyed) sock.write(encodeFrame({ progress: line }));
      };
      reader.push(chunk, (req) => void handle(req, ts, progress, arriving).then(reply, (e: Error) => reply({ ok: false, error: e.message })));
    } catch (e) {
      log(`dom0: control client sent a bad frame (${(e as Error).message}): disconnected`);
      sock.destroy();
    }
  });
}

const MAX_CPU_MODELS = 512;

function accelOf(r: Record<string, unknown>): 'tcg' | 'kvm' {
  if (r.accel !== 'tcg' && r.accel !== 'kvm') throw new Error('accel must be "tcg" or "kvm"');
  return r.accel;
}

async function handle(req: unknown, ts: Toolstack, progress: (line: string) => void, arriving: Set<string>): Promise<ControlReply> {
  if (typeof req !== 'object' || req === null || typeof (req as { op?: unknown }).op !== 'string') return { ok: false, error: 'request must be an object with an op' };
  const r = req as Record<string, unknown>;
  const name = () => {
    if (typeof r.name !== 'string' || !/^[A-Za-z0-9_.-]{1,63}$/.test(r.name)) throw new Error('name must be a domain name');
    return r.name;
  };
  switch (r.op) {
    case 'status':
      return { ok: true, xenstoredPath: ts.xenstoredPath };
    case 'wait-ready': {
      const t = typeof r.timeoutMs === 'number' && r.timeoutMs > 0 ? Math.min(r.timeoutMs, 3_600_000) : 60_000;
      const w = await ts.waitReady(t);
      return { ok: true, ready: w.ready, problems: w.problems, domains: await ts.rows(), xenstoredPath: ts.xenstoredPath };
    }
    case 'list':
      return { ok: true, domains: await ts.rows() };
    case 'destroy':
      return { ok: true, message: await ts.destroy(name()) };
    case 'restart':
      return { ok: true, message: await ts.restartByName(name()) };
    case 'pci': {
      // xl pci-assignable-*: dom0 only forwards; hv owns the platform and checks everything.
      const bdf = () => {
        if (typeof r.bdf !== 'string' || !/^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/.test(r.bdf)) throw new Error('bdf must be DDDD:BB:DD.F');
        return r.bdf;
      };
      if (r.action === 'assignable-list') return { ok: true, devices: (await ts.hypercall('pci_assignable_list', {})).devices };
      if (r.action === 'list') return { ok: true, functions: (await ts.hypercall('pci_list', {})).devices };
      if (r.action === 'faults') return { ok: true, faults: (await ts.hypercall('pci_faults', {})).faults };
      if (r.action === 'assignable-add') return { ok: true, warnings: (await ts.hypercall('pci_assignable_add', { bdf: bdf() })).warnings, message: `${r.bdf} is assignable` };
      if (r.action === 'assignable-remove') return { ok: true, warnings: (await ts.hypercall('pci_assignable_remove', { bdf: bdf() })).warnings, message: `${r.bdf} is no longer assignable` };
      return { ok: false, error: `unknown pci action ${JSON.stringify(String(r.action).slice(0, 32))}` };
    }
    case 'migrate': {
      if (typeof r.dest !== 'string' || !isAbsolute(r.dest) || r.dest.length > 4096) throw new Error('dest must be the absolute path of the destination host\'s state directory');
      const bw = r.bandwidthMiB;
      if (bw !== undefined && (typeof bw !== 'number' || !Number.isInteger(bw) || bw < 1 || bw > 1 << 20)) throw new Error('bandwidthMiB must be a whole number of MiB/s in 1..1048576');
      return { ok: true, migration: await migrateOut(ts, name(), r.dest, progress, bw) };
    }
    case 'migrate-incoming': {
      // From another host's dom0: the config is parsed and checked here as any config file is.
      if (typeof r.text !== 'string' || r.text.length > MAX_CONFIG_BYTES) throw new Error(`text must be a config file of at most ${MAX_CONFIG_BYTES} bytes`);
      for (const k of ['file', 'base'] as const) {
        const v = r[k];
        if (typeof v !== 'string' || !isAbsolute(v) || v.length > 4096 || v.includes('\0')) throw new Error(`${k} must be an absolute path`);
      }
      const accel = accelOf(r);
      if (typeof r.cpu !== 'string' || !isFixedCpuModel(r.cpu)) throw new Error('cpu must be the CPU model the VM runs (a fixed QEMU model name)');
      const got = await receiveIncoming(ts, name(), { file: r.file as string, text: r.text, base: r.base as string, accel, cpu: r.cpu });
      arriving.add(name());
      return { ok: true, incoming: got.incoming, domid: got.domid, host: ts.hostName };
    }
    case 'cpu-check': {
      const models = r.models;
      if (!Array.isArray(models) || models.length > MAX_CPU_MODELS || !models.every((m): m is string => typeof m === 'string' && CPU_NAME.test(m)))
        throw new Error(`models must be a list of at most ${MAX_CPU_MODELS} CPU model names`);
      return { ok: true, cpuMissing: await ts.cpu.check(accelOf(r), models), host: ts.hostName };
    }
    case 'migrate-finish':
      return { ok: true, domid: await finishIncoming(ts, name()) };
    case 'migrate-abort':
      await abortIncoming(ts, name());
      return { ok: true, message: 'dropped' };
    case 'down':
      setImmediate(() => void ts.down());
      return { ok: true, message: 'shutting down' };
    default:
      return { ok: false, error: `unknown op ${JSON.stringify(String(r.op).slice(0, 32))}` };
  }
}
