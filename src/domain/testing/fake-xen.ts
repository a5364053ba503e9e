// An in-process stand-in for hv and its domains, for the unit tests of blkback, blkfront, netback,
// netfront and the switch: the DomainServices a booted Domain has, with Xen's semantics where the
// rings' ends rely on them. Each domain's frames are real memfds (one per frame, as hv makes them),
// so a grant mapping is the grantor's own memory mapped again, not a copy. A grant names (domid,
// frame, readonly); mapping or copying someone else's grant fails with GNTST_permission_denied;
// grant copy returns Xen's per-op status; events coalesce (the pending bit) and arrive
// asynchronously. Not for production: it checks nothing a test does not rely on.
import { DOMID_SELF, GNTCOPY_dest_gref, GNTCOPY_source_gref, GNTST } from '../../abi/grant.js';
import { GrantError, type GrantMapping, type MapOptions } from '../../grant/mapper.js';
import type { GntCopyOp } from '../../hypercall/protocol.js';
import { FramePool } from '../../memory/frames.js';
import { native } from '../../native/index.js';
import type { DomainServices, EvtchnService, GrantService, MapService } from '../services.js';

const PAGE = 4096;

export interface FakeGrant {
  domid: number;
  gfn: number;
  ro: boolean;
  maps: number;
}

interface Port {
  remoteDom: number;
  remotePort: number;
  bound: boolean;
  handler: (() => void) | null;
  pending: boolean;
}

export class FakeXen {
  readonly domains = new Map<number, FakeDomain>();

  domain(domid: number, frames: number): FakeDomain {
    const d = new FakeDomain(this, domid, frames);
    this.domains.set(domid, d);
    return d;
  }

  close(): void {
    for (const d of this.domains.values()) d.close();
    this.domains.clear();
  }
}

export class FakeDomain implements DomainServices {
  readonly fds: number[] = [];
  readonly frames: FramePool;
  readonly grantsTable = new Map<number, FakeGrant>();
  readonly ports = new Map<number, Port>();
  readonly logs: string[] = [];
  /** GNTTABOP_copy batches this domain issued */
  copyCalls = 0;
  private nextRef = 8;
  private nextPort = 1;
  private readonly mappings = new Map<ArrayBuffer, { dom: number; refs: number[] }>();

  constructor(
    private readonly xen: FakeXen,
    readonly domid: number,
    nframes: number,
  ) {
    for (let i = 0; i < nframes; i++) this.fds.push(native.memfdCreate(`fake-d${domid}-${i}`, PAGE));
    this.frames = new FramePool(this.fds);
  }

  readonly log = (line: string): void => {
    this.logs.push(line);
  };

  readonly grants: GrantService = {
    grantAccess: (domid, gfn, ro) => {
      const ref = this.nextRef++;
      this.grantsTable.set(ref, { domid, gfn, ro, maps: 0 });
      return ref;
    },
    endAccess: (ref) => {
      const g = this.grantsTable.get(ref);
      if (!g) return true;
      if (g.maps > 0) return false;
      this.grantsTable.delete(ref);
      return true;
    },
  };

  readonly mapper: MapService = {
    map: async (dom: number, refs: number[], opts: MapOptions = {}): Promise<GrantMapping> => {
      await Promise.resolve();
      const grantor = this.xen.domains.get(dom);
      if (!grantor) throw new GrantError(GNTST.bad_domain, `no dom${dom}`);
      const ro = opts.readonly ?? false;
      const fds: number[] = [];
      for (const ref of refs) {
        const g = grantor.grantsTable.get(ref);
        if (!g || g.domid !== this.domid || (g.ro && !ro)) {
          throw new GrantError(GNTST.permission_denied, `map of dom${dom} ref ${ref} failed: GNTST_permission_denied`);
        }
        fds.push(grantor.fds[g.gfn]);
      }
      for (const ref of refs) grantor.grantsTable.get(ref)!.maps++;
      const buf = native.mmapFrames(fds, !ro);
      this.mappings.set(buf, { dom, refs: [...refs] });
      return { bytes: new Uint8Array(buf), handles: refs.map((_, i) => i), readonly: ro };
    },
    unmap: async (m: GrantMapping): Promise<void> => {
      const buf = m.bytes.buffer as ArrayBuffer;
      const rec = this.mappings.get(buf);
      if (!rec) throw new GrantError(GNTST.bad_handle, 'not mapped');
      this.mappings.delete(buf);
      native.munmap(buf);
      const grantor = this.xen.domains.get(rec.dom);
      for (const ref of rec.refs) {
        const g = grantor?.grantsTable.get(ref);
        if (g) g.maps--;
      }
    },
    copy: async (ops: GntCopyOp[]): Promise<number[]> => {
      this.copyCalls++;
      await Promise.resolve();
      return ops.map((op) => this.copyOne(op));
    },
  };

