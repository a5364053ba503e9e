// A vhost-user frontend written here from the spec (QEMU's role), for tests: the wire format by
// hand, so a test can send any message a compromised QEMU could, and drivers on split rings in a
// memfd it shares (virtio-blk on one queue, virtio-net on rx and tx), so a test can also do honest
// I/O and check what came back.
import { setTimeout as sleep } from 'node:timers/promises';
import {
  VHOST_USER_F_PROTOCOL_FEATURES,
  VHOST_USER_HDR_SIZE,
  VHOST_USER_NEED_REPLY,
  VHOST_USER_PROTOCOL_F_REPLY_ACK,
  VHOST_USER_REPLY,
  VHOST_USER_VERSION,
  VhostUserRequest as R,
} from '../../abi/vhost-user.js';
import {
  VIRTIO_BLK_OUTHDR_SIZE,
  VIRTIO_BLK_T_IN,
  VIRTIO_F_VERSION_1,
  VIRTIO_NET_HDR_NUM_BUFFERS,
  VIRTIO_NET_HDR_SIZE,
  VIRTIO_NET_RXQ,
  VIRTIO_NET_TXQ,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VIRTQ_USED_IDX,
  VIRTQ_USED_RING,
  bit,
} from '../../abi/virtio.js';
import { native } from '../../native/index.js';
import { waitFor } from '../../testing/until.js';

/** how long a reply may take (a backend in another process, on a machine a neighbour is loading) */
const REPLY_S = 30;

export interface Reply {
  req: number;
  flags: number;
  payload: DataView;
  fds: number[];
}

export class Frontend {
  readonly fd: number;
  private readonly buf = new Uint8Array(4096 + VHOST_USER_HDR_SIZE);

  constructor(path: string) {
    this.fd = native.unixConnect(path);
  }

  send(req: number, payload: Uint8Array = new Uint8Array(0), fds: number[] = [], flags = VHOST_USER_VERSION, announced = payload.length): void {
    const m = new Uint8Array(VHOST_USER_HDR_SIZE + payload.length);
    const v = new DataView(m.buffer);
    v.setUint32(0, req, true);
    v.setUint32(4, flags, true);
    v.setUint32(8, announced, true);
    m.set(payload, VHOST_USER_HDR_SIZE);
    native.sendmsg(this.fd, m, fds);
  }

  u64(req: number, value: bigint, flags = VHOST_USER_VERSION, fds: number[] = []): void {
    const b = new DataView(new ArrayBuffer(8));
    b.setBigUint64(0, value, true);
    this.send(req, new Uint8Array(b.buffer), fds, flags);
  }

  state(req: number, index: number, num: number, flags = VHOST_USER_VERSION): void {
    const b = new DataView(new ArrayBuffer(8));
    b.setUint32(0, index, true);
    b.setUint32(4, num, true);
    this.send(req, new Uint8Array(b.buffer), [], flags);
  }

  /** The next reply, or 'closed' once the backend hung up. */
  async reply(): Promise<Reply | 'closed'> {
    let got = 0;
    const fds: number[] = [];
    const end = Date.now() + REPLY_S * 1000;
    for (;;) {
      const want = got < VHOST_USER_HDR_SIZE ? VHOST_USER_HDR_SIZE : VHOST_USER_HDR_SIZE + new DataView(this.buf.buffer).getUint32(8, true);
      if (got === want) {
        const v = new DataView(this.buf.buffer);
        return { req: v.getUint32(0, true), flags: v.getUint32(4, true), payload: new DataView(this.buf.buffer.slice(VHOST_USER_HDR_SIZE, want)), fds };
      }
      const r = native.recvmsg(this.fd, this.buf.subarray(got, want));
      if (r === null) {
        if (Date.now() > end) throw new Error(`no reply from the backend in ${REPLY_S} s (${got} bytes of one so far)`);
        await sleep(1);
        continue;
      }
      fds.push(...r.fds);
      if (r.len === 0) return 'closed';
      got += r.len;
    }
  }

  /** Reads replies until the backend hangs up (what it answered before that does not matter). */
  async untilClosed(): Promise<void> {
    while ((await this.reply()) !== 'closed');
  }

