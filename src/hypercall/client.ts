// Domain side of the hypercall channel: numbered requests, replies matched by id, and hv's
// asynchronous events dispatched to whoever registered for them.
import { Channel, safeClose, type Incoming, type ChannelCloseReason } from './channel.js';
import { HypercallError, type HvEvent, type HypercallOps, type OpName, type Reply } from './protocol.js';

export interface CallResult<K extends OpName> {
  result: HypercallOps[K]['result'];
  fds: number[];
}

type Pending = { resolve: (r: { result: unknown; fds: number[] }) => void; reject: (e: Error) => void };

export class HypercallClient {
  private readonly channel: Channel;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly eventHandlers: ((ev: HvEvent, fds: number[]) => void)[] = [];
  private closeHandlers: ((reason: ChannelCloseReason) => void)[] = [];

  constructor(fd: number) {
    this.channel = new Channel(
      fd,
      (m) => this.onMessage(m),
      (r) => this.onClose(r),
    );
  }

  /** A domain lives as long as its hypercall channel: keep the event loop running. */
  ref(): void {
    this.channel.ref();
  }

  call<K extends OpName>(op: K, args: HypercallOps[K]['args'], fds: number[] = []): Promise<CallResult<K>> {
    if (this.channel.isClosed) return Promise.reject(new HypercallError('ECONNRESET', `hypercall ${op}: channel to hv is closed`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, {
        resolve: (r) => resolve(r as CallResult<K>),
        reject,
      });
      this.channel.send({ id, op, args }, fds);
    });
  }

  onEvent(h: (ev: HvEvent, fds: number[]) => void): void {
    this.eventHandlers.push(h);
  }

  onClosed(h: (reason: ChannelCloseReason) => void): void {
    this.closeHandlers.push(h);
  }

  close(): void {
    this.channel.close();
    this.failAll('channel closed');
  }

  private onMessage({ msg, fds }: Incoming): void {
    if (typeof msg !== 'object' || msg === null) {
      for (const f of fds) safeClose(f);
      return;
    }
    if ('event' in msg) {
      const ev = msg as HvEvent;
      if (this.eventHandlers.length === 0) for (const f of fds) safeClose(f);
      for (const h of this.eventHandlers) h(ev, fds);
      return;
    }
    const reply = msg as Reply;
    const p = this.pending.get(reply.id);
    if (!p) {
      for (const f of fds) safeClose(f);
      return;
    }
    this.pending.delete(reply.id);
    if (reply.ok) p.resolve({ result: reply.result, fds });
    else {
      for (const f of fds) safeClose(f);
      p.reject(new HypercallError(reply.code, reply.message));
    }
  }

  private onClose(reason: ChannelCloseReason): void {
    this.failAll(reason.kind === 'eof' ? 'hv closed the channel' : reason.message);
    for (const h of this.closeHandlers) h(reason);
  }

  private failAll(why: string): void {
    for (const [, p] of this.pending) p.reject(new HypercallError('ECONNRESET', why));
    this.pending.clear();
  }
}