  /** One side of a copy: a frame of ours by gfn, or a grant someone gave us. */
  private side(ref: number, domid: number, isGref: boolean, write: boolean): Uint8Array | number {
    if (!isGref) {
      if (domid !== DOMID_SELF && domid !== this.domid) return GNTST.permission_denied;
      if (ref * PAGE >= this.frames.memory.length) return GNTST.bad_page;
      return this.frames.view(ref);
    }
    const g = this.xen.domains.get(domid);
    if (!g) return GNTST.bad_domain;
    const e = g.grantsTable.get(ref);
    if (!e || e.domid !== this.domid) return GNTST.permission_denied;
    if (write && e.ro) return GNTST.permission_denied;
    return g.frames.view(e.gfn);
  }

  private copyOne(op: GntCopyOp): number {
    if (op.len > PAGE || op.source.offset + op.len > PAGE || op.dest.offset + op.len > PAGE) return GNTST.bad_copy_arg;
    const s = this.side(op.source.ref, op.source.domid, (op.flags & GNTCOPY_source_gref) !== 0, false);
    if (typeof s === 'number') return s;
    const d = this.side(op.dest.ref, op.dest.domid, (op.flags & GNTCOPY_dest_gref) !== 0, true);
    if (typeof d === 'number') return d;
    d.set(s.subarray(op.source.offset, op.source.offset + op.len), op.dest.offset);
    return GNTST.okay;
  }

  readonly evtchn: EvtchnService = {
    allocUnbound: async (remoteDom) => {
      const port = this.nextPort++;
      this.ports.set(port, { remoteDom, remotePort: 0, bound: false, handler: null, pending: false });
      return port;
    },
    bindInterdomain: async (remoteDom, remotePort) => {
      const peer = this.xen.domains.get(remoteDom)?.ports.get(remotePort);
      if (!peer || peer.bound || peer.remoteDom !== this.domid) throw new Error(`EINVAL: dom${remoteDom} port ${remotePort} is not unbound for dom${this.domid}`);
      const port = this.nextPort++;
      this.ports.set(port, { remoteDom, remotePort, bound: true, handler: null, pending: false });
      peer.bound = true;
      peer.remotePort = port;
      return port;
    },
    on: (port, handler) => {
      const p = this.ports.get(port);
      if (!p) throw new Error(`port ${port} not open`);
      p.handler = handler;
    },
    notify: (port) => {
      const p = this.ports.get(port);
      if (!p) throw new Error(`port ${port} not open`);
      if (!p.bound) return;
      const rp = this.xen.domains.get(p.remoteDom)?.ports.get(p.remotePort);
      if (!rp || rp.pending) return; // coalesces, as Xen's pending bit does
      rp.pending = true;
      setImmediate(() => {
        rp.pending = false;
        rp.handler?.();
      });
    },
    close: async (port) => {
      const p = this.ports.get(port);
      this.ports.delete(port);
      if (!p?.bound) return;
      const rp = this.xen.domains.get(p.remoteDom)?.ports.get(p.remotePort);
      if (rp) {
        rp.bound = false;
        rp.remotePort = 0;
      }
    },
  };

  close(): void {
    for (const buf of this.mappings.keys()) native.munmap(buf);
    this.mappings.clear();
    if (this.frames.memory.length > 0) native.munmap(this.frames.memory.buffer as ArrayBuffer);
    for (const fd of this.fds) native.close(fd);
  }
}
