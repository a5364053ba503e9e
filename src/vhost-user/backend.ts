// The backend side of one vhost-user connection (QEMU docs/interop/vhost-user.rst): feature and
// protocol-feature negotiation, the memory table, vring setup with kick/call/err eventfds, the
// inflight region, config space, status and reset, driving any VirtioDevice.
//
// The frontend is untrusted. Every payload is size-checked before it is read, every descriptor
// that arrives is either kept or closed, and a request that breaks the protocol ends the
// connection with the reason logged: the device stops, memory is unmapped once what was in
// flight has completed, and the listener waits for the next frontend. Nothing here throws into
// the event loop.
import {
  CONFIG_FLAGS,
  CONFIG_OFFSET,
  CONFIG_SIZE,
  INFLIGHT_MMAP_OFFSET,
  INFLIGHT_MMAP_SIZE,
  INFLIGHT_NUM_QUEUES,
  INFLIGHT_QUEUE_SIZE,
  LOG_MMAP_OFFSET,
  LOG_MMAP_SIZE,
  MEM_REGION_GPA,
  MEM_REGION_MMAP_OFFSET,
  MEM_REGION_SIZE,
  MEM_REGION_UADDR,
  VHOST_F_LOG_ALL,
  VHOST_MEMORY_BASELINE_NREGIONS,
  VHOST_USER_CONFIG_HDR_SIZE,
  VHOST_USER_CONFIG_PAYLOAD_MAX,
  VHOST_USER_F_PROTOCOL_FEATURES,
  VHOST_USER_INFLIGHT_SIZE,
  VHOST_USER_LOG_SIZE,
  VHOST_USER_MEM_REGION_SIZE,
  VHOST_USER_MEM_TABLE_HDR,
  VHOST_USER_NEED_REPLY,
  VHOST_USER_PROTOCOL_F_CONFIG,
  VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS,
  VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD,
  VHOST_USER_PROTOCOL_F_LOG_SHMFD,
  VHOST_USER_PROTOCOL_F_MQ,
  VHOST_USER_PROTOCOL_F_RARP,
  VHOST_USER_PROTOCOL_F_REPLY_ACK,
  VHOST_USER_PROTOCOL_F_RESET_DEVICE,
  VHOST_USER_PROTOCOL_F_STATUS,
  VHOST_USER_SINGLE_REGION_SIZE,
  VHOST_USER_U64_SIZE,
  VHOST_USER_VRING_ADDR_SIZE,
  VHOST_USER_VRING_IDX_MASK,
  VHOST_USER_VRING_NOFD_MASK,
  VHOST_USER_VRING_STATE_SIZE,
  VHOST_VRING_F_LOG,
  VRING_ADDR_AVAIL,
  VRING_ADDR_DESC,
  VRING_ADDR_FLAGS,
  VRING_ADDR_INDEX,
  VRING_ADDR_LOG,
  VRING_ADDR_USED,
  VRING_STATE_INDEX,
  VRING_STATE_NUM,
  VhostUserRequest as R,
} from '../abi/vhost-user.js';
import { VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC, VIRTQ_MAX_SIZE, bit } from '../abi/virtio.js';
import { native, type Watcher } from '../native/index.js';
import type { VirtioDevice, VirtioQueueHost } from '../virtio/device.js';
import { GuestMemory, GuestMemoryError } from '../virtio/guest-memory.js';
import { SplitQueue } from '../virtio/virtqueue.js';
import { DirtyLog } from './dirty-log.js';
import { InflightRegion, type InflightQueue } from './inflight.js';
import { MessageReader, VhostUserError, sendReply, type VhostUserMessage } from './wire.js';

/** memory slots we offer with CONFIGURE_MEM_SLOTS (QEMU uses a handful) */
export const MAX_MEM_SLOTS = 32;

