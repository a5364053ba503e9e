// netback: the vifs of one net driver domain, the switch between them, and the loop that moves
// frames. Work goes in rounds: take complete packets off every tx ring (and the uplink) into
// staging, copy them in with one batch of grant copies, answer the tx slots, switch the frames,
// copy them into the receivers' rx buffers with a second batch, answer those. Each round is a
// few hypercalls however many vifs and frames it carries.
import { DOMID_SELF, GNTCOPY_source_gref, gntstName } from '../abi/grant.js';
import { NETIF_RSP_ERROR, NETIF_RSP_OKAY, NETIF_RX_RING, NETIF_TX_RING } from '../abi/netif.js';
import { XEN_PAGE_SIZE } from '../abi/sring.js';
import { BackRing } from '../ring/back.js';
import type { NetbackServices } from '../domain/services.js';
import type { GrantMapping } from '../grant/mapper.js';
import { parseMacBytes } from '../packet/mac.js';
import { copyMeta, newPacketMeta, type PacketMeta } from '../packet/meta.js';
import { DEFAULT_BACKEND_FEATURES, type NetifBackendFeatures, type VifConnectParams } from '../netif/params.js';
import { TxPacket, parseTxPacket } from '../netif/txparse.js';
import type { SwitchFrame, SwitchPort } from '../netswitch/frame.js';
import { newPortStats } from '../netswitch/frame.js';
import { NetSwitch } from '../netswitch/switch.js';
import type { Uplink, UplinkSink } from '../netswitch/uplink.js';
import { Backlog } from './backlog.js';
import { CopyBatch } from './copybatch.js';
import { XenvifQueue } from './queue.js';
import { Vif, type VifHost } from './vif.js';
import { SoftwareGso } from '../packet/segment.js';

export interface NetbackOptions {
  features?: Partial<NetifBackendFeatures>;
  /** staging memory for one round, in pages (default 256 = 1 MiB) */
  stagingPages?: number;
  /** per queue: rx backlog memory in pages (default 32) and frames (default 256) */
  backlogPages?: number;
  backlogFrames?: number;
  /** XSA-392: frames older than this are dropped from a backlog (Linux rx_drain_timeout 10 s) */
  rxDrainMs?: number;
  /** no rx buffers for this long: the queue is stalled, its backlog flushed (Linux rx_stall_timeout 60 s) */
  rxStallMs?: number;
  /** tx ring slots one queue may take per round, for fairness between vifs */
  txBudget?: number;
}

const STAGING_ALIGN = 64;
const MAX_STAGED = 512;

interface Staged {
  queue: XenvifQueue | null;
  /** set when queue is null: the local port (uplink, a VM's vif) the frame came from */
  port: LocalPort | null;
  pkt: TxPacket;
  off: number;
  len: number;
  opFrom: number;
  opTo: number;
  meta: PacketMeta;
}

/**
 * A switch port that lives in netdom itself rather than behind a netif ring: the uplink, or a VM's
 * virtio-net vif. Netback pulls its frames into staging in its own round, like the uplink's.
 */
export interface LocalPort extends SwitchPort {
  /** moves up to `max` frames into `sink`; returns how many */
  receive(sink: UplinkSink, max: number): number;
  /** frames are waiting (checked before netback sleeps) */
  hasWork(): boolean;
}

