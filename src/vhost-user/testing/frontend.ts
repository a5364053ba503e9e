// A vhost-user frontend written here from the spec (QEMU's role), for tests: the wire format by
// hand, so a test can send any message a compromised QEMU could, and a virtio-blk driver on one
// split ring in a memfd it shares, so a test can also do honest I/O and check what came back.
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
import { VIRTIO_BLK_OUTHDR_SIZE, VIRTIO_BLK_T_IN, VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VIRTQ_USED_IDX, bit } from '../../abi/virtio.js';
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

/** The guest layout the driver below uses: 1 MiB of RAM at GPA, mapped by "QEMU" at UADDR. */
export const GUEST = { MEM: 1 << 20, GPA: 0x40000000, UADDR: 0x7f1200000000, DESC: 0, AVAIL: 0x1000, USED: 0x2000, QSIZE: 8 } as const;

export interface BlkQueue {
  fe: Frontend;
  ram: DataView;
  memfd: number;
  call: number;
  kick: number;
  /** GET_FEATURES' answer */
  offered: bigint;
  /** the features acked */
  acked: bigint;
  /** Puts one request (header, data, status in three descriptors) on ring 0 and waits for it; gives the status byte's offset. */
  request(type: number, sector: number, data: number, len: number): Promise<number>;
  /** Writes descriptors `chain` by hand and makes `head` available: for hostile chains. */
  raw(descs: { i: number; addr: number; len: number; flags: number; next: number }[], head: number): void;
  close(): void;
}

/**
 * The handshake QEMU makes for a vhost-user-blk disk, then ring 0 running: features (with
 * PROTOCOL_FEATURES and `protocol`), the memory table, the ring, call and kick. Every step that
 * can be acked is, so a refusal shows as an error naming the step.
 */
export async function startBlkQueue(path: string, protocol: bigint): Promise<BlkQueue> {
  const { MEM, GPA, UADDR, DESC, AVAIL, USED, QSIZE } = GUEST;
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
  fe.state(R.SET_VRING_NUM, 0, QSIZE);
  fe.state(R.SET_VRING_BASE, 0, 0);
  fe.send(R.SET_VRING_ADDR, vringAddr(0, UADDR + DESC, UADDR + USED, UADDR + AVAIL));
  const call = native.eventfd();
  const kick = native.eventfd();
  fe.u64(R.SET_VRING_CALL, 0n, VHOST_USER_VERSION, [call]);
  fe.u64(R.SET_VRING_KICK, 0n, VHOST_USER_VERSION, [kick]);
  fe.state(R.SET_VRING_ENABLE, 0, 1, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY);
  await acks(R.SET_VRING_ENABLE);

  const desc = (i: number, addr: number, len: number, flags: number, next: number) => {
    const o = DESC + 16 * i;
    ram.setBigUint64(o, BigInt(addr), true);
    ram.setUint32(o + 8, len, true);
    ram.setUint16(o + 12, flags, true);
    ram.setUint16(o + 14, next, true);
  };
  const publish = (head: number): number => {
    const idx = ram.getUint16(AVAIL + 2, true);
    ram.setUint16(AVAIL + 4 + 2 * (idx % QSIZE), head, true);
    ram.setUint16(AVAIL + 2, (idx + 1) & 0xffff, true);
    native.eventfdSignal(kick);
    return idx;
  };
  // two slots of three descriptors; each request is answered before the next is made
  let made = 0;
  return {
    fe,
    ram,
    memfd,
    call,
    kick,
    offered,
    acked,
    async request(type, sector, data, len) {
      const slot = made++ % 2;
      const hdr = 0x10000 + slot * 0x100;
      const status = hdr + 0x80;
      ram.setUint32(hdr, type, true);
      ram.setBigUint64(hdr + 8, BigInt(sector), true);
      ram.setUint8(status, 0xff);
      const base = slot * 3;
      desc(base, GPA + hdr, VIRTIO_BLK_OUTHDR_SIZE, VIRTQ_DESC_F_NEXT, base + 1);
      desc(base + 1, GPA + data, len, VIRTQ_DESC_F_NEXT | (type === VIRTIO_BLK_T_IN ? VIRTQ_DESC_F_WRITE : 0), base + 2);
      desc(base + 2, GPA + status, 1, VIRTQ_DESC_F_WRITE, 0);
      const idx = publish(base);
      await waitFor(() => ram.getUint16(USED + VIRTQ_USED_IDX, true) === ((idx + 1) & 0xffff), `request ${idx} on the used ring`);
      return status;
    },
    raw(descs, head) {
      for (const d of descs) desc(d.i, d.addr, d.len, d.flags, d.next);
      publish(head);
    },
    close() {
      fe.close();
      native.munmap(ram.buffer as ArrayBuffer);
      for (const f of [memfd, call, kick]) native.close(f);
    },
  };
}