const PROTOCOL_FEATURES =
  bit(VHOST_USER_PROTOCOL_F_MQ) |
  bit(VHOST_USER_PROTOCOL_F_LOG_SHMFD) |
  bit(VHOST_USER_PROTOCOL_F_REPLY_ACK) |
  bit(VHOST_USER_PROTOCOL_F_CONFIG) |
  bit(VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD) |
  bit(VHOST_USER_PROTOCOL_F_RESET_DEVICE) |
  bit(VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS) |
  bit(VHOST_USER_PROTOCOL_F_STATUS);

/** Requests whose answer is a reply of their own (REPLY_ACK adds none to these). */
const HAS_REPLY = new Set<number>([R.GET_FEATURES, R.GET_PROTOCOL_FEATURES, R.SET_LOG_BASE, R.GET_VRING_BASE, R.GET_QUEUE_NUM, R.GET_CONFIG, R.GET_INFLIGHT_FD, R.GET_MAX_MEM_SLOTS, R.GET_STATUS]);

interface Vring {
  num: number;
  desc: number;
  avail: number;
  used: number;
  addrSet: boolean;
  /** VHOST_VRING_F_LOG: log used-ring writes, at this guest-physical address */
  logUsed: boolean;
  logGpa: number;
  /** the queue while it runs */
  queue: SplitQueue | null;
  base: number;
  kick: number;
  call: number;
  err: number;
  enabled: boolean;
  watcher: Watcher | null;
  running: boolean;
  /** GET_VRING_BASE is draining it */
  stopping: Promise<number> | null;
}

export interface BackendEvents {
  log(line: string): void;
  /** the connection ended (the frontend left, or we cut it off for `reason`) */
  closed(reason: string): void;
  /** a queue started (the first time: the guest's driver is up) */
  queueStarted?(index: number): void;
}