class UplinkPort implements LocalPort {
  readonly mac = null;
  readonly stats = newPortStats();
  drops = 0;
  /** for a wire without offloads: guests' GSO frames are cut and checksummed here */
  readonly gso: SoftwareGso | null;
  private readonly seg: SwitchFrame = { mem: new Uint8Array(0), off: 0, len: 0, meta: newPacketMeta() };
  private readonly emit = (mem: Uint8Array, off: number, len: number, meta: PacketMeta): boolean => {
    this.seg.mem = mem;
    this.seg.off = off;
    this.seg.len = len;
    this.seg.meta = meta;
    return this.uplink.transmit(this.seg);
  };
  constructor(readonly uplink: Uplink) {
    this.gso = uplink.noOffloads ? new SoftwareGso(uplink.maxFrame ?? 1514) : null;
  }
  get portName(): string {
    return `uplink:${this.uplink.name}`;
  }
  deliver(f: SwitchFrame): void {
    const ok = this.gso ? this.gso.process(f.mem, f.off, f.len, f.meta, this.emit) : this.uplink.transmit(f);
    if (!ok) this.drops++;
  }
  receive(sink: UplinkSink, max: number): number {
    return this.uplink.receive(sink, max);
  }
  hasWork(): boolean {
    return false; // the wire says so through onReadable
  }
}

export class Netback implements VifHost {
  readonly switch: NetSwitch;
  readonly features: NetifBackendFeatures;
  readonly rxOps = new CopyBatch(2048);
  /** whether the copy batches run on grant-copy rings (openCopyRings) */
  get copyRings(): boolean {
    return this.rxOps.onRing && this.txOps.onRing;
  }
  private readonly txOps = new CopyBatch(1024);
  private readonly vifs: Vif[] = [];
  private readonly retiring: Vif[] = [];
  private readonly staged: Staged[] = [];
  private nStaged = 0;
  private readonly stagingGfn: number;
  private readonly stagingBase: number;
  private readonly stagingCap: number;
  private stagingUsed = 0;
  private readonly mem: Uint8Array;
  private running = false;
  private again = false;
  private closed = false;
  private rr = 0;
  private readonly stallTimer: NodeJS.Timeout;
  private uplinkPort: UplinkPort | null = null;
  /** the uplink and every VM vif: ports whose frames netback pulls in its round */
  private readonly locals: LocalPort[] = [];
  private sinkPort: LocalPort | null = null;
  private readonly sink: UplinkSink;
  private readonly opts: Required<Omit<NetbackOptions, 'features'>>;
  /** hypercall batches issued (tx + rx), for the bench */
  copyCalls = 0;
  rounds = 0;
  private idle: (() => void)[] = [];

  constructor(private readonly env: NetbackServices, opts: NetbackOptions = {}) {
    this.features = { ...DEFAULT_BACKEND_FEATURES, ...opts.features };
    this.opts = {
      stagingPages: opts.stagingPages ?? 256,
      backlogPages: opts.backlogPages ?? 32,
      backlogFrames: opts.backlogFrames ?? 256,
      rxDrainMs: opts.rxDrainMs ?? 10_000,
      rxStallMs: opts.rxStallMs ?? 60_000,
      txBudget: opts.txBudget ?? 64,
    };
    if (this.opts.stagingPages < 17) throw new RangeError('netback staging must hold a 64 KiB frame (17 pages)');
    this.switch = new NetSwitch(env.log);
    this.mem = env.frames.memory;
    this.stagingGfn = env.frames.allocContiguous(this.opts.stagingPages);
    this.stagingBase = this.stagingGfn * XEN_PAGE_SIZE;
    this.stagingCap = this.opts.stagingPages * XEN_PAGE_SIZE;
    this.sink = this.makeSink();
    for (let i = 0; i < MAX_STAGED; i++) {
      this.staged.push({ queue: null, port: null, pkt: new TxPacket(), off: 0, len: 0, opFrom: 0, opTo: 0, meta: newPacketMeta() });
    }
    const period = Math.max(20, Math.min(this.opts.rxDrainMs, this.opts.rxStallMs) / 4);
    this.stallTimer = setInterval(() => this.checkStalls(), period);
    this.stallTimer.unref();
  }

  now(): number {
    return performance.now();
  }

  log(line: string): void {
    this.env.log(line);
  }

  get vifList(): readonly Vif[] {
    return this.vifs;
  }

