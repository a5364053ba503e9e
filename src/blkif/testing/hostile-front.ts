// A frontend that writes whatever it likes into its ring: the hostile peer of blkback's tests.
// It speaks through the same abi/ accessors as blkfront, so each case is exactly one bad field.
import {
  BLKIF_OP_WRITE, BLKIF_RING, blkifResponse, newBlkifResponse, writeBlkifIndirect, writeBlkifIndirectGref, writeBlkifRw,
  writeBlkifSegment, type BlkifResponse,
} from '../../abi/blkif.js';
import { XEN_IO_PROTO_ABI_X86_64 } from '../../abi/blkif.js';
import { SRING_W_REQ_PROD } from '../../abi/sring.js';
import { FrontRing } from '../../ring/front.js';
import type { BlkfrontConnectInfo } from '../features.js';
import type { FrontendServices } from '../../domain/services.js';

export interface RawResponse {
  idLo: number;
  idHi: number;
  operation: number;
  status: number;
  /** the response slot's 16 bytes as the backend left them */
  bytes: number[];
}

export class HostileFront {
  ring!: FrontRing;
  port = -1;
  ringRef = -1;
  ringBytes!: Uint8Array;
  private readonly rsp: BlkifResponse = newBlkifResponse();
  private waiting: (() => void) | null = null;

  constructor(
    private readonly env: FrontendServices,
    readonly backendDomid: number,
  ) {}

  async prepare(): Promise<BlkfrontConnectInfo> {
    const gfn = this.env.frames.alloc();
    this.ringBytes = this.env.frames.view(gfn);
    this.ring = FrontRing.init(this.ringBytes.buffer as ArrayBuffer, BLKIF_RING, { byteOffset: this.ringBytes.byteOffset, byteLength: 4096 });
    this.ringRef = this.env.grants.grantAccess(this.backendDomid, gfn, false);
    this.port = await this.env.evtchn.allocUnbound(this.backendDomid);
    this.env.evtchn.on(this.port, () => {
      const w = this.waiting;
      this.waiting = null;
      w?.();
    });
    return { ringPageOrder: 0, queues: [{ ringRefs: [this.ringRef], eventChannel: this.port }], protocol: XEN_IO_PROTO_ABI_X86_64, persistent: true };
  }

  /** a data page granted to the backend (writable unless ro) */
  grantPage(ro = false, fill = 0): { gfn: number; ref: number; bytes: Uint8Array } {
    const gfn = this.env.frames.alloc();
    const bytes = this.env.frames.view(gfn);
    bytes.fill(fill);
    return { gfn, ref: this.env.grants.grantAccess(this.backendDomid, gfn, ro), bytes };
  }

  /**
   * An indirect WRITE of `pages` whole pages (page i filled with i + 1) at `sector`: the data
   * pages and the indirect page that lists them are granted, then the request goes and its
   * response is awaited.
   */
  async indirectWrite(pages: number, sector: number): Promise<RawResponse | null> {
    const data = Array.from({ length: pages }, (_, i) => this.grantPage(false, i + 1));
    const ind = this.grantPage(false);
    const dv = new DataView(ind.bytes.buffer, ind.bytes.byteOffset, 4096);
    data.forEach((p, i) => {
      dv.setUint32(i * 8, p.ref, true);
      dv.setUint8(i * 8 + 4, 0); // first_sect
      dv.setUint8(i * 8 + 5, 7); // last_sect: the whole page
    });
    return this.request((v, off) => {
      writeBlkifIndirect(v, off, BLKIF_OP_WRITE, pages, 0, 1, sector);
      writeBlkifIndirectGref(v, off, 0, ind.ref);
    });
  }

  /** Writes one request with `fill`, pushes, notifies, and waits for its response. */
  async request(fill: (view: DataView, off: number) => void, opts: { timeoutMs?: number } = {}): Promise<RawResponse | null> {
    const off = this.ring.produceRequest();
    // poison the slot so any byte the backend leaves unwritten in its response shows up
    new Uint8Array(this.ring.view.buffer, this.ring.view.byteOffset + off, 112).fill(0xee);
    fill(this.ring.view, off);
    this.ring.pushRequests();
    this.env.evtchn.notify(this.port);
    return this.awaitResponse(opts.timeoutMs ?? 5000);
  }

  /** Writes several requests, pushes them with one event, and collects their responses in ring order. */
  async requestBatch(fills: ((view: DataView, off: number) => void)[], timeoutMs = 5000): Promise<RawResponse[]> {
    for (const fill of fills) fill(this.ring.view, this.ring.produceRequest());
    this.ring.pushRequests();
    this.env.evtchn.notify(this.port);
    const out: RawResponse[] = [];
    while (out.length < fills.length) {
      const r = await this.awaitResponse(timeoutMs);
      if (r === null) break;
      out.push(r);
    }
    return out;
  }

  async awaitResponse(timeoutMs: number): Promise<RawResponse | null> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      if (this.ring.unconsumedResponses() > 0) {
        const off = this.ring.slotOffset(this.ring.rspCons);
        const bytes = [...new Uint8Array(this.ring.view.buffer, this.ring.view.byteOffset + off, 16)];
        const r = blkifResponse.read(this.ring.consumeResponse(), 0, this.rsp);
        return { idLo: r.idLo, idHi: r.idHi, operation: r.operation, status: r.status, bytes };
      }
      if (Date.now() > end) return null;
      await new Promise<void>((resolve) => {
        this.waiting = resolve;
        setTimeout(resolve, 20);
      });
    }
  }

  rw(op: number, nseg: number, id: number, sector: number, segs: [number, number, number][]): (v: DataView, off: number) => void {
    return (v, off) => {
      writeBlkifRw(v, off, op, nseg, 0, id, sector);
      segs.forEach(([gref, first, last], i) => writeBlkifSegment(v, off, i, gref, first, last));
    };
  }

  /** Publishes a req_prod no well-behaved frontend could (far more requests than slots). */
  bogusReqProd(delta: number): void {
    const w = new Int32Array(this.ring.view.buffer, this.ring.view.byteOffset, 16);
    Atomics.store(w, SRING_W_REQ_PROD, (this.ring.reqProd + delta) | 0);
    this.env.evtchn.notify(this.port);
  }
}