  /** The u64 answer to `req`; anything else is an error naming what came. */
  async u64Reply(req: number): Promise<bigint> {
    const r = await this.reply();
    if (r === 'closed') throw new Error(`backend closed instead of answering ${R[req]}`);
    if (r.req !== req || r.flags !== (VHOST_USER_VERSION | VHOST_USER_REPLY)) throw new Error(`expected the reply to ${R[req]}, got request ${r.req} with flags 0x${r.flags.toString(16)}`);
    return r.payload.getBigUint64(0, true);
  }

  close(): void {
    native.close(this.fd);
  }
}

export function memTable(regions: { gpa: number; size: number; uaddr: number; off: number }[]): Uint8Array {
  const b = new DataView(new ArrayBuffer(8 + 32 * regions.length));
  b.setUint32(0, regions.length, true);
  regions.forEach((r, i) => {
    const o = 8 + 32 * i;
    b.setBigUint64(o, BigInt(r.gpa), true);
    b.setBigUint64(o + 8, BigInt(r.size), true);
    b.setBigUint64(o + 16, BigInt(r.uaddr), true);
    b.setBigUint64(o + 24, BigInt(r.off), true);
  });
  return new Uint8Array(b.buffer);
}

export function vringAddr(index: number, desc: number, used: number, avail: number, flags = 0, log = 0): Uint8Array {
  const b = new DataView(new ArrayBuffer(40));
  b.setUint32(0, index, true);
  b.setUint32(4, flags, true);
  b.setBigUint64(8, BigInt(desc), true);
  b.setBigUint64(16, BigInt(used), true);
  b.setBigUint64(24, BigInt(avail), true);
  b.setBigUint64(32, BigInt(log), true);
  return new Uint8Array(b.buffer);
}

export function logBase(size: number, offset: number): Uint8Array {
  const b = new DataView(new ArrayBuffer(16));
  b.setBigUint64(0, BigInt(size), true);
  b.setBigUint64(8, BigInt(offset), true);
  return new Uint8Array(b.buffer);
}

/**
 * The guest layout the drivers below use: 1 MiB of RAM at GPA, mapped by "QEMU" at UADDR. Queue
 * q's rings are at q * RING_STRIDE (descriptors, then avail at +AVAIL, used at +USED); guest data
 * goes from 0x10000 up.
 */
export const GUEST = { MEM: 1 << 20, GPA: 0x40000000, UADDR: 0x7f1200000000, DESC: 0, AVAIL: 0x1000, USED: 0x2000, RING_STRIDE: 0x4000, QSIZE: 8 } as const;

export interface RawDesc {
  i: number;
  addr: number;
  len: number;
  flags: number;
  next: number;
}

/** Queues 0..n-1 running on one guest memory, each a split ring of GUEST.QSIZE entries. */
export interface Queues {
  fe: Frontend;
  ram: DataView;
  memfd: number;
  call: number[];
  kick: number[];
  /** GET_FEATURES' answer */
  offered: bigint;
  /** the features acked */
  acked: bigint;
  /** the offset in ram of queue q's ring part (GUEST.DESC, AVAIL or USED) */
  ring(q: number, part: number): number;
  desc(q: number, d: RawDesc): void;
  /** Makes `head` available on queue q and kicks; gives the avail index it took. */
  publish(q: number, head: number): number;
  usedIdx(q: number): number;
  /** Writes descriptors by hand and makes `head` available on queue q: for hostile chains. */
  raw(q: number, descs: RawDesc[], head: number): void;
  close(): void;
}

/**
 * The handshake QEMU makes for a vhost-user device, then `n` queues running: features (with
 * PROTOCOL_FEATURES and `protocol`), the memory table, each ring, its call and its kick. Every
 * step that can be acked is, so a refusal shows as an error naming the step.
 */