  /**
   * Connects a vif from negotiated parameters: maps each queue's rings, binds its event channels,
   * puts the vif on the switch. Anything wrong (bad ring refs, unbound ports, bad queue count)
   * is refused with a reason and leaves nothing behind.
   */
  /**
   * Moves both copy batches onto grant-copy rings shared with hv, where the domain has them; call
   * before the first vif connects (a batch moves only between rounds). Returns whether it did.
   */
  async openCopyRings(): Promise<boolean> {
    const open = this.env.mapper.openCopyRing;
    if (open === undefined || this.vifs.length > 0) return false;
    const rx = await open.call(this.env.mapper);
    const tx = await open.call(this.env.mapper);
    this.rxOps.attach(rx);
    this.txOps.attach(tx);
    return true;
  }

  async connect(p: VifConnectParams): Promise<Vif> {
    if (this.closed) throw new Error('netback is closed');
    const nq = p.queues.length;
    if (nq === 0) throw new Error(`${p.name}: refusing 0 queues (multi-queue-num-queues must be at least 1)`);
    if (nq > this.features.maxQueues) throw new Error(`${p.name}: refusing ${nq} queues (at most ${this.features.maxQueues})`);
    parseMacBytes(p.mac);
    if (this.vifs.some((v) => v.macText === p.mac)) throw new Error(`${p.name}: MAC ${p.mac} is already in use by another vif`);
    const vif = new Vif(p, this);
    const maps: GrantMapping[] = [];
    const ports: number[] = [];
    const gfns: number[] = [];
    const { mapper, evtchn, frames } = this.env;
    try {
      for (let i = 0; i < nq; i++) {
        const q = p.queues[i];
        if (q.evtchnTx !== q.evtchnRx && !this.features.splitEventChannels) throw new Error(`queue ${i}: split event channels were not offered`);
        const txMap = await mapper.map(p.frontendDomid, [q.txRingRef]);
        maps.push(txMap);
        const rxMap = await mapper.map(p.frontendDomid, [q.rxRingRef]);
        maps.push(rxMap);
        const tx = BackRing.attach(txMap.bytes.buffer as ArrayBuffer, NETIF_TX_RING, { byteOffset: txMap.bytes.byteOffset, byteLength: XEN_PAGE_SIZE });
        const rx = BackRing.attach(rxMap.bytes.buffer as ArrayBuffer, NETIF_RX_RING, { byteOffset: rxMap.bytes.byteOffset, byteLength: XEN_PAGE_SIZE });
        const portTx = await evtchn.bindInterdomain(p.frontendDomid, q.evtchnTx);
        ports.push(portTx);
        let portRx = portTx;
        if (q.evtchnRx !== q.evtchnTx) {
          portRx = await evtchn.bindInterdomain(p.frontendDomid, q.evtchnRx);
          ports.push(portRx);
        }
        const gfn = frames.allocContiguous(this.opts.backlogPages);
        gfns.push(gfn);
        const backlog = new Backlog(this.mem, gfn * XEN_PAGE_SIZE, this.opts.backlogPages * XEN_PAGE_SIZE, this.opts.backlogFrames);
        vif.queues.push(new XenvifQueue(vif, i, tx, rx, txMap, rxMap, portTx, portRx, backlog, gfn, this.now()));
      }
    } catch (e) {
      for (const port of ports) await evtchn.close(port).catch(() => {});
      for (const m of maps) await mapper.unmap(m).catch(() => {});
      for (const g of gfns) for (let i = 0; i < this.opts.backlogPages; i++) frames.release(g + i);
      const why = e instanceof Error ? e.message : String(e);
      this.log(`netback: ${p.name}: connect refused: ${why}`);
      throw new Error(`${p.name}: connect refused: ${why}`);
    }
    for (const q of vif.queues) {
      evtchn.on(q.portTx, () => this.kick());
      if (q.split) evtchn.on(q.portRx, () => this.kick());
    }
    this.switch.addPort(vif);
    this.vifs.push(vif);
    this.log(`netback: ${p.name}: connected to dom${p.frontendDomid}, mac ${p.mac}, ${nq} queue(s)${vif.queues[0].split ? ', split event channels' : ''}${p.rate ? `, rate ${p.rate.bytesPerInterval} B/${p.rate.intervalUsec} us` : ''}`);
    this.kick();
    return vif;
  }

