// Test helpers: a throw-away xenstored on temp sockets, and a raw wire connection for sending frames a
// well-behaved client never would.
import { xorshift32 } from '../../src/fuzz/prng.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createConnection, type Socket } from 'node:net';
import { startXenstored, type XenstoredHandle, type XenstoredQuotas } from './server.js';
import { XenstoreClient } from '../../src/xenstore/client.js';
import { encodeMessage, FrameDecoder, type XsMessage } from '../../src/xenstore/wire.js';

export interface TestServer {
  h: XenstoredHandle;
  dir: string;
  logs: string[];
  priv(): Promise<XenstoreClient>;
  dom(domid: number): Promise<XenstoreClient>;
  close(): Promise<void>;
}

export async function startTestServer(quotas?: Partial<XenstoredQuotas>): Promise<TestServer> {
  const dir = await mkdtemp(join(tmpdir(), 'xsd-'));
  const logs: string[] = [];
  const h = await startXenstored({
    privilegedSocket: join(dir, 'socket'),
    domainSocketDir: join(dir, 'domains'),
    log: (m) => logs.push(m),
    quotas,
  });
  const clients: XenstoreClient[] = [];
  const track = async (p: Promise<XenstoreClient>): Promise<XenstoreClient> => {
    const c = await p;
    clients.push(c);
    return c;
  };
  return {
    h,
    dir,
    logs,
    priv: () => track(XenstoreClient.connect(h.privilegedSocket, { onError: () => undefined })),
    dom: (domid) => track(XenstoreClient.connect(h.domainSocketPath(domid), { onError: () => undefined })),
    close: async () => {
      await Promise.all(clients.map((c) => c.close()));
      await h.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export class RawConn {
  private readonly decoder = new FrameDecoder();
  private readonly queue: XsMessage[] = [];
  private waiter: (() => void) | undefined;
  private ended = false;
  readonly closed: Promise<void>;

  private constructor(readonly socket: Socket) {
    this.closed = new Promise((r) => socket.once('close', () => r()));
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      this.decoder.push(chunk);
      for (let f = this.decoder.next(); f; f = this.decoder.next()) {
        if (f.kind === 'message') this.queue.push(f.message);
      }
      this.waiter?.();
    });
    socket.on('close', () => {
      this.ended = true;
      this.waiter?.();
    });
  }

  static connect(path: string): Promise<RawConn> {
    return new Promise((resolve, reject) => {
      const s = createConnection(path);
      s.once('error', reject);
      s.once('connect', () => {
        s.off('error', reject);
        resolve(new RawConn(s));
      });
    });
  }

  get isEnded(): boolean {
    return this.ended;
  }

  sendRaw(buf: Buffer): void {
    this.socket.write(buf);
  }

  send(type: number, payload: Buffer | string, reqId = 0, txId = 0): void {
    this.sendRaw(encodeMessage(type, reqId, txId, typeof payload === 'string' ? Buffer.from(payload, 'latin1') : payload));
  }

  // Next frame from the server; rejects on timeout or if the server hangs up first.
  async next(timeoutMs = 2000): Promise<XsMessage> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.queue.shift();
      if (m) return m;
      if (this.ended) throw new Error('connection closed by server');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('timed out waiting for a frame');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.waiter = undefined;
    }
  }

  async request(type: number, payload: Buffer | string, reqId = 0, txId = 0): Promise<XsMessage> {
    this.send(type, payload, reqId, txId);
    return this.next();
  }

  close(): Promise<void> {
    this.socket.destroy();
    return this.closed;
  }
}

export function text(m: XsMessage): string {
  return m.payload.toString('latin1');
}

// Small deterministic PRNG so fuzz failures reproduce: values in [0, 1).
export function prng(seed: number): () => number {
  const next = xorshift32(seed);
  return () => next() / 0x100000000;
}
