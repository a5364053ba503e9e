// A message channel over a SOCK_SEQPACKET descriptor: one msgpackr-encoded control message per
// packet, with descriptors riding along as SCM_RIGHTS. This is the control plane (hypercalls,
// hv events), never the data path. Everything received is hostile until validated by the caller.
import { Packr } from 'msgpackr';
import { native, errnoCode, type Watcher } from '../native/index.js';

export const MAX_MESSAGE = 64 * 1024;
/** SCM_RIGHTS carries at most this many descriptors per message in our addon. */
export const MAX_FDS_PER_MESSAGE = 64;

export interface Incoming {
  msg: unknown;
  fds: number[];
}

export type ChannelCloseReason = { kind: 'eof' } | { kind: 'error'; message: string };

// copyBuffers: decoded byte strings must not alias our reused receive buffer.
const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true, int64AsType: 'number', copyBuffers: true });

export class Channel {
  readonly fd: number;
  private watcher: Watcher | null;
  private readonly buf = new Uint8Array(MAX_MESSAGE + 1);
  private queue: { data: Uint8Array; fds: number[]; closeAfter: readonly number[] }[] = [];
  private flushTimer: NodeJS.Immediate | null = null;
  private closed = false;

  constructor(
    fd: number,
    private readonly onMessage: (m: Incoming) => void,
    private readonly onClose: (reason: ChannelCloseReason) => void,
  ) {
    this.fd = fd;
    native.setNonblock(fd, true);
    this.watcher = new native.Watcher(fd, 'readable', () => this.drain());
  }

  /** Keep the process alive while this channel is open (a domain's lifeline to hv). */
  ref(): void {
    this.watcher?.ref();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Sends one message. Descriptors in `closeAfter` (or all of `fds` when true) are closed locally
   * once the kernel has taken its copy: that is how ownership moves to the peer.
   */
  send(msg: unknown, fds: number[] = [], closeAfter: boolean | readonly number[] = false): void {
    const toClose = closeAfter === true ? fds : closeAfter === false ? [] : closeAfter;
    if (this.closed) {
      for (const f of toClose) safeClose(f);
      return;
    }
    if (fds.length > MAX_FDS_PER_MESSAGE) throw new Error(`channel: ${fds.length} descriptors in one message (max ${MAX_FDS_PER_MESSAGE})`);
    const data = packr.pack(msg);
    if (data.length > MAX_MESSAGE) throw new Error(`channel: message of ${data.length} bytes exceeds ${MAX_MESSAGE}`);
    this.queue.push({ data, fds, closeAfter: toClose });
    this.flush();
  }

  private flush(): void {
    while (this.queue.length > 0 && !this.closed) {
      const m = this.queue[0];
      try {
        native.sendmsg(this.fd, m.data, m.fds);
      } catch (e) {
        if (errnoCode(e) === 'EAGAIN') {
          // The peer is slow to read: retry soon rather than block the event loop.
          this.flushTimer ??= setImmediate(() => {
            this.flushTimer = null;
            this.flush();
          });
          return;
        }
        this.shutdown({ kind: 'error', message: `send failed: ${(e as Error).message}` });
        return;
      }
      this.queue.shift();
      for (const f of m.closeAfter) safeClose(f);
    }
  }

  private drain(): void {
    while (!this.closed) {
      let r;
      try {
        r = native.recvmsg(this.fd, this.buf);
      } catch (e) {
        this.shutdown({ kind: 'error', message: `recv failed: ${(e as Error).message}` });
        return;
      }
      if (r === null) return;
      if (r.len === 0 && r.fds.length === 0) {
        this.shutdown({ kind: 'eof' });
        return;
      }
      if (r.truncated || r.len > MAX_MESSAGE) {
        for (const f of r.fds) safeClose(f);
        this.shutdown({ kind: 'error', message: `message over ${MAX_MESSAGE} bytes or with too many descriptors` });
        return;
      }
      let msg: unknown;
      try {
        msg = packr.unpack(this.buf.subarray(0, r.len));
      } catch (e) {
        for (const f of r.fds) safeClose(f);
        this.shutdown({ kind: 'error', message: `undecodable message (${(e as Error).message})` });
        return;
      }
      this.onMessage({ msg, fds: r.fds });
    }
  }

  private shutdown(reason: ChannelCloseReason): void {
    if (this.closed) return;
    this.close();
    this.onClose(reason);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.flushTimer) clearImmediate(this.flushTimer);
    for (const m of this.queue) for (const f of m.closeAfter) safeClose(f);
    this.queue = [];
    this.watcher?.close();
    this.watcher = null;
    safeClose(this.fd);
  }
}

export function safeClose(fd: number): void {
  try {
    native.close(fd);
  } catch {
    /* already closed: nothing to release */
  }
}