export async function startQueues(path: string, protocol: bigint, n: number): Promise<Queues> {
  const { MEM, GPA, UADDR, DESC, AVAIL, USED, RING_STRIDE, QSIZE } = GUEST;
  const fe = new Frontend(path);
  const ack = protocol | bit(VHOST_USER_PROTOCOL_F_REPLY_ACK);
  const acks = async (req: number) => {
    const r = await fe.u64Reply(req);
    if (r !== 0n) throw new Error(`the backend refused ${R[req]} (${r})`);
  };
  fe.send(R.GET_FEATURES);
  const offered = await fe.u64Reply(R.GET_FEATURES);
  fe.send(R.GET_PROTOCOL_FEATURES);
  const pf = await fe.u64Reply(R.GET_PROTOCOL_FEATURES);
  if ((pf & ack) !== ack) throw new Error(`the backend offers protocol features 0x${pf.toString(16)}, without some of 0x${ack.toString(16)}`);
  fe.u64(R.SET_PROTOCOL_FEATURES, ack);
  const acked = bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_RING_F_EVENT_IDX) | bit(VHOST_USER_F_PROTOCOL_FEATURES);
  fe.u64(R.SET_FEATURES, acked, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY);
  await acks(R.SET_FEATURES);
  const memfd = native.memfdCreate('guest', MEM);
  const ram = new DataView(native.mmap(memfd, MEM, true));
  fe.send(R.SET_MEM_TABLE, memTable([{ gpa: GPA, size: MEM, uaddr: UADDR, off: 0 }]), [memfd], VHOST_USER_VERSION | VHOST_USER_NEED_REPLY);
  await acks(R.SET_MEM_TABLE);
  const ring = (q: number, part: number) => q * RING_STRIDE + part;
  const call: number[] = [];
  const kick: number[] = [];
  for (let q = 0; q < n; q++) {
    fe.state(R.SET_VRING_NUM, q, QSIZE);
    fe.state(R.SET_VRING_BASE, q, 0);
    fe.send(R.SET_VRING_ADDR, vringAddr(q, UADDR + ring(q, DESC), UADDR + ring(q, USED), UADDR + ring(q, AVAIL)));
    call.push(native.eventfd());
    kick.push(native.eventfd());
    fe.u64(R.SET_VRING_CALL, BigInt(q), VHOST_USER_VERSION, [call[q]]);
    fe.u64(R.SET_VRING_KICK, BigInt(q), VHOST_USER_VERSION, [kick[q]]);
    fe.state(R.SET_VRING_ENABLE, q, 1, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY);
    await acks(R.SET_VRING_ENABLE);
  }
  const desc = (q: number, d: RawDesc) => {
    const o = ring(q, DESC) + 16 * d.i;
    ram.setBigUint64(o, BigInt(d.addr), true);
    ram.setUint32(o + 8, d.len, true);
    ram.setUint16(o + 12, d.flags, true);
    ram.setUint16(o + 14, d.next, true);
  };
  const publish = (q: number, head: number): number => {
    const a = ring(q, AVAIL);
    const idx = ram.getUint16(a + 2, true);
    ram.setUint16(a + 4 + 2 * (idx % QSIZE), head, true);
    ram.setUint16(a + 2, (idx + 1) & 0xffff, true);
    native.eventfdSignal(kick[q]);
    return idx;
  };
  return {
    fe,
    ram,
    memfd,
    call,
    kick,
    offered,
    acked,
    ring,
    desc,
    publish,
    usedIdx: (q) => ram.getUint16(ring(q, USED) + VIRTQ_USED_IDX, true),
    raw(q, descs, head) {
      for (const d of descs) desc(q, d);
      publish(q, head);
    },
    close() {
      fe.close();
      native.munmap(ram.buffer as ArrayBuffer);
      for (const f of [memfd, ...call, ...kick]) native.close(f);
    },
  };
}

export interface BlkQueue extends Queues {
  /** Puts one request (header, data, status in three descriptors) on ring 0 and waits for it; gives the status byte's offset. */
  request(type: number, sector: number, data: number, len: number): Promise<number>;
}

/** A virtio-blk disk's one queue, running. */
export async function startBlkQueue(path: string, protocol: bigint): Promise<BlkQueue> {
  const q = await startQueues(path, protocol, 1);
  const { GPA } = GUEST;
  // two slots of three descriptors; each request is answered before the next is made
  let made = 0;
  return Object.assign(q, {
    async request(type: number, sector: number, data: number, len: number) {
      const slot = made++ % 2;
      const hdr = 0x10000 + slot * 0x100;
      const status = hdr + 0x80;
      q.ram.setUint32(hdr, type, true);
      q.ram.setBigUint64(hdr + 8, BigInt(sector), true);
      q.ram.setUint8(status, 0xff);
      const base = slot * 3;
      q.desc(0, { i: base, addr: GPA + hdr, len: VIRTIO_BLK_OUTHDR_SIZE, flags: VIRTQ_DESC_F_NEXT, next: base + 1 });
      q.desc(0, { i: base + 1, addr: GPA + data, len, flags: VIRTQ_DESC_F_NEXT | (type === VIRTIO_BLK_T_IN ? VIRTQ_DESC_F_WRITE : 0), next: base + 2 });
      q.desc(0, { i: base + 2, addr: GPA + status, len: 1, flags: VIRTQ_DESC_F_WRITE, next: 0 });
      const idx = q.publish(0, base);
      await waitFor(() => q.usedIdx(0) === ((idx + 1) & 0xffff), `request ${idx} on the used ring`);
      return status;
    },
  });
}