  /** Clean disconnect (frontend Closing, toolstack teardown): like a cut-off without blame. */
  async disconnect(vif: Vif): Promise<void> {
    if (!vif.dead) {
      vif.dead = true;
      this.retire(vif);
    }
    await this.whenIdle();
  }

  retire(vif: Vif): void {
    const i = this.vifs.indexOf(vif);
    if (i >= 0) this.vifs.splice(i, 1);
    this.switch.removePort(vif);
    if (vif.creditTimer) clearTimeout(vif.creditTimer);
    this.retiring.push(vif);
    // The rings may be in use by the round in progress: release them after it.
    this.kick();
  }

  private async release(vif: Vif): Promise<void> {
    const { mapper, evtchn, frames } = this.env;
    for (const q of vif.queues) {
      await evtchn.close(q.portTx).catch(() => {});
      if (q.split) await evtchn.close(q.portRx).catch(() => {});
      await mapper.unmap(q.txMap).catch(() => {});
      await mapper.unmap(q.rxMap).catch(() => {});
      q.backlog.clear();
      for (let i = 0; i < this.opts.backlogPages; i++) frames.release(q.backlogGfn + i);
    }
  }

  /** Attaches an uplink (host TAP, emulated NIC) as a switch port. */
  setUplink(u: Uplink): void {
    if (this.uplinkPort) throw new Error('netback: an uplink is already attached');
    this.uplinkPort = new UplinkPort(u);
    this.switch.addPort(this.uplinkPort);
    this.locals.push(this.uplinkPort);
    u.onReadable(() => this.kick());
    this.kick();
  }

  /** Plugs a port that lives in netdom (a VM's vif) into the switch. */
  addLocalPort(p: LocalPort): void {
    this.switch.addPort(p);
    this.locals.push(p);
    this.kick();
  }

  removeLocalPort(p: LocalPort): void {
    const i = this.locals.indexOf(p);
    if (i >= 0) this.locals.splice(i, 1);
    this.switch.removePort(p);
  }

  get uplinkStats(): { drops: number; inFrames: number; outFrames: number } | null {
    const p = this.uplinkPort;
    return p ? { drops: p.drops, inFrames: p.stats.inFrames, outFrames: p.stats.outFrames } : null;
  }

