// Framing of vhost-user messages on a stream socket: a 12-byte header and its payload, with the
// descriptors that came on the header's bytes (the frontend sends each message, fds and all, in
// one sendmsg). Reads are non-blocking and resume where they stopped; nothing is allocated per
// message. The header is checked before its payload is read: a wrong version, a reply bit from
// the frontend or a payload larger than any request has end the connection.
import {
  VHOST_USER_HDR_FLAGS,
  VHOST_USER_HDR_REQUEST,
  VHOST_USER_HDR_SIZE,
  VHOST_USER_HDR_SIZE_FIELD,
  VHOST_USER_MAX_FDS,
  VHOST_USER_PAYLOAD_MAX,
  VHOST_USER_REPLY,
  VHOST_USER_VERSION,
  VHOST_USER_VERSION_MASK,
} from '../abi/vhost-user.js';
import { native } from '../native/index.js';

export class VhostUserError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'VhostUserError';
  }
}

export interface VhostUserMessage {
  request: number;
  flags: number;
  /** the payload (a view of the reader's buffer: valid until the next read) */
  payload: DataView;
  /** descriptors that came with it; whoever handles the message closes or keeps each */
  fds: number[];
}

export class MessageReader {
  private readonly hdr = new Uint8Array(VHOST_USER_HDR_SIZE);
  private readonly hdrView = new DataView(this.hdr.buffer);
  private readonly body = new Uint8Array(VHOST_USER_PAYLOAD_MAX);
  private got = 0;
  private want = 0;
  private inBody = false;
  private fds: number[] = [];
  private readonly msg: VhostUserMessage = { request: 0, flags: 0, payload: new DataView(this.body.buffer, 0, 0), fds: [] };

  constructor(private readonly fd: number) {}

  /**
   * The next whole message, null when the socket has no more bytes for now, or 'closed' when the
   * frontend hung up. Throws VhostUserError on a header no frontend may send.
   */
  read(): VhostUserMessage | null | 'closed' {
    for (;;) {
      const target = this.inBody ? this.body : this.hdr;
      const need = this.inBody ? this.want : VHOST_USER_HDR_SIZE;
      if (this.got < need) {
        const r = native.recvmsg(this.fd, target.subarray(this.got, need));
        if (r === null) return null;
        for (const f of r.fds) this.fds.push(f);
        if (r.truncated) throw new VhostUserError('a message came with more descriptors than any request carries');
        if (this.fds.length > VHOST_USER_MAX_FDS) throw new VhostUserError(`a message came with ${this.fds.length} descriptors; at most ${VHOST_USER_MAX_FDS} are allowed`);
        if (r.len === 0) return 'closed';
        this.got += r.len;
        if (this.got < need) continue;
      }
      if (!this.inBody) {
        const flags = this.hdrView.getUint32(VHOST_USER_HDR_FLAGS, true);
        const size = this.hdrView.getUint32(VHOST_USER_HDR_SIZE_FIELD, true);
        const req = this.hdrView.getUint32(VHOST_USER_HDR_REQUEST, true);
        if ((flags & VHOST_USER_VERSION_MASK) !== VHOST_USER_VERSION) throw new VhostUserError(`request ${req} has protocol version ${flags & VHOST_USER_VERSION_MASK}; only version 1 exists`);
        if (flags & VHOST_USER_REPLY) throw new VhostUserError(`request ${req} has the reply flag set: the frontend sends requests, not replies`);
        if (size > VHOST_USER_PAYLOAD_MAX) throw new VhostUserError(`request ${req} announces a ${size}-byte payload; no request is larger than ${VHOST_USER_PAYLOAD_MAX}`);
        this.inBody = true;
        this.want = size;
        this.got = 0;
        if (size > 0) continue;
      }
      this.msg.request = this.hdrView.getUint32(VHOST_USER_HDR_REQUEST, true);
      this.msg.flags = this.hdrView.getUint32(VHOST_USER_HDR_FLAGS, true);
      this.msg.payload = new DataView(this.body.buffer, 0, this.want);
      this.msg.fds = this.fds;
      this.fds = [];
      this.inBody = false;
      this.got = 0;
      this.want = 0;
      return this.msg;
    }
  }

  /** Closes descriptors of a message that was never completed. */
  discard(): void {
    for (const f of this.fds) native.close(f);
    this.fds = [];
  }
}

/** A reply: the request's code, version 1 with the reply bit, and `payload`. */
export function sendReply(fd: number, request: number, payload: Uint8Array, fds?: number[]): void {
  const m = new Uint8Array(VHOST_USER_HDR_SIZE + payload.length);
  const v = new DataView(m.buffer);
  v.setUint32(VHOST_USER_HDR_REQUEST, request, true);
  v.setUint32(VHOST_USER_HDR_FLAGS, VHOST_USER_VERSION | VHOST_USER_REPLY, true);
  v.setUint32(VHOST_USER_HDR_SIZE_FIELD, payload.length, true);
  m.set(payload, VHOST_USER_HDR_SIZE);
  let sent: number;
  try {
    sent = native.sendmsg(fd, m, fds);
  } catch (e) {
    throw new VhostUserError(`cannot reply to request ${request}: ${(e as Error).message}`);
  }
  // A frontend that does not read its replies fills the socket: it is not following the protocol.
  if (sent !== m.length) throw new VhostUserError(`reply to request ${request} went out short (${sent} of ${m.length} bytes)`);
}
