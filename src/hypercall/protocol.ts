// The hypercall interface between a domain and hv: operation names, argument and result shapes.
// Both sides import these types; hv validates every argument at runtime (see validate.ts)
// because a domain is hostile until proven otherwise.
import type { PciAssignSpec, PciDeviceView, PciFault, PciFaultRecord, PciOpenResult, PlatformInitArgs } from './pci.js';

export interface BootInfo {
  domid: number;
  name: string;
  kind: string;
  privileged: boolean;
  ioFrames: number;
  grantFrames: number;
  /** opaque bytes from the toolstack; hv never decodes them */
  bootArgs: Uint8Array;
}

export interface DomainInfo {
  domid: number;
  name: string;
  kind: string;
  pid: number | null;
  state: 'paused' | 'running' | 'dying' | 'dead';
  memoryMiB: number;
  ioFrames: number;
  startedAt: number;
  grantsMapped: number;
  evtchns: number;
  /** grant-copy batches (gnttab_copy calls and copy-ring kicks) and the ops in them, since the domain started */
  copyBatches: number;
  copyOps: number;
}

export interface GntMapOp {
  dom: number;
  ref: number;
  flags: number; // GNTMAP_host_map | GNTMAP_readonly | GNTMAP_device_map
}
export interface GntMapResult {
  status: number;
  handle: number;
  /** index into the reply's descriptors for this mapping's frame, or -1 */
  fdIndex: number;
  readonly: boolean;
  /** with GNTMAP_device_map: the address the mapper's devices reach the frame at (Xen's dev_bus_addr) */
  devBusAddr?: number;
}

export interface GntCopyPtr {
  /** a grant ref (with GNTCOPY_*_gref) or the caller's own gfn */
  ref: number;
  domid: number;
  offset: number;
}
export interface GntCopyOp {
  source: GntCopyPtr;
  dest: GntCopyPtr;
  len: number;
  flags: number;
}

export interface EvtchnStatus {
  state: 'free' | 'unbound' | 'interdomain';
  remoteDom: number;
  remotePort: number;
}

/**
 * A domain's confinement (Landlock, no capabilities): the only files it may open beyond what
 * running at all takes, and whether it keeps CAP_NET_ADMIN (a TAP uplink, or a guest's TAP in its
 * own namespace, needs it).
 */
/**
 * kind "vm": the domain's process is QEMU, not a bundle. dom0 builds the arguments; hv runs its own
 * qemu-system-x86_64 with them and adds its own `-sandbox`. A VM has no hypercall channel.
 */
export interface VmProcessSpec {
  argv: string[];
}

export interface ConfineSpec {
  ro: string[];
  rw: string[];
  netAdmin: boolean;
  /** a guest: the directory where it may create and remove its NBD export sockets, nothing else */
  sockDir?: string;
  /** a blk domain: directories whose existing files it may read and write (shared storage), making and removing nothing */
  rwTrees?: string[];
  /**
   * a guest: the name under /run/netns of the network namespace it lives in. The namespace must
   * belong to a user namespace of its own, so the kept CAP_NET_ADMIN governs only it.
   */
  netns?: string;
}