  /** Resolves when no round is running (tests, teardown). */
  whenIdle(): Promise<void> {
    if (!this.running) return Promise.resolve();
    return new Promise((r) => this.idle.push(r));
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.stallTimer);
    for (const v of [...this.vifs]) {
      v.dead = true;
      this.retire(v);
    }
    await this.whenIdle();
    await this.releaseRetired();
    if (this.uplinkPort) await this.uplinkPort.uplink.close();
    for (let i = 0; i < this.opts.stagingPages; i++) this.env.frames.release(this.stagingGfn + i);
  }

  kick(): void {
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    void this.loop();
  }

  private async loop(): Promise<void> {
    try {
      for (;;) {
        this.again = false;
        const did = await this.round();
        await this.releaseRetired();
        if (did || this.again) continue;
        if (this.closed || !this.rearm()) break;
      }
    } catch (e) {
      this.log(`netback: internal error in the data path: ${(e as Error).stack ?? String(e)}`);
    } finally {
      this.running = false;
      const w = this.idle;
      this.idle = [];
      for (const r of w) r();
    }
  }

  private async releaseRetired(): Promise<void> {
    while (this.retiring.length > 0) await this.release(this.retiring.shift()!);
  }

  /** Before sleeping: ask every ring to notify us, and look once more (FINAL_CHECK). */
  private rearm(): boolean {
    let work = false;
    for (const p of this.locals) if (p.hasWork()) work = true;
    for (const v of this.vifs) {
      if (v.dead) continue;
      for (const q of v.queues) {
        if (v.creditTimer === null) {
          try {
            if (q.txIncomplete >= 0 ? q.armTxPastIncomplete() : q.tx.finalCheckForRequests()) work = true;
          } catch (e) {
            v.fatal(`tx ring: ${(e as Error).message}`);
            break;
          }
        }
        if (!v.dead && q.hasRxWork()) work = true;
      }
    }
    return work;
  }

  private checkStalls(): void {
    const now = this.now();
    for (const v of this.vifs) for (const q of v.queues) q.checkStall(now, this.opts.rxDrainMs, this.opts.rxStallMs);
  }

  private async round(): Promise<boolean> {
    this.rounds++;
    const now = this.now();
    const rxOps = this.rxOps;
    const txOps = this.txOps;
    txOps.reset();
    rxOps.reset();
    this.nStaged = 0;
    this.stagingUsed = 0;
    // A vif cut off during the round leaves this.vifs at once (fatal() retires it): the round walks
    // a copy taken now, kept in one reused array, and skips the dead.
    const vifs = this.roundVifs;
    vifs.length = 0;
    for (const v of this.vifs) vifs.push(v);
    const nv = vifs.length;
    // Older frames first: backlogs drain before new frames can go straight through.
    for (let i = 0; i < nv; i++) for (const q of vifs[i].queues) q.drainBacklog(rxOps);
    this.rr = nv > 0 ? (this.rr + 1) % nv : 0;
    for (let i = 0; i < nv; i++) {
      const v = vifs[(this.rr + i) % nv];
      for (const q of v.queues) if (!v.dead) this.stageTx(q, now);
    }
    for (const p of this.locals) {
      if (this.nStaged >= MAX_STAGED) break;
      this.sinkPort = p;
      p.receive(this.sink, MAX_STAGED - this.nStaged);
    }
    this.sinkPort = null;
    const staged = this.nStaged;
    if (txOps.n > 0) {
      this.copyCalls++;
      await txOps.run(this.env.mapper);
    }
    // Answer the tx slots, then switch (delivery stages the rx copies).
    for (let k = 0; k < staged; k++) {
      const s = this.staged[k];
      const q = s.queue;
      if (q === null) {
        // a port removed since it staged this frame no longer speaks on the switch
        if (s.port !== null && this.locals.includes(s.port)) this.switch.input(s.port, this.frameOf(s));
        continue;
      }
      const vif = q.vif;
      if (vif.dead) continue;
      const err = txOps.firstError(s.opFrom, s.opTo);
      if (err !== 0) {
        vif.fatal(`grant copy from tx gref ${s.pkt.slots[0].gref} (or a fragment) failed: GNTST_${gntstName(err)}`);
        continue;
      }
      q.respondTx(s.pkt, NETIF_RSP_OKAY);
      vif.vstats.txPackets++;
      vif.vstats.txBytes += s.len;
      if (!s.pkt.controlOnly) this.switch.input(vif, this.frameOf(s));
    }
    for (const v of vifs) {
      if (v.dead) continue;
      for (const q of v.queues) {
        if (!q.txTouched) continue;
        q.txTouched = false;
        if (q.tx.pushResponsesAndCheckNotify()) this.env.evtchn.notify(q.portTx);
      }
    }
    for (let i = 0; i < nv; i++) if (!vifs[i].dead) for (const q of vifs[i].queues) q.drainBacklog(rxOps);
    const rxStaged = rxOps.n > 0;
    if (rxStaged) {
      this.copyCalls++;
      await rxOps.run(this.env.mapper);
    }
    const done = this.now();
    let rxDone = false;
    for (const v of [...this.vifs, ...this.retiring]) {
      for (const q of v.queues) {
        if (!q.rxTouched) continue;
        q.rxTouched = false;
        rxDone = true;
        if (q.completeRx(rxOps, done) && !v.dead) this.env.evtchn.notify(q.portRx);
      }
    }
    return staged > 0 || rxDone || rxStaged;
  }

  private readonly roundVifs: Vif[] = [];
  private readonly scratchFrame: SwitchFrame = { mem: new Uint8Array(0), off: 0, len: 0, meta: newPacketMeta() };
  private frameOf(s: Staged): SwitchFrame {
    const f = this.scratchFrame;
    f.mem = this.mem;
    f.off = s.off;
    f.len = s.len;
    f.meta = s.meta;
    return f;
  }

  private stageTx(q: XenvifQueue, now: number): void {
    const vif = q.vif;
    const txOps = this.txOps;
    let budget = this.opts.txBudget;
    q.txIncomplete = -1;
    while (budget > 0 && this.nStaged < MAX_STAGED && !vif.dead) {
      const avail = q.txAvail();
      if (avail === 0) return;
      const start = q.tx.reqCons;
      const s = this.staged[this.nStaged];
      const pkt = s.pkt;
      const verdict = parseTxPacket(q.tx, avail, pkt, vif.features);
      if (verdict === 'incomplete') {
        q.txIncomplete = avail;
        return;
      }
      if (verdict === 'fatal') {
        vif.fatal(`tx: ${pkt.reason}`);
        return;
      }
      budget -= pkt.ringSlots;
      if (verdict === 'drop') {
        q.respondTx(pkt, NETIF_RSP_ERROR);
        vif.vstats.txErrors++;
        if (vif.vstats.txErrors <= 10) vif.log(`tx packet dropped: ${pkt.reason}`);
        continue;
      }
      const size = pkt.size;
      const at = (this.stagingUsed + STAGING_ALIGN - 1) & ~(STAGING_ALIGN - 1);
      if (at + size > this.stagingCap || txOps.free < 2 * pkt.nSlots) {
        q.tx.reqCons = start; // no room this round: take it again next round
        return;
      }
      if (!vif.credit.take(size, now)) {
        q.tx.reqCons = start;
        vif.vstats.txRateLimited++;
        if (vif.creditTimer === null) {
          vif.creditTimer = setTimeout(() => {
            vif.creditTimer = null;
            this.kick();
          }, Math.max(1, Math.ceil(vif.credit.waitMs(this.now()))));
        }
        return;
      }
      this.stagingUsed = at + size;
      const abs = this.stagingBase + at;
      s.queue = q;
      s.off = abs;
      s.len = size;
      copyMeta(s.meta, pkt.meta);
      s.opFrom = txOps.n;
      let dst = abs;
      const fdom = vif.frontendDomid;
      for (let i = 0; i < pkt.nSlots; i++) {
        const sl = pkt.slots[i];
        let srcOff = sl.offset;
        let left = sl.size;
        while (left > 0) {
          const part = Math.min(left, XEN_PAGE_SIZE - (dst & (XEN_PAGE_SIZE - 1)));
          txOps.add(sl.gref, fdom, srcOff, dst >>> 12, DOMID_SELF, dst & (XEN_PAGE_SIZE - 1), part, GNTCOPY_source_gref);
          dst += part;
          srcOff += part;
          left -= part;
        }
      }
      s.opTo = txOps.n;
      this.nStaged++;
    }
  }

  private makeSink(): UplinkSink {
    return {
      mem: this.mem,
      reserve: (max: number): number => {
        if (this.nStaged >= MAX_STAGED) return -1;
        const at = (this.stagingUsed + STAGING_ALIGN - 1) & ~(STAGING_ALIGN - 1);
        if (at + max > this.stagingCap) return -1;
        return this.stagingBase + at;
      },
      commit: (off: number, len: number, meta: PacketMeta): void => {
        // The uplink writes straight into staging: no copy between the wire and the guests.
        const s = this.staged[this.nStaged++];
        s.queue = null;
        s.port = this.sinkPort;
        s.off = off;
        s.len = len;
        copyMeta(s.meta, meta);
        s.opFrom = s.opTo = 0;
        this.stagingUsed = off + len - this.stagingBase;
      },
    };
  }
}
