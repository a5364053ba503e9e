// `ringside console NAME`: the VM's serial console, as `xl console` gives it. The terminal goes raw
// so the guest's shell sees every key; Ctrl-] detaches and leaves the VM running. Without a
// terminal (a pipe) it copies both ways until either side ends.
import { createConnection } from 'node:net';
import { control } from './control.js';
import { CliError } from './errors.js';
import { statePaths, vmConsoleSocket } from '../control/paths.js';

const DETACH = 0x1d; // Ctrl-]

export async function consoleCommand(stateDir: string, name: string): Promise<number> {
  const rows = (await control(stateDir, { op: 'list' })).domains ?? [];
  const row = rows.find((d) => d.name === name);
  if (!row) throw new CliError(`ringside console: no domain named '${name}'; running: ${rows.map((d) => d.name).join(', ')}`, 1);
  if (row.role !== 'vm') throw new CliError(`ringside console: '${name}' is a ${row.role} domain, not a VM: only VMs have a serial console (its output is in ${statePaths(stateDir).log})`, 1);
  const path = vmConsoleSocket(statePaths(stateDir), name);
  const sock = createConnection(path);
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', (e) => reject(new CliError(`ringside console: cannot reach ${name}'s console at ${path}: ${e.message}`, 1)));
  });
  const tty = process.stdin.isTTY === true;
  if (tty) {
    process.stderr.write(`ringside: connected to ${name}'s console; Ctrl-] detaches\r\n`);
    process.stdin.setRawMode(true);
  }
  return new Promise<number>((resolve) => {
    const finish = (code: number) => {
      if (tty) process.stdin.setRawMode(false);
      process.stdin.pause();
      sock.destroy();
      resolve(code);
    };
    sock.on('data', (d) => process.stdout.write(d));
    sock.on('close', () => finish(0));
    sock.on('error', (e) => {
      process.stderr.write(`ringside console: ${e.message}\n`);
      finish(1);
    });
    process.stdin.on('data', (d: Buffer) => {
      const i = tty ? d.indexOf(DETACH) : -1;
      if (i >= 0) {
        sock.write(d.subarray(0, i));
        return finish(0);
      }
      sock.write(d);
    });
    process.stdin.on('end', () => (tty ? finish(0) : sock.end()));
  });
}
