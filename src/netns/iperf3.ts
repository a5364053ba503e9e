// One iperf3 run between two network namespaces, for `ringside bench net` and the network tests:
// a one-shot server (`-s -1`) in one namespace, the client in the other. iperf3 has no way to say
// "the server is listening", so a refused connect is retried a bounded number of times. iperf3
// 3.12 with -J can exit 0 and still report {"error": ...} (a connect that timed out), so the
// report's error field decides, not the exit code.
import { spawn, type ChildProcess } from 'node:child_process';
import { runTool } from '../tools/run.js';

export interface Iperf3End {
  ns: string;
  ip: string;
}

export interface Iperf3Options {
  seconds: number;
  port: number;
  /** -R: the server sends */
  reverse?: boolean;
  /** bind the server to its address (-B) */
  bind?: boolean;
  /** more client arguments, e.g. ['-u', '-b', '0', '-l', '64'] */
  extra?: readonly string[];
  /** refused connects retried before giving up (each waits `retryMs` first) */
  retries?: number;
  retryMs?: number;
  /** sees the server process, for a caller that must kill it if it tears down first */
  onServer?: (server: ChildProcess) => void;
}

export interface Iperf3Result {
  /** the receiver's rate (TCP), or the sender's (UDP) */
  bps: number;
  bytes: number;
  /** bytes per 1 s interval, as the client saw them */
  intervals: number[];
  json: Record<string, unknown>;
}

interface Sum {
  bits_per_second: number;
  bytes: number;
}

export class Iperf3Error extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'Iperf3Error';
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function iperf3(client: Pick<Iperf3End, 'ns'>, server: Iperf3End, o: Iperf3Options): Promise<Iperf3Result> {
  const srvArgs = ['netns', 'exec', server.ns, 'iperf3', '-s', '-1', ...(o.bind ? ['-B', server.ip] : []), '-p', String(o.port)];
  const srv = spawn('ip', srvArgs, { stdio: ['ignore', 'pipe', 'pipe'] });
  let srvOut = '';
  const keep = (b: Buffer) => (srvOut = (srvOut + b.toString()).slice(-2000));
  srv.stdout.on('data', keep);
  srv.stderr.on('data', keep);
  srv.on('error', (e) => keep(Buffer.from(`server: ${e.message}\n`)));
  o.onServer?.(srv);
  const cliArgs = ['iperf3', '-c', server.ip, '-p', String(o.port), '-t', String(o.seconds), '-J', '--connect-timeout', '3000', ...(o.reverse ? ['-R'] : []), ...(o.extra ?? [])];
  const retries = o.retries ?? 10;
  try {
    for (let attempt = 0; ; attempt++) {
      await sleep(o.retryMs ?? 200);
      const r = await runTool('ip', ['netns', 'exec', client.ns, ...cliArgs], { timeoutMs: (o.seconds + 30) * 1000 });
      let json: Record<string, unknown> = {};
      try {
        json = JSON.parse(r.stdout) as Record<string, unknown>;
      } catch {
        /* no report: said below */
      }
      const error = typeof json.error === 'string' ? json.error : r.code !== 0 ? `exit code ${r.code}` : undefined;
      const end = json.end as { sum_received?: Sum; sum?: Sum } | undefined;
      const sum = end?.sum_received ?? end?.sum;
      if (error === undefined && sum !== undefined) {
        const intervals = ((json.intervals ?? []) as { sum: { bytes: number } }[]).map((i) => i.sum.bytes);
        return { bps: sum.bits_per_second, bytes: sum.bytes, intervals, json };
      }
      const why = error ?? 'no end-of-test summary in the report';
      if (attempt >= retries || !/refused|unable to connect|unable to send control message/i.test(why)) {
        throw new Iperf3Error(`iperf3 ${client.ns} -> ${server.ip}:${o.port} failed: ${why}; client stderr: ${r.stderr.slice(0, 500).trim()}; server: ${srvOut.trim().slice(-500)}`);
      }
    }
  } finally {
    if (srv.exitCode === null && srv.signalCode === null) srv.kill('SIGKILL');
  }
}
