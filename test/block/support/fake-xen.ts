// In-process stand-ins for grant tables, grant mapping and event channels, with Xen's semantics
// where blkif relies on them: a grant names (domid, frame, readonly); mapping someone else's
// grant fails with GNTST_permission_denied; a mapping is the grantor's real memory (one memfd per
// frame, mapped with the addon as hv does); events coalesce and arrive asynchronously.
import { GNTST } from '../../../src/abi/grant.js';
import { GrantError, type GrantMapping } from '../../../src/grant/mapper.js';
import { FramePool } from '../../../src/memory/frames.js';
import { native } from '../../../src/native/index.js';

interface Grant {
  domid: number;
  gfn: number;
  ro: boolean;
  maps: number;
}

interface Port {
  remoteDom: number;
  remotePort: number;
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

export class FakeDomain {
  readonly fds: number[] = [];
  readonly frames: FramePool;
  readonly grantsTable = new Map<number, Grant>();
  readonly ports = new Map<number, Port>();
  readonly logs: string[] = [];
  private nextRef = 8;
  private nextPort = 1;
  private readonly mappings = new Map<ArrayBuffer, { dom: number; refs: number[] }>();

  constructor(
    private readonly xen: FakeXen,
    readonly domid: number,
    nframes: number,
  ) {
    for (let i = 0; i < nframes; i++) this.fds.push(native.memfdCreate(`fake-d${domid}-${i}`, 4096));
    this.frames = new FramePool(this.fds);
  }

  readonly log = (line: string): void => {
    this.logs.push(line);
  };

  readonly grants = {
    grantAccess: (domid: number, gfn: number, ro: boolean): number => {
      const ref = this.nextRef++;
      this.grantsTable.set(ref, { domid, gfn, ro, maps: 0 });
      return ref;
    },
    endAccess: (ref: number): boolean => {
      const g = this.grantsTable.get(ref);
      if (!g) return true;
      if (g.maps > 0) return false;
      this.grantsTable.delete(ref);
      return true;
    },
  };

  readonly mapper = {
    map: async (dom: number, refs: number[], opts: { readonly?: boolean } = {}): Promise<GrantMapping> => {
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
  };

  readonly evtchn = {
    allocUnbound: async (remoteDom: number): Promise<number> => {
      const port = this.nextPort++;
      this.ports.set(port, { remoteDom, remotePort: -1, handler: null, pending: false });
      return port;
    },
    bindInterdomain: async (remoteDom: number, remotePort: number): Promise<number> => {
      const peer = this.xen.domains.get(remoteDom)?.ports.get(remotePort);
      if (!peer || peer.remoteDom !== this.domid) throw new Error(`EINVAL: dom${remoteDom} port ${remotePort} is not unbound for dom${this.domid}`);
      const port = this.nextPort++;
      this.ports.set(port, { remoteDom, remotePort, handler: null, pending: false });
      peer.remotePort = port;
      return port;
    },
    on: (port: number, handler: () => void): void => {
      this.ports.get(port)!.handler = handler;
    },
    notify: (port: number): void => {
      const p = this.ports.get(port);
      if (!p) throw new Error(`port ${port} not open`);
      const peer = this.xen.domains.get(p.remoteDom);
      const rp = peer?.ports.get(p.remotePort);
      if (!rp || rp.pending) return; // coalesces, as Xen's pending bit does
      rp.pending = true;
      setImmediate(() => {
        rp.pending = false;
        rp.handler?.();
      });
    },
    close: async (port: number): Promise<void> => {
      this.ports.delete(port);
    },
  };

  /** the env blkback and blkfront take */
  get env() {
    return { grants: this.grants, frames: this.frames, mapper: this.mapper, evtchn: this.evtchn, log: this.log };
  }

  close(): void {
    for (const buf of this.mappings.keys()) native.munmap(buf);
    this.mappings.clear();
    if (this.frames.memory.length > 0) native.munmap(this.frames.memory.buffer as ArrayBuffer);
    for (const fd of this.fds) native.close(fd);
  }
}
