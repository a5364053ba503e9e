// ringside: the command line. Every command validates its arguments before doing anything and
// answers a mistake with what was wrong and what to type instead.
import { resolve } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { up, down } from './lifecycle.js';
import { control } from './control.js';
import { CliError } from './errors.js';
import { table } from './table.js';
import type { DomainRow } from '../control/wire.js';
import { ConfigError } from '../config/errors.js';
import { measureTcb, formatTcb } from './tcb.js';
import { topSamples, formatTop } from './top.js';
import { benchCommand } from './bench.js';
import { pciCommand } from './pci.js';
import { vmImageCommand } from './vmimage.js';
import { consoleCommand } from './console.js';

const USAGE = `usage: ringside <command> [options]

  up [SYSTEM] [--state DIR] [--detach] [--json]   deploy a system (default: the embedded examples/default)
  list [--state DIR] [--json]                     domains, like 'xl list'
  console NAME [--state DIR]                      attach to a VM's serial console (Ctrl-] detaches)
  top [--state DIR] [--interval S] [--count N]    live CPU, memory, grants and event channels per domain
  destroy NAME [--state DIR]                      kill one domain (a driver domain is restarted by dom0)
  restart NAME [--state DIR]                      restart a driver domain; its frontends reconnect
  migrate NAME DEST [--bandwidth MIB] [--state DIR] [--json]
                                                  live-migrate a VM to the host whose state directory is DEST
                                                  (--bandwidth caps the stream in MiB/s, like virsh's)
  down [--state DIR]                              stop everything and clean up
  tcb [--json]                                    measure the trusted computing base (hv + dom0 + hw)
  bench ring|blk|net|iommu [options] [--json]     measure ('ringside bench help' lists the options)
  pci list|faults|check [options] [--json]        PCI devices, IOMMU faults, the passthrough checker ('ringside pci help')
  pci assignable-list|assignable-add BDF|assignable-remove BDF [--state DIR]
                                                  the assignable pool of a running system, like xl's
  vm-image [--out DIR] [--json]                   build the VM guest kernel and initramfs from Debian packages
  help                                            this text

The state directory (default .ringside) holds the sockets: export
XENSTORED_PATH=<state>/xenstored.sock to use Debian's xenstore-* tools against the system.`;

function parse(args: string[], options: NonNullable<ParseArgsConfig['options']>, positionals: number, cmd: string) {
  let r;
  try {
    r = parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new CliError(`ringside ${cmd}: ${(e as Error).message}\n\n${USAGE}`, 2);
  }
  if (r.positionals.length > positionals)
    throw new CliError(`ringside ${cmd}: unexpected argument '${r.positionals[positionals]}'\n\n${USAGE}`, 2);
  return r;
}

const STATE = { state: { type: 'string' as const, default: '.ringside' }, json: { type: 'boolean' as const, default: false } };