export class VhostUserBackend {
  private readonly reader: MessageReader;
  private readonly watcher: Watcher;
  private readonly mem = new GuestMemory(MAX_MEM_SLOTS);
  private readonly vrings: Vring[];
  private acked = 0n;
  private protocol = 0n;
  private status = 0;
  private inflight: InflightRegion | null = null;
  /** the migration's dirty log (SET_LOG_BASE); marks go to it while LOG_ALL is acked */
  private dirtyLog: DirtyLog | null = null;
  /** what the log last said about logging (it reports the switches, not every message) */
  private loggedOn = false;
  private ended = false;
  /** messages are handled one at a time; some wait for in-flight I/O */
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly fd: number,
    private readonly device: VirtioDevice,
    private readonly ev: BackendEvents,
  ) {
    this.reader = new MessageReader(fd);
    this.vrings = Array.from({ length: device.numQueues }, () => this.freshVring());
    this.watcher = new native.Watcher(fd, 'readable', () => this.onReadable());
  }

  private freshVring(): Vring {
    return { num: 0, desc: 0, avail: 0, used: 0, addrSet: false, logUsed: false, logGpa: 0, queue: null, base: 0, kick: -1, call: -1, err: -1, enabled: false, watcher: null, running: false, stopping: null };
  }

  get features(): bigint {
    return this.device.features | bit(VHOST_USER_F_PROTOCOL_FEATURES) | bit(VHOST_F_LOG_ALL);
  }

  /**
   * CONFIG only for a device whose config space the backend serves (QEMU's virtio-net keeps its
   * own); RARP only for one that can announce a MAC on its segment.
   */
  private get protocolFeatures(): bigint {
    let f = PROTOCOL_FEATURES;
    if (!this.device.servesConfig) f &= ~bit(VHOST_USER_PROTOCOL_F_CONFIG);
    if (this.device.announce) f |= bit(VHOST_USER_PROTOCOL_F_RARP);
    return f;
  }

  /** Whether writes to guest memory are being logged (a migration is copying it). */
  get logging(): boolean {
    return this.dirtyLog !== null && (this.acked & bit(VHOST_F_LOG_ALL)) !== 0n;
  }

  /** Points every running queue at the log, or at nothing, as LOG_ALL and the ring flags say. */
  private applyLog(): void {
    for (const v of this.vrings) if (v.queue) this.logRing(v, v.queue);
    const on = this.logging;
    if (on !== this.loggedOn) this.ev.log(`${this.device.name}: vhost-user: dirty logging ${on ? `on (${this.dirtyLog?.size}-byte log)` : 'off'}`);
    this.loggedOn = on;
  }

  private logRing(v: Vring, q: SplitQueue): void {
    q.logTo(this.logging ? this.dirtyLog : null, v.logUsed ? v.logGpa : -1);
  }

  private onReadable(): void {
    for (;;) {
      let m: VhostUserMessage | null | 'closed';
      try {
        m = this.reader.read();
      } catch (e) {
        this.end(`protocol error: ${(e as Error).message}`);
        return;
      }
      if (m === null) return;
      if (m === 'closed') {
        this.end('the frontend closed the connection');
        return;
      }
      // Copy out what the handler needs: the reader's buffer is reused for the next message.
      const req = m.request;
      const flags = m.flags;
      const payload = new DataView(m.payload.buffer.slice(0, m.payload.byteLength));
      const fds = m.fds;
      this.chain = this.chain.then(() => this.handle(req, flags, payload, fds));
    }
  }

  private async handle(req: number, flags: number, p: DataView, fds: number[]): Promise<void> {
    if (this.ended) {
      for (const f of fds) native.close(f);
      return;
    }
    const kept = new Set<number>();
    try {
      const ok = await this.dispatch(req, p, fds, kept);
      if (flags & VHOST_USER_NEED_REPLY && this.has(VHOST_USER_PROTOCOL_F_REPLY_ACK) && !HAS_REPLY.has(req)) this.replyU64(req, ok ? 0n : 1n);
    } catch (e) {
      const what = R[req] ?? `request ${req}`;
      this.end(`${what}: ${(e as Error).message}`);
    } finally {
      for (const f of fds) if (!kept.has(f)) native.close(f);
    }
  }

  private has(pf: number): boolean {
    return (this.protocol & bit(pf)) !== 0n;
  }

  /** Handles one request; false means "refused" for REPLY_ACK. Throws to end the connection. */
  private async dispatch(req: number, p: DataView, fds: number[], kept: Set<number>): Promise<boolean> {
    const size = (n: number) => {
      if (p.byteLength !== n) throw new VhostUserError(`payload is ${p.byteLength} bytes; it must be ${n}`);
    };
    const noFds = () => {
      if (fds.length) throw new VhostUserError(`came with ${fds.length} descriptors; it takes none`);
    };
    switch (req) {
      case R.GET_FEATURES:
        noFds();
        this.replyU64(req, this.features);
        return true;
      case R.SET_FEATURES: {
        size(VHOST_USER_U64_SIZE);
        noFds();
        const f = p.getBigUint64(0, true);
        const extra = f & ~this.features;
        if (extra) throw new VhostUserError(`acks feature bits 0x${extra.toString(16)} we never offered`);
        // QEMU turns LOG_ALL on and off with the rings running (that is what a migration does);
        // anything else changing under a running ring is a protocol error.
        if ((f ^ this.acked) & ~bit(VHOST_F_LOG_ALL) && this.vrings.some((v) => v.running)) throw new VhostUserError('features changed while a queue runs');
        const stopsLogging = (this.acked & bit(VHOST_F_LOG_ALL)) !== 0n && (f & bit(VHOST_F_LOG_ALL)) === 0n;
        this.acked = f;
        this.device.setFeatures?.(f);
        this.applyLog();
        if (stopsLogging) {
          // QEMU frees its log once logging ends; a new one comes with the next SET_LOG_BASE.
          this.dirtyLog?.close();
          this.dirtyLog = null;
        }
        return true;
      }
      case R.SET_OWNER:
        noFds();
        return true;
      case R.RESET_OWNER:
      case R.RESET_DEVICE:
        noFds();
        await this.reset();
        return true;
      case R.GET_PROTOCOL_FEATURES:
        noFds();
        this.replyU64(req, this.protocolFeatures);
        return true;
      case R.SET_PROTOCOL_FEATURES: {
        size(VHOST_USER_U64_SIZE);
        noFds();
        const f = p.getBigUint64(0, true);
        const extra = f & ~this.protocolFeatures;
        if (extra) throw new VhostUserError(`acks protocol feature bits 0x${extra.toString(16)} we never offered`);
        this.protocol = f;
        return true;
      }
      case R.GET_QUEUE_NUM:
        noFds();
        this.replyU64(req, BigInt(this.device.numQueues));
        return true;
      case R.GET_MAX_MEM_SLOTS:
        noFds();
        this.replyU64(req, BigInt(MAX_MEM_SLOTS));
        return true;
      case R.SET_MEM_TABLE: {
        if (p.byteLength < VHOST_USER_MEM_TABLE_HDR) throw new VhostUserError(`payload of ${p.byteLength} bytes has no region count`);
        const n = p.getUint32(0, true);
        if (n < 1 || n > VHOST_MEMORY_BASELINE_NREGIONS) throw new VhostUserError(`${n} regions; 1..${VHOST_MEMORY_BASELINE_NREGIONS} are allowed`);
        size(VHOST_USER_MEM_TABLE_HDR + n * VHOST_USER_MEM_REGION_SIZE);
        if (fds.length !== n) throw new VhostUserError(`${n} regions came with ${fds.length} descriptors`);
        await this.withQueuesStopped(() => {
          this.mem.clear();
          for (let i = 0; i < n; i++) this.mem.add(this.region(p, VHOST_USER_MEM_TABLE_HDR + i * VHOST_USER_MEM_REGION_SIZE), fds[i]);
        });
        return true;
      }
      case R.ADD_MEM_REG: {
        size(VHOST_USER_SINGLE_REGION_SIZE);
        if (fds.length !== 1) throw new VhostUserError(`came with ${fds.length} descriptors; it takes the region's one`);
        await this.withQueuesStopped(() => this.mem.add(this.region(p, 8), fds[0]));
        return true;
      }
      case R.REM_MEM_REG: {
        size(VHOST_USER_SINGLE_REGION_SIZE);
        // QEMU may send the region's fd along; it is closed with the message.
        await this.withQueuesStopped(() => this.mem.remove(this.region(p, 8)));
        return true;
      }
      case R.SET_VRING_NUM: {
        const [v, num] = this.vringState(p, fds);
        if (num === 0 || num > VIRTQ_MAX_SIZE || (num & (num - 1)) !== 0) throw new VhostUserError(`queue size ${num} is not a power of two in 1..${VIRTQ_MAX_SIZE}`);
        this.notRunning(v, 'SET_VRING_NUM').num = num;
        return true;
      }
      case R.SET_VRING_BASE: {
        const [v, num] = this.vringState(p, fds);
        if (num > 0xffff) throw new VhostUserError(`ring base ${num} does not fit a split ring's 16-bit index`);
        this.notRunning(v, 'SET_VRING_BASE').base = num;
        return true;
      }
      case R.SET_VRING_ADDR: {
        size(VHOST_USER_VRING_ADDR_SIZE);
        noFds();
        const v = this.vring(p.getUint32(VRING_ADDR_INDEX, true));
        const flags = p.getUint32(VRING_ADDR_FLAGS, true);
        if (flags & ~VHOST_VRING_F_LOG) throw new VhostUserError(`ring flags 0x${flags.toString(16)}: only VHOST_VRING_F_LOG (1) exists`);
        const desc = this.u53(p, VRING_ADDR_DESC, 'descriptor table address');
        const used = this.u53(p, VRING_ADDR_USED, 'used ring address');
        const avail = this.u53(p, VRING_ADDR_AVAIL, 'avail ring address');
        const logGpa = this.u53(p, VRING_ADDR_LOG, 'used ring log address');
        // A running ring may only have its logging switched (QEMU does so when a migration starts
        // and ends); moving its areas needs GET_VRING_BASE first.
        if (v.running && (desc !== v.desc || used !== v.used || avail !== v.avail))
          throw new VhostUserError(`SET_VRING_ADDR moves ring ${this.vrings.indexOf(v)} while it runs (GET_VRING_BASE stops it first)`);
        v.desc = desc;
        v.used = used;
        v.avail = avail;
        v.logUsed = (flags & VHOST_VRING_F_LOG) !== 0;
        v.logGpa = logGpa;
        v.addrSet = true;
        this.applyLog();
        return true;
      }
      case R.GET_VRING_BASE: {
        size(VHOST_USER_VRING_STATE_SIZE);
        noFds();
        const index = p.getUint32(VRING_STATE_INDEX, true);
        const v = this.vring(index);
        const base = await this.stopVring(index);
        closeFd(v.kick);
        v.kick = -1;
        const out = new DataView(new ArrayBuffer(VHOST_USER_VRING_STATE_SIZE));
        out.setUint32(VRING_STATE_INDEX, index, true);
        out.setUint32(VRING_STATE_NUM, base >= 0 ? base : v.base, true);
        sendReply(this.fd, req, new Uint8Array(out.buffer));
        return true;
      }
      case R.SET_VRING_KICK:
      case R.SET_VRING_CALL:
      case R.SET_VRING_ERR: {
        size(VHOST_USER_U64_SIZE);
        const word = p.getBigUint64(0, true);
        if (word & ~BigInt(VHOST_USER_VRING_IDX_MASK | VHOST_USER_VRING_NOFD_MASK)) throw new VhostUserError(`ring word 0x${word.toString(16)} has unknown bits`);
        const index = Number(word & BigInt(VHOST_USER_VRING_IDX_MASK));
        const nofd = (word & BigInt(VHOST_USER_VRING_NOFD_MASK)) !== 0n;
        const v = this.vring(index);
        if (nofd ? fds.length !== 0 : fds.length !== 1) throw new VhostUserError(`${nofd ? 'says no fd but came with' : 'came with'} ${fds.length} descriptors`);
        const fd = nofd ? -1 : fds[0];
        if (fd >= 0) kept.add(fd);
        if (req === R.SET_VRING_KICK) {
          if (fd < 0) throw new VhostUserError('polling a ring without a kick eventfd is not supported');
          if (v.running) await this.stopVring(index);
          closeFd(v.kick);
          v.kick = fd;
          // Without protocol features a ring starts enabled; with them, SET_VRING_ENABLE decides.
          if ((this.acked & bit(VHOST_USER_F_PROTOCOL_FEATURES)) === 0n) v.enabled = true;
          this.maybeStart(index);
        } else if (req === R.SET_VRING_CALL) {
          closeFd(v.call);
          v.call = fd;
        } else {
          closeFd(v.err);
          v.err = fd;
        }
        return true;
      }
      case R.SET_VRING_ENABLE: {
        const [v, num] = this.vringState(p, fds);
        if (num > 1) throw new VhostUserError(`enable value ${num}; only 0 and 1 mean anything`);
        const index = this.vrings.indexOf(v);
        v.enabled = num === 1;
        if (v.enabled) this.maybeStart(index);
        else if (v.running) await this.stopVring(index);
        return true;
      }
      case R.GET_CONFIG: {
        if (p.byteLength < VHOST_USER_CONFIG_HDR_SIZE) throw new VhostUserError(`payload of ${p.byteLength} bytes has no config header`);
        noFds();
        const off = p.getUint32(CONFIG_OFFSET, true);
        const len = p.getUint32(CONFIG_SIZE, true);
        if (len > VHOST_USER_CONFIG_PAYLOAD_MAX || off > VHOST_USER_CONFIG_PAYLOAD_MAX - len) throw new VhostUserError(`config range [${off}, +${len}) is past the ${VHOST_USER_CONFIG_PAYLOAD_MAX}-byte config space`);
        size(VHOST_USER_CONFIG_HDR_SIZE + len);
        const cfg = this.device.config(this.vrings[0].num || 128);
        const out = new Uint8Array(VHOST_USER_CONFIG_HDR_SIZE + len);
        const ov = new DataView(out.buffer);
        ov.setUint32(CONFIG_OFFSET, off, true);
        ov.setUint32(CONFIG_SIZE, len, true);
        ov.setUint32(CONFIG_FLAGS, 0, true);
        out.set(cfg.subarray(Math.min(off, cfg.length), Math.min(off + len, cfg.length)), VHOST_USER_CONFIG_HDR_SIZE);
        sendReply(this.fd, req, out);
        return true;
      }
      case R.SET_CONFIG:
        noFds();
        // Nothing in virtio-blk's config is writable without CONFIG_WCE, which we do not offer.
        this.ev.log(`${this.device.name}: vhost-user: SET_CONFIG refused (the config space is read-only)`);
        return false;
      case R.GET_INFLIGHT_FD: {
        size(VHOST_USER_INFLIGHT_SIZE);
        noFds();
        const nq = p.getUint16(INFLIGHT_NUM_QUEUES, true);
        const qs = p.getUint16(INFLIGHT_QUEUE_SIZE, true);
        if (nq < 1 || nq > this.device.numQueues) throw new VhostUserError(`inflight region for ${nq} queues; the device has ${this.device.numQueues}`);
        if (qs < 1 || qs > VIRTQ_MAX_SIZE) throw new VhostUserError(`inflight region for queues of ${qs}`);
        if (this.vrings.some((v) => v.running)) throw new VhostUserError('GET_INFLIGHT_FD while a queue runs');
        this.inflight?.close();
        this.inflight = InflightRegion.create(nq, qs);
        const out = new DataView(new ArrayBuffer(VHOST_USER_INFLIGHT_SIZE));
        out.setBigUint64(INFLIGHT_MMAP_SIZE, BigInt(this.inflight.size), true);
        out.setBigUint64(INFLIGHT_MMAP_OFFSET, 0n, true);
        out.setUint16(INFLIGHT_NUM_QUEUES, nq, true);
        out.setUint16(INFLIGHT_QUEUE_SIZE, qs, true);
        sendReply(this.fd, req, new Uint8Array(out.buffer), [this.inflight.fd]);
        return true;
      }
      case R.SET_INFLIGHT_FD: {
        size(VHOST_USER_INFLIGHT_SIZE);
        if (fds.length !== 1) throw new VhostUserError(`came with ${fds.length} descriptors; it takes the region's one`);
        if (this.vrings.some((v) => v.running)) throw new VhostUserError('SET_INFLIGHT_FD while a queue runs');
        const region = InflightRegion.adopt(
          fds[0],
          this.u53(p, INFLIGHT_MMAP_SIZE, 'inflight size'),
          this.u53(p, INFLIGHT_MMAP_OFFSET, 'inflight offset'),
          p.getUint16(INFLIGHT_NUM_QUEUES, true),
          p.getUint16(INFLIGHT_QUEUE_SIZE, true),
        );
        kept.add(fds[0]);
        this.inflight?.close();
        this.inflight = region;
        return true;
      }
      case R.SET_STATUS: {
        size(VHOST_USER_U64_SIZE);
        noFds();
        const s = p.getBigUint64(0, true);
        if (s > 0xffn) throw new VhostUserError(`status 0x${s.toString(16)} does not fit the 8-bit device status`);
        this.status = Number(s);
        return true;
      }
      case R.GET_STATUS:
        noFds();
        this.replyU64(req, BigInt(this.status));
        return true;
      case R.SET_LOG_BASE: {
        size(VHOST_USER_LOG_SIZE);
        if (!this.has(VHOST_USER_PROTOCOL_F_LOG_SHMFD)) throw new VhostUserError('SET_LOG_BASE without LOG_SHMFD: a shared-memory log is the only kind we take');
        if (fds.length !== 1) throw new VhostUserError(`came with ${fds.length} descriptors; it takes the log's one`);
        const log = DirtyLog.adopt(fds[0], this.u53(p, LOG_MMAP_SIZE, 'log size'), this.u53(p, LOG_MMAP_OFFSET, 'log offset'));
        const short = this.mem.highestGpa() > log.covers;
        // The old log goes once nothing points at it: marks are made on this thread, between messages.
        const old = this.dirtyLog;
        this.dirtyLog = log;
        this.applyLog();
        old?.close();
        if (short) this.ev.log(`${this.device.name}: vhost-user: the dirty log covers 0x${log.covers.toString(16)} bytes, less than guest memory (to 0x${this.mem.highestGpa().toString(16)}): writes above it cannot be logged`);
        // With LOG_SHMFD the frontend waits for this reply before it goes on.
        this.replyU64(req, 0n);
        return true;
      }
      case R.SEND_RARP: {
        size(VHOST_USER_U64_SIZE);
        noFds();
        if (!this.device.announce) throw new VhostUserError('SEND_RARP to a device that has no segment to announce on (RARP was not offered)');
        const refused = this.device.announce(new Uint8Array(p.buffer, p.byteOffset, 6).slice());
        if (refused) this.ev.log(`${this.device.name}: vhost-user: ${refused}`);
        return refused === null;
      }
      case R.SET_BACKEND_REQ_FD:
        // We send the frontend nothing (no IOTLB misses, no config changes): the channel is closed.
        return true;
      default:
        throw new VhostUserError(`request ${req}${R[req] ? ` (${R[req]})` : ''} is not supported by this backend`);
    }
  }

  // ---- rings ----

  private vring(index: number): Vring {
    if (!Number.isInteger(index) || index >= this.vrings.length) throw new VhostUserError(`ring ${index} does not exist (the device has ${this.vrings.length})`);
    return this.vrings[index];
  }

  private vringState(p: DataView, fds: number[]): [Vring, number] {
    if (p.byteLength !== VHOST_USER_VRING_STATE_SIZE) throw new VhostUserError(`payload is ${p.byteLength} bytes; a ring state is ${VHOST_USER_VRING_STATE_SIZE}`);
    if (fds.length) throw new VhostUserError(`came with ${fds.length} descriptors; it takes none`);
    return [this.vring(p.getUint32(VRING_STATE_INDEX, true)), p.getUint32(VRING_STATE_NUM, true)];
  }

  private notRunning(v: Vring, what: string): Vring {
    if (v.running) throw new VhostUserError(`${what} on ring ${this.vrings.indexOf(v)} while it runs (GET_VRING_BASE stops it first)`);
    return v;
  }

  private maybeStart(index: number): void {
    const v = this.vrings[index];
    if (v.running || !v.enabled || v.kick < 0 || !v.addrSet || v.num === 0 || this.mem.count === 0) return;
    const inflight: InflightQueue | null = this.inflight ? this.inflight.queue(index, v.num) : null;
    let q: SplitQueue;
    try {
      q = new SplitQueue(this.mem, v.num, v, { eventIdx: (this.acked & bit(VIRTIO_RING_F_EVENT_IDX)) !== 0n, indirect: (this.acked & bit(VIRTIO_RING_F_INDIRECT_DESC)) !== 0n }, v.base);
    } catch (e) {
      throw new VhostUserError(`ring ${index}: ${(e as Error).message}`);
    }
    let resubmit: number[] = [];
    if (inflight) {
      resubmit = inflight.recover(q.usedIdx);
      // Every head taken either reached the used ring or is still marked in flight.
      q.lastAvail = (q.usedIdx + resubmit.length) & 0xffff;
      this.ev.log(`${this.device.name}: ring ${index}: starts at used idx ${q.usedIdx}, resubmitting ${resubmit.length} requests the previous backend left in flight`);
    }
    const host: VirtioQueueHost = {
      resubmit,
      began: inflight ? (h) => inflight.began(h) : noop,
      completing: inflight ? (h) => inflight.completing(h) : noop,
      completed: inflight ? (h, u) => inflight.completed(h, u) : noop,
      interrupt: () => {
        if (v.call >= 0) native.eventfdSignal(v.call);
      },
      fault: (reason) => {
        this.ev.log(`${this.device.name}: ring ${index} stopped: ${reason}`);
        void this.stopVring(index);
        if (v.err >= 0) native.eventfdSignal(v.err);
      },
      log: this.ev.log,
    };
    v.running = true;
    v.queue = q;
    this.logRing(v, q);
    v.watcher = new native.Watcher(v.kick, 'eventfd', () => this.device.kick(index));
    this.device.startQueue(index, q, this.mem, host);
    this.ev.queueStarted?.(index);
  }

  /** Stops ring `index` once what it took has completed; resolves with its next avail index (-1 if it was not running). */
  private stopVring(index: number): Promise<number> {
    const v = this.vrings[index];
    if (v.stopping) return v.stopping;
    v.watcher?.close();
    v.watcher = null;
    const wasRunning = v.running;
    v.running = false;
    v.stopping = this.device.stopQueue(index).then((base) => {
      v.stopping = null;
      v.queue = null;
      if (base >= 0) v.base = base;
      return wasRunning ? base : -1;
    });
    return v.stopping;
  }

  private async withQueuesStopped(change: () => void): Promise<void> {
    const running = this.vrings.map((v) => v.running);
    await Promise.all(this.vrings.map((_, i) => this.stopVring(i)));
    try {
      change();
    } catch (e) {
      if (e instanceof GuestMemoryError) throw new VhostUserError(e.message);
      throw e;
    } finally {
      // Nothing is in flight now: mappings that left the table can go.
      this.mem.release();
    }
    running.forEach((was, i) => was && this.maybeStart(i));
  }

  private async reset(): Promise<void> {
    await Promise.all(this.vrings.map((_, i) => this.stopVring(i)));
    for (const v of this.vrings) for (const f of [v.kick, v.call, v.err]) closeFd(f);
    this.vrings.forEach((_, i) => (this.vrings[i] = this.freshVring()));
    this.acked = 0n;
    this.device.setFeatures?.(0n);
    this.status = 0;
  }

  // ---- helpers ----

  private region(p: DataView, o: number) {
    return {
      gpa: p.getBigUint64(o + MEM_REGION_GPA, true),
      size: p.getBigUint64(o + MEM_REGION_SIZE, true),
      uaddr: p.getBigUint64(o + MEM_REGION_UADDR, true),
      mmapOffset: p.getBigUint64(o + MEM_REGION_MMAP_OFFSET, true),
    };
  }

  private u53(p: DataView, o: number, what: string): number {
    const v = p.getBigUint64(o, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new VhostUserError(`${what} 0x${v.toString(16)} is beyond any guest memory`);
    return Number(v);
  }

  private replyU64(req: number, v: bigint): void {
    const b = new DataView(new ArrayBuffer(VHOST_USER_U64_SIZE));
    b.setBigUint64(0, v, true);
    sendReply(this.fd, req, new Uint8Array(b.buffer));
  }

  /** Ends the connection: stops the device, and unmaps guest memory once nothing is in flight. */
  end(reason: string): void {
    if (this.ended) return;
    this.ended = true;
    this.watcher.close();
    this.reader.discard();
    native.close(this.fd);
    const stopping = this.vrings.map((_, i) => this.stopVring(i));
    void Promise.all(stopping).then(() => {
      for (const v of this.vrings) for (const f of [v.kick, v.call, v.err]) closeFd(f);
      this.mem.close();
      this.inflight?.close();
      this.inflight = null;
      this.dirtyLog?.close();
      this.dirtyLog = null;
      this.ev.closed(reason);
    });
  }

  /** In-flight requests of the device (for tests and `top`). */
  get inFlight(): number {
    return this.device.inFlight;
  }
}

function closeFd(fd: number): void {
  if (fd >= 0) native.close(fd);
}

const noop = (): void => undefined;
