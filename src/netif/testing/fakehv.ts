// An in-process stand-in for hv, for unit tests of netback, netfront and the switch: domains
// with frame memory, grant tables that check grantee and read-only, grant copy and map with
// Xen's status codes, and event channels with pending-bit coalescing. Not for production.
import { DOMID_SELF, GNTCOPY_dest_gref, GNTCOPY_source_gref, GNTST } from '../../abi/grant.js';
import type { GntCopyOp } from '../../hypercall/protocol.js';
import type { EvtchnService, FrameService, GrantService, MapService, MappedGrant, NetbackEnv, NetfrontEnv } from '../env.js';

const PAGE = 4096;

class FakeFrames implements FrameService {
  readonly memory: Uint8Array;
  private readonly used: Uint8Array;
  constructor(pages: number) {
    this.memory = new Uint8Array(new ArrayBuffer(pages * PAGE));
    this.used = new Uint8Array(pages);
  }
  alloc(): number {
    const g = this.used.indexOf(0);
    if (g < 0) throw new Error('fake: out of frames');
    this.used[g] = 1;
    return g;
  }
  allocContiguous(n: number): number {
    for (let g = 0; g + n <= this.used.length; g++) {
      let ok = true;
      for (let i = 0; i < n && ok; i++) ok = this.used[g + i] === 0;
      if (ok) {
        this.used.fill(1, g, g + n);
        return g;
      }
    }
    throw new Error('fake: no contiguous frames');
  }
  release(gfn: number): void {
    if (!this.used[gfn]) throw new Error(`fake: frame ${gfn} not allocated`);
    this.used[gfn] = 0;
  }
  view(gfn: number, pages = 1): Uint8Array {
    return this.memory.subarray(gfn * PAGE, (gfn + pages) * PAGE);
  }
  get inUse(): number {
    return this.used.reduce((a, b) => a + b, 0);
  }
}

interface Entry {
  domid: number;
  gfn: number;
  readonly: boolean;
  maps: number;
}

interface Port {
  remoteDom: number;
  remotePort: number;
  bound: boolean;
  handler: (() => void) | null;
  pending: boolean;
}

export class FakeDomain implements NetbackEnv, NetfrontEnv {
  readonly frames: FakeFrames;
  readonly table = new Map<number, Entry>();
  private nextRef = 8;
  readonly ports = new Map<number, Port>();
  private nextPort = 1;
  readonly logs: string[] = [];
  copyCalls = 0;

  constructor(readonly hv: FakeHv, readonly domid: number, pages: number) {
    this.frames = new FakeFrames(pages);
  }

  log = (line: string): void => {
    this.logs.push(line);
  };

  readonly grants: GrantService = {
    grantAccess: (domid, gfn, readonly) => {
      const ref = this.nextRef++;
      this.table.set(ref, { domid, gfn, readonly, maps: 0 });
      return ref;
    },
    endAccess: (ref) => {
      const e = this.table.get(ref);
      if (e && e.maps > 0) return false;
      this.table.delete(ref);
      return true;
    },
  };

  readonly mapper: MapService = {
    map: async (dom, refs, opts = {}): Promise<MappedGrant> => {
      const g = this.hv.get(dom);
      if (!g || refs.length !== 1) throw new Error(`fake map: GNTST_${!g ? 'bad_domain' : 'general_error'}`);
      const e = g.table.get(refs[0]);
      if (!e || e.domid !== this.domid || (e.readonly && !opts.readonly)) throw new Error('fake map: GNTST_permission_denied');
      e.maps++;
      return { bytes: g.frames.view(e.gfn), handles: [refs[0]], readonly: opts.readonly ?? false, grantor: g } as MappedGrant;
    },
    unmap: async (m) => {
      const g = (m as unknown as { grantor: FakeDomain }).grantor;
      const e = g.table.get(m.handles[0]);
      if (e) e.maps--;
    },
    copy: async (ops: GntCopyOp[]): Promise<number[]> => {
      this.copyCalls++;
      await Promise.resolve();
      return ops.map((op) => this.copyOne(op));
    },
  };

  private resolve(ref: number, domid: number, isGref: boolean, write: boolean): Uint8Array | number {
    if (!isGref) {
      if (domid !== DOMID_SELF && domid !== this.domid) return GNTST.permission_denied;
      if (ref * PAGE >= this.frames.memory.length) return GNTST.bad_page;
      return this.frames.view(ref);
    }
    const g = this.hv.get(domid);
    if (!g) return GNTST.bad_domain;
    const e = g.table.get(ref);
    if (!e || e.domid !== this.domid) return GNTST.permission_denied;
    if (write && e.readonly) return GNTST.permission_denied;
    return g.frames.view(e.gfn);
  }

  private copyOne(op: GntCopyOp): number {
    if (op.len > PAGE || op.source.offset + op.len > PAGE || op.dest.offset + op.len > PAGE) return GNTST.bad_copy_arg;
    const s = this.resolve(op.source.ref, op.source.domid, (op.flags & GNTCOPY_source_gref) !== 0, false);
    if (typeof s === 'number') return s;
    const d = this.resolve(op.dest.ref, op.dest.domid, (op.flags & GNTCOPY_dest_gref) !== 0, true);
    if (typeof d === 'number') return d;
    d.set(s.subarray(op.source.offset, op.source.offset + op.len), op.dest.offset);
    return GNTST.okay;
  }

  readonly evtchn: EvtchnService = {
    allocUnbound: async (remoteDom) => {
      const p = this.nextPort++;
      this.ports.set(p, { remoteDom, remotePort: 0, bound: false, handler: null, pending: false });
      return p;
    },
    bindInterdomain: async (remoteDom, remotePort) => {
      const r = this.hv.get(remoteDom)?.ports.get(remotePort);
      if (!r || r.bound || r.remoteDom !== this.domid) throw new Error(`fake bind: dom${remoteDom} port ${remotePort} is not unbound for dom${this.domid}`);
      const p = this.nextPort++;
      this.ports.set(p, { remoteDom, remotePort, bound: true, handler: null, pending: false });
      r.bound = true;
      r.remotePort = p;
      return p;
    },
    on: (port, handler) => {
      const p = this.ports.get(port);
      if (!p) throw new Error(`fake: port ${port} not open`);
      p.handler = handler;
    },
    notify: (port) => {
      const p = this.ports.get(port);
      if (!p) throw new Error(`fake: port ${port} not open`);
      if (!p.bound) return;
      const r = this.hv.get(p.remoteDom)?.ports.get(p.remotePort);
      if (!r || r.pending) return;
      r.pending = true;
      setImmediate(() => {
        r.pending = false;
        r.handler?.();
      });
    },
    close: async (port) => {
      const p = this.ports.get(port);
      this.ports.delete(port);
      if (p?.bound) {
        const r = this.hv.get(p.remoteDom)?.ports.get(p.remotePort);
        if (r) {
          r.bound = false;
          r.remotePort = 0;
        }
      }
    },
  };
}

export class FakeHv {
  private readonly doms = new Map<number, FakeDomain>();
  domain(domid: number, pages = 2048): FakeDomain {
    const d = new FakeDomain(this, domid, pages);
    this.doms.set(domid, d);
    return d;
  }
  get(domid: number): FakeDomain | undefined {
    return this.doms.get(domid);
  }
}