export interface HypercallOps {
  boot_info: { args: Record<string, never>; result: BootInfo };
  memory_frames: { args: { start: number; count: number }; result: { start: number; count: number } };
  domain_create: {
    /** `domid` asks for that id (as XEN_DOMCTL_createdomain may): a restarted driver domain keeps its id */
    args: { name: string; kind: string; memoryMiB: number; ioFrames: number; grantFrames: number; domid?: number; confine?: ConfineSpec; vm?: VmProcessSpec };
    result: { domid: number };
  };
  domain_unpause: { args: { domid: number; bootArgs: Uint8Array }; result: { pid: number } };
  domain_destroy: { args: { domid: number }; result: Record<string, never> };
  /** graceful: the domain gets to clean up, then is destroyed after timeoutMs */
  domain_shutdown: { args: { domid: number; timeoutMs: number }; result: Record<string, never> };
  domain_list: { args: Record<string, never>; result: { domains: DomainInfo[] } };
  gnttab_query_size: { args: Record<string, never>; result: { nrFrames: number; maxFrames: number } };
  gnttab_map: { args: { ops: GntMapOp[] }; result: { results: GntMapResult[] } };
  gnttab_unmap: { args: { handles: number[] }; result: { statuses: number[] } };
  gnttab_copy: { args: { ops: GntCopyOp[] }; result: { statuses: number[] } };
  /** a grant-copy ring (src/abi/gntcopy-ring.ts); fds: the memory, the kick and the done eventfds */
  gnttab_copy_ring: { args: Record<string, never>; result: { slots: number } };
  evtchn_alloc_unbound: { args: { remoteDom: number }; result: { port: number } };
  evtchn_bind_interdomain: { args: { remoteDom: number; remotePort: number }; result: { port: number } };
  evtchn_close: { args: { port: number }; result: Record<string, never> };
  evtchn_status: { args: { port: number }; result: EvtchnStatus };
  hv_info: { args: Record<string, never>; result: { pid: number; domains: number; uptimeMs: number; denials: number } };
  hv_shutdown: { args: Record<string, never>; result: Record<string, never> };
  // PCI platform and IOMMU (dom0 only, except pci_device_open / pci_config_* by the owner)
  platform_init: { args: PlatformInitArgs; result: { devices: number; groups: number; warnings: string[] } };
  pci_list: { args: Record<string, never>; result: { devices: PciDeviceView[] } };
  pci_assignable_add: { args: { bdf: string }; result: { warnings: string[] } };
  pci_assignable_remove: { args: { bdf: string }; result: { warnings: string[] } };
  pci_assignable_list: { args: Record<string, never>; result: { devices: string[] } };
  pci_assign: {
    args: { domid: number; devices: PciAssignSpec[] };
    result: { devices: string[]; warnings: string[]; resets: { bdf: string; method: string }[] };
  };
  pci_release: { args: { bdf: string }; result: { warnings: string[] } };
  pci_faults: { args: Record<string, never>; result: { faults: PciFault[]; records: PciFaultRecord[] } };
  /** fds: [register page memfd, doorbell eventfd, interrupt eventfd] */
  pci_device_open: { args: { bdf: string }; result: PciOpenResult };
  pci_config_read: { args: { bdf: string; offset: number; size: number }; result: { value: number } };
  pci_config_write: { args: { bdf: string; offset: number; size: number; value: number }; result: { applied: boolean; dropped?: string } };
}

export type OpName = keyof HypercallOps;
export const OP_NAMES: readonly OpName[] = [
  'boot_info', 'memory_frames', 'domain_create', 'domain_unpause', 'domain_destroy', 'domain_shutdown', 'domain_list',
  'gnttab_query_size', 'gnttab_map', 'gnttab_unmap', 'gnttab_copy', 'gnttab_copy_ring', 'evtchn_alloc_unbound',
  'evtchn_bind_interdomain', 'evtchn_close', 'evtchn_status', 'hv_info', 'hv_shutdown',
  'platform_init', 'pci_list', 'pci_assignable_add', 'pci_assignable_remove', 'pci_assignable_list', 'pci_assign',
  'pci_release', 'pci_faults', 'pci_device_open', 'pci_config_read', 'pci_config_write',
];

export interface Request<K extends OpName = OpName> {
  id: number;
  op: K;
  args: HypercallOps[K]['args'];
}
export type Reply =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; code: string; message: string };

/** Asynchronous notifications from hv (a domain never sends these). */
export type HvEvent =
  | { event: 'evtchn_bound'; port: number; remoteDom: number; remotePort: number } // fds: [tx eventfd]
  | { event: 'evtchn_unbound'; port: number }
  | { event: 'domain_died'; domid: number; name: string; code: number | null; signal: string | null; reason: string };

/** Error codes of failed hypercalls, errno-like as Xen returns them. */
export type HypercallErrorCode = 'EPERM' | 'EINVAL' | 'ESRCH' | 'ENOSPC' | 'EEXIST' | 'E2BIG' | 'ENOSYS' | 'EBUSY';

export class HypercallError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'HypercallError';
  }
}