export function formatDomains(rows: DomainRow[]): string {
  const main = table(
    ['Name', 'ID', 'Role', 'Mem(MiB)', 'State', 'Uptime(s)', 'PID', 'Restarts'],
    rows.map((d) => [d.name, d.domid, d.accel ? `${d.role} (${d.accel.accel}${d.cpu ? `, ${d.cpu.model}` : ''})` : d.role, d.memoryMiB, d.state, d.uptimeS.toFixed(1), d.pid ?? '-', d.restarts]),
    new Set([1, 3, 5, 6, 7]),
  );
  const devs = rows.flatMap((d) => d.devices.map((v) => ({ d, v })));
  if (devs.length === 0) return main;
  const dev = table(
    ['Device', 'Frontend', 'Backend', 'Id', 'State(f/b)', 'Export'],
    devs.map(({ v }) => [`${v.type} ${v.name}`, v.frontend, v.backend, v.devid, `${v.transport === 'vhost-user' ? 'vhost-user' : v.frontendState}/${v.backendState}`, v.export ?? '']),
  );
  return `${main}\n\n${dev}`;
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE + '\n');
      return cmd === undefined ? 2 : 0;
    case 'up': {
      const { values, positionals } = parse(rest, { ...STATE, detach: { type: 'boolean', default: false }, timeout: { type: 'string', default: '60' } }, 1, 'up');
      const timeoutS = Number(values.timeout);
      if (!(timeoutS > 0 && timeoutS <= 3600)) throw new CliError(`ringside up: --timeout must be seconds between 1 and 3600, got '${values.timeout}'`, 2);
      const r = await up({
        system: positionals[0],
        stateDir: String(values.state),
        detach: Boolean(values.detach),
        timeoutMs: timeoutS * 1000,
        progress: (l) => process.stderr.write(`ringside: ${l}\n`),
      });
      if (values.json) process.stdout.write(JSON.stringify({ domains: r.domains, xenstoredPath: r.xenstoredPath, hvPid: r.hvPid }, null, 2) + '\n');
      else {
        process.stdout.write(formatDomains(r.domains) + '\n\n');
        process.stdout.write(`export XENSTORED_PATH=${r.xenstoredPath}\n`);
      }
      if (values.detach) return 0;
      process.stderr.write("ringside: running; Ctrl-C stops the system (or run 'ringside down' elsewhere)\n");
      await new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
        const t = setInterval(() => {
          try {
            process.kill(r.hvPid, 0);
          } catch {
            clearInterval(t);
            resolve();
          }
        }, 500);
      });
      for (const n of await down(String(values.state))) process.stderr.write(`ringside: ${n}\n`);
      process.stderr.write('ringside: system stopped\n');
      return 0;
    }
    case 'list': {
      const { values } = parse(rest, STATE, 0, 'list');
      const r = await control(String(values.state), { op: 'list' });
      process.stdout.write((values.json ? JSON.stringify(r.domains ?? [], null, 2) : formatDomains(r.domains ?? [])) + '\n');
      return 0;
    }
    case 'console': {
      const { values, positionals } = parse(rest, { state: STATE.state }, 1, 'console');
      if (positionals.length !== 1) throw new CliError(`ringside console: name the VM, e.g. ringside console vm1\n\n${USAGE}`, 2);
      return consoleCommand(String(values.state), positionals[0]);
    }
    case 'top': {
      const { values } = parse(rest, { ...STATE, interval: { type: 'string', default: '1' }, count: { type: 'string', default: '0' } }, 0, 'top');
      const interval = Number(values.interval);
      const count = Number(values.count);
      if (!(interval >= 0.1 && interval <= 3600)) throw new CliError(`ringside top: --interval must be seconds between 0.1 and 3600, got '${values.interval}'`, 2);
      if (!Number.isInteger(count) || count < 0) throw new CliError(`ringside top: --count must be a whole number (0 = until Ctrl-C), got '${values.count}'`, 2);
      const tty = process.stdout.isTTY && !values.json;
      await topSamples(String(values.state), interval * 1000, count === 0 ? Number.MAX_SAFE_INTEGER : count + 1, (s) => {
        if (values.json) process.stdout.write(JSON.stringify(s) + '\n');
        else process.stdout.write((tty ? '\x1b[H\x1b[2J' : '') + formatTop(s) + '\n\n');
      });
      return 0;
    }
    case 'destroy':
    case 'restart': {
      const { values, positionals } = parse(rest, STATE, 1, cmd);
      if (!positionals[0]) throw new CliError(`ringside ${cmd}: name the domain, e.g. 'ringside ${cmd} blkdom'`, 2);
      const r = await control(String(values.state), { op: cmd, name: positionals[0] });
      process.stdout.write((values.json ? JSON.stringify(r) : r.message ?? 'done') + '\n');
      return 0;
    }
    case 'migrate': {
      const { values, positionals } = parse(rest, { ...STATE, bandwidth: { type: 'string' } }, 2, 'migrate');
      const bw = values.bandwidth === undefined ? undefined : Number(values.bandwidth);
      if (bw !== undefined && !(Number.isInteger(bw) && bw >= 1 && bw <= 1 << 20)) throw new CliError(`ringside migrate: --bandwidth must be whole MiB/s in 1..1048576, got '${values.bandwidth}'`, 2);
      if (positionals.length !== 2) throw new CliError(`ringside migrate: name the VM and the destination host's state directory, e.g. 'ringside migrate vm1 /var/lib/ringside-b --state /var/lib/ringside-a'`, 2);
      const [name, dest] = positionals;
      const r = await control(String(values.state), { op: 'migrate', name, dest: resolve(dest), ...(bw !== undefined ? { bandwidthMiB: bw } : {}) }, (line) => process.stderr.write(`ringside: ${line}\n`));
      const m = r.migration;
      if (!m) throw new CliError('ringside migrate: the control domain answered without a migration report');
      process.stdout.write(
        values.json
          ? JSON.stringify(m) + '\n'
          : `${m.name} migrated from host ${m.fromHost} to host ${m.toHost} (${m.to}) as dom${m.domid}: total ${m.totalMs} ms, downtime ${m.downtimeMs} ms (QEMU's), ${m.rounds} rounds, ${(m.transferredBytes / (1 << 20)).toFixed(1)} MiB sent, ${m.convergence}${m.throttlePct ? ` (guest throttled up to ${m.throttlePct}%)` : ' (not needed)'}\n`,
      );
      return 0;
    }
    case 'down': {
      const { values } = parse(rest, STATE, 0, 'down');
      for (const n of await down(String(values.state))) process.stderr.write(`ringside: ${n}\n`);
      process.stdout.write(values.json ? '{"down":true}\n' : 'system stopped\n');
      return 0;
    }
    case 'tcb': {
      const { values } = parse(rest, { json: { type: 'boolean', default: false } }, 0, 'tcb');
      const r = measureTcb();
      process.stdout.write((values.json ? JSON.stringify(r, null, 2) : formatTcb(r)) + '\n');
      return 0;
    }
    case 'bench':
      return benchCommand(rest);
    case 'pci':
      return pciCommand(rest);
    case 'vm-image':
      return vmImageCommand(rest);
    default:
      throw new CliError(`ringside: unknown command '${cmd}'\n\n${USAGE}`, 2);
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    if (e instanceof CliError) {
      process.stderr.write(`${e.message}\n`);
      process.exit(e.exitCode);
    }
    if (e instanceof ConfigError) {
      process.stderr.write(`ringside: configuration error: ${e.message}\n`);
      process.exit(1);
    }
    process.stderr.write(`ringside: internal error: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(70);
  },
);