/** Where the net driver keeps its buffers: QSIZE receive buffers, then one transmit buffer. */
const NET_RX = 0x10000;
const NET_BUF = 0x800;
const NET_TX = NET_RX + GUEST.QSIZE * NET_BUF;

export interface NetQueues extends Queues {
  /** Sends one Ethernet frame on the tx queue (a zeroed header, then the frame) and waits until it is answered. */
  send(frame: Uint8Array): Promise<void>;
  /** Posts every rx buffer (startNetQueues does unless told not to). */
  postRx(): void;
  /** Hands each frame received since the last call to `each`, reposting its buffer; gives how many there were. */
  drain(each: (frame: Uint8Array) => void): number;
}

/**
 * A virtio-net device's rx and tx queues running, with every rx descriptor posted as one
 * NET_BUF-byte buffer (a header and a 1514-byte frame fit; no MRG_RXBUF).
 */
export async function startNetQueues(path: string, protocol: bigint, opts: { postRx?: boolean } = {}): Promise<NetQueues> {
  const q = await startQueues(path, protocol, 2);
  const { GPA, QSIZE, USED } = GUEST;
  const rx = VIRTIO_NET_RXQ;
  const tx = VIRTIO_NET_TXQ;
  const post = (i: number) => {
    q.desc(rx, { i, addr: GPA + NET_RX + i * NET_BUF, len: NET_BUF, flags: VIRTQ_DESC_F_WRITE, next: 0 });
    q.publish(rx, i);
  };
  const postRx = () => {
    for (let i = 0; i < QSIZE; i++) post(i);
  };
  if (opts.postRx ?? true) postRx();
  let seen = 0;
  const bytes = new Uint8Array(q.ram.buffer);
  return Object.assign(q, {
    postRx,
    async send(frame: Uint8Array) {
      if (VIRTIO_NET_HDR_SIZE + frame.length > NET_BUF) throw new RangeError(`a ${frame.length}-byte frame does not fit the test's tx buffer`);
      bytes.fill(0, NET_TX, NET_TX + VIRTIO_NET_HDR_SIZE);
      bytes.set(frame, NET_TX + VIRTIO_NET_HDR_SIZE);
      q.desc(tx, { i: 0, addr: GPA + NET_TX, len: VIRTIO_NET_HDR_SIZE + frame.length, flags: 0, next: 0 });
      const idx = q.publish(tx, 0);
      await waitFor(() => q.usedIdx(tx) === ((idx + 1) & 0xffff), `frame ${idx} answered on the tx ring`);
    },
    drain(each: (frame: Uint8Array) => void) {
      let n = 0;
      while (seen !== q.usedIdx(rx)) {
        const e = q.ring(rx, USED) + VIRTQ_USED_RING + 8 * (seen % QSIZE);
        const id = q.ram.getUint32(e, true);
        const len = q.ram.getUint32(e + 4, true);
        seen = (seen + 1) & 0xffff;
        if (id >= QSIZE || len < VIRTIO_NET_HDR_SIZE || len > NET_BUF) throw new Error(`the backend used rx descriptor ${id} with length ${len}`);
        const at = NET_RX + id * NET_BUF;
        const nb = q.ram.getUint16(at + VIRTIO_NET_HDR_NUM_BUFFERS, true);
        if (nb !== 1) throw new Error(`rx header of descriptor ${id} says num_buffers ${nb} without MRG_RXBUF`);
        const frame = bytes.slice(at + VIRTIO_NET_HDR_SIZE, at + len);
        post(id);
        each(frame);
        n++;
      }
      return n;
    },
  });
}
