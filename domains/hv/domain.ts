// hv's record of one domain: its identity, its frames (one memfd per grantable I/O frame, so
// handing one over exposes exactly that frame), its grant table (frames shared with hv), and
// the resources it holds (mapped grants, event-channel ports).
import type { ChildProcess } from 'node:child_process';
import { native, PAGE_SIZE } from '../../src/native/index.js';
import { GRANT_ENTRIES_PER_FRAME } from '../../src/abi/grant.js';
import type { Channel } from '../../src/hypercall/channel.js';
import type { ConfineSpec, DomainInfo } from '../../src/hypercall/protocol.js';
import type { PortState } from './evtchn.js';
import type { MapHandle } from './grant.js';
import type { HvCopyRing } from './copy-ring.js';

export class DomainRecord {
  state: DomainInfo['state'] = 'paused';
  pid: number | null = null;
  proc: ChildProcess | null = null;
  channel: Channel | null = null;
  startedAt = Date.now();
  readonly frames: number[] = [];
  readonly grantFd: number;
  /** hv's view of the grant table: flags|domid<<16 as one word (for cmpxchg), frame as the next */
  readonly grantWords: Int32Array;
  readonly grantEntries: number;
  readonly ports = new Map<number, PortState>();
  /** grants this domain has mapped, by handle */
  readonly mapped = new Map<number, MapHandle>();
  nextHandle = 1;
  /** hv-side views of this domain's frames, for grant copy; made on first use */
  readonly hvViews = new Map<number, Uint8Array>();
  deathReason: string | null = null;
  /** its grant-copy rings (gnttab_copy_ring) */
  readonly copyRings: HvCopyRing[] = [];
  /** grant copies it asked for, as xentop would count them: batches (hypercalls and ring kicks) and ops */
  copyBatches = 0;
  copyOps = 0;
  /** set at creation for a confined (driver) domain: what ringside-confine lets it open */
  confine: ConfineSpec | null = null;
  /** kind "vm": the checked QEMU arguments */
  vmArgv: string[] | null = null;

  constructor(
    readonly domid: number,
    readonly name: string,
    readonly kind: string,
    readonly privileged: boolean,
    readonly memoryMiB: number,
    ioFrames: number,
    readonly grantFrames: number,
  ) {
    for (let i = 0; i < ioFrames; i++) this.frames.push(native.memfdCreate(`${name}-gfn${i}`, PAGE_SIZE));
    this.grantFd = native.memfdCreate(`${name}-gnttab`, grantFrames * PAGE_SIZE);
    this.grantWords = new Int32Array(native.mmap(this.grantFd, grantFrames * PAGE_SIZE, true));
    this.grantEntries = grantFrames * GRANT_ENTRIES_PER_FRAME;
  }

  get caller() {
    return { domid: this.domid, name: this.name, privileged: this.privileged };
  }

  frameView(gfn: number): Uint8Array {
    let v = this.hvViews.get(gfn);
    if (!v) {
      v = new Uint8Array(native.mmap(this.frames[gfn], PAGE_SIZE, true));
      this.hvViews.set(gfn, v);
    }
    return v;
  }

  info(): DomainInfo {
    return {
      domid: this.domid,
      name: this.name,
      kind: this.kind,
      pid: this.pid,
      state: this.state,
      memoryMiB: this.memoryMiB,
      ioFrames: this.frames.length,
      startedAt: this.startedAt,
      grantsMapped: this.mapped.size,
      evtchns: this.ports.size,
      copyBatches: this.copyBatches,
      copyOps: this.copyOps,
    };
  }

  /** Frees everything hv holds for this domain. Mappings others made of our frames stay valid:
   *  the kernel keeps a frame alive while any process maps it, as Xen keeps a granted page. */
  release(): void {
    for (const v of this.hvViews.values()) native.munmap(v.buffer as ArrayBuffer);
    this.hvViews.clear();
    for (const fd of this.frames) native.close(fd);
    this.frames.length = 0;
    native.munmap(this.grantWords.buffer as ArrayBuffer);
    native.close(this.grantFd);
  }
}
