// One client connection to xenstored: xs_wire.h framing, requests handled one at a time in arrival
// order, replies and watch events written back. Backpressure and size limits live here because this is
// where a peer that stops reading, or sends an oversized frame, shows itself.
import type { Socket } from 'node:net';
import {
  encodeMessage,
  FrameDecoder,
  joinStrings,
  PAYLOAD_MAX,
  XsType,
  xsTypeName,
  type XsMessage,
} from '../../src/xenstore/wire.js';
import type { Identity } from './permissions.js';
import type { Transaction } from './transaction.js';
import type { WatchSink } from './watches.js';
import type { XenstoredQuotas } from './quota.js';
import { XsOpError } from './operror.js';

export interface Reply {
  readonly type: number;
  readonly payload: Buffer;
  // Runs once the reply is queued, so watch events a request causes follow its reply.
  readonly after?: () => void;
}

export interface ConnectionHooks {
  handle(conn: Connection, msg: XsMessage): Reply | Promise<Reply>;
  closed(conn: Connection): void;
  log(msg: string): void;
}

export interface ConnectionInfo {
  id: number;
  domid: number;
  privileged: boolean;
  outstanding: number;
  pendingEvents: number;
  paused: boolean;
  transactions: number;
}

let nextConnId = 1;

// One client stream: frame reassembly, strictly ordered request handling, output accounting and the
// per-connection state (transactions) that dies with it.
export class Connection implements WatchSink {
  readonly id = nextConnId++;
  readonly transactions = new Map<number, Transaction>();
  private readonly decoder = new FrameDecoder();
  private busy = false;
  private paused = false;
  private closed = false;
  private outstanding = 0;
  private pendingEvents = 0;
  private dropping = false;
  private readonly noted = new Set<string>();

  constructor(
    private readonly socket: Socket,
    readonly domid: number,
    readonly privileged: boolean,
    private readonly target: () => number | undefined,
    private readonly quotas: XenstoredQuotas,
    private readonly hooks: ConnectionHooks,
  ) {
    socket.on('data', (chunk: Buffer) => {
      this.decoder.push(chunk);
      this.pump();
    });
    socket.on('error', (err: Error) => {
      // Peers vanishing mid-write (EPIPE/ECONNRESET) are routine; the close handler cleans up.
      if (!this.closed) this.hooks.log(`${this.label}: socket error: ${err.message}`);
    });
    socket.on('close', () => this.finish());
  }

  get identity(): Identity {
    return { domid: this.domid, privileged: this.privileged, target: this.target() };
  }

  get label(): string {
    return `${this.privileged ? 'dom0(priv)' : `dom${this.domid}`}#${this.id}`;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  info(): ConnectionInfo {
    return {
      id: this.id,
      domid: this.domid,
      privileged: this.privileged,
      outstanding: this.outstanding,
      pendingEvents: this.pendingEvents,
      paused: this.paused,
      transactions: this.transactions.size,
    };
  }

  // Logs a kind of misbehaviour once per connection, so a hostile peer cannot flood the log.
  noteOnce(kind: string, msg: string): void {
    if (this.noted.has(kind)) return;
    this.noted.add(kind);
    this.hooks.log(`${this.label}: ${msg} (further ones not logged)`);
  }

  // Cuts the peer off; the reason goes to the log so an operator can see why a domain lost xenstore.
  kill(reason: string): void {
    if (this.closed) return;
    this.hooks.log(`${this.label}: connection closed: ${reason}`);
    this.finish();
    this.socket.destroy();
  }

  sendWatchEvent(path: string, token: string): void {
    if (this.closed) return;
    const payload = joinStrings([path, token]);
    if (payload.length > PAYLOAD_MAX) {
      // XSA-324: an over-long event would make a conforming client drop the connection.
      this.noteOnce('xsa324', `dropped watch event for ${path.slice(0, 64)}: ${payload.length} bytes exceeds ${PAYLOAD_MAX}`);
      return;
    }
    if (!this.privileged && this.pendingEvents >= this.quotas.pendingWatchEvents) {
      if (!this.dropping) this.hooks.log(`${this.label}: peer not reading, dropping watch events (${this.pendingEvents} pending)`);
      this.dropping = true;
      return;
    }
    this.pendingEvents++;
    this.write(encodeMessage(XsType.WATCH_EVENT, 0, 0, payload), () => {
      this.pendingEvents--;
      if (this.pendingEvents === 0) this.dropping = false;
    });
  }

  private finish(): void {
    if (this.closed) return;
    this.closed = true;
    this.transactions.clear();
    this.hooks.closed(this);
  }

  private write(buf: Buffer, done: () => void): void {
    this.socket.write(buf, () => {
      done();
      if (this.paused && !this.busy) this.pump();
    });
  }

  private pump(): void {
    while (!this.closed && !this.busy) {
      // XSA-326: a peer that does not take its replies stops being read rather than growing our buffers.
      if (!this.privileged && this.outstanding >= this.quotas.outstandingRequests) {
        this.pause();
        return;
      }
      const frame = this.decoder.next();
      if (!frame) {
        this.resume();
        return;
      }
      if (frame.kind === 'oversized') {
        const h = frame.header;
        this.kill(`message length ${h.len} exceeds ${PAYLOAD_MAX} (type ${xsTypeName(h.type)}, req_id ${h.reqId})`);
        return;
      }
      this.dispatch(frame.message);
    }
    if (this.busy) this.pause();
  }

  private dispatch(msg: XsMessage): void {
    let result: Reply | Promise<Reply>;
    try {
      result = this.hooks.handle(this, msg);
    } catch (e) {
      this.reply(msg, this.errorReply(msg, e));
      return;
    }
    if (!(result instanceof Promise)) {
      this.reply(msg, result);
      return;
    }
    this.busy = true;
    void result
      .then(
        (r) => this.reply(msg, r),
        (e: unknown) => this.reply(msg, this.errorReply(msg, e)),
      )
      .catch((e: unknown) => this.hooks.log(`${this.label}: internal error replying: ${String(e)}`))
      .finally(() => {
        this.busy = false;
        this.pump();
      });
  }

  private errorReply(msg: XsMessage, e: unknown): Reply {
    if (e instanceof XsOpError) return { type: XsType.ERROR, payload: Buffer.from(`${e.code}\0`, 'latin1') };
    const detail = e instanceof Error ? (e.stack ?? e.message) : String(e);
    this.hooks.log(`${this.label}: internal error handling ${xsTypeName(msg.type)}: ${detail}`);
    return { type: XsType.ERROR, payload: Buffer.from('EIO\0', 'latin1') };
  }

  private reply(msg: XsMessage, r: Reply): void {
    if (this.closed) return;
    this.outstanding++;
    this.write(encodeMessage(r.type, msg.reqId, msg.txId, r.payload), () => {
      this.outstanding--;
    });
    if (r.after) {
      try {
        r.after();
      } catch (e) {
        this.hooks.log(`${this.label}: internal error after ${xsTypeName(msg.type)}: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
  }

  private pause(): void {
    if (this.paused) return;
    this.paused = true;
    this.socket.pause();
  }

  private resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.socket.resume();
  }
}
