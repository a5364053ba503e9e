// The toolstack's control protocol (CLI <-> dom0): length-prefixed msgpackr frames over a Unix
// stream socket. Control plane only; every frame is size-checked before decoding.
import type { PciDeviceView, PciFault } from '../hypercall/pci.js';
import type { MigrationSummary } from '../vm/migration.js';
import { Packr } from 'msgpackr';
import type { Socket } from 'node:net';

export const MAX_CONTROL_FRAME = 1 << 20;
const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

export interface DomainRow {
  domid: number;
  name: string;
  role: 'control' | 'xenstore' | 'driver' | 'guest' | 'vm';
  kind: string;
  state: string;
  memoryMiB: number;
  uptimeS: number;
  pid: number | null;
  restarts: number;
  grantsMapped: number;
  evtchns: number;
  /** grant copies hv ran for it: batches and ops (for a driver domain, its data path's copies) */
  copyBatches: number;
  copyOps: number;
  devices: DeviceRow[];
  /** a VM: the accelerator it runs under, and why that one */
  accel?: { accel: string; why: string };
  /** a VM: the CPU model it runs for its whole life, and why that one */
  cpu?: { model: string; why: string };
}

export interface DeviceRow {
  type: 'vbd' | 'vif';
  frontend: string;
  backend: string;
  devid: number;
  name: string; // vdev or mac
  frontendState: number;
  backendState: number;
  /** where the guest exports it: NBD socket or netns/TAP; a VM's disk: its vhost-user socket */
  export?: string;
  /** a VM's disk has no xenbus frontend: QEMU connects over vhost-user */
  transport?: 'blkif' | 'netif' | 'vhost-user';
}

export type ControlRequest =
  | { op: 'status' }
  | { op: 'wait-ready'; timeoutMs: number }
  | { op: 'list' }
  | { op: 'destroy'; name: string }
  | { op: 'restart'; name: string }
  | { op: 'down' }
  | { op: 'pci'; action: 'assignable-list' | 'list' | 'faults' }
  | { op: 'pci'; action: 'assignable-add' | 'assignable-remove'; bdf: string }
  /** the CLI asks the source host's dom0 to move a VM to the host whose state directory is `dest` */
  | { op: 'migrate'; name: string; dest: string; bandwidthMiB?: number }
  /** source dom0 to destination dom0: take this VM (its config file, and where its relative paths start) */
  | { op: 'migrate-incoming'; name: string; file: string; text: string; base: string; accel: 'tcg' | 'kvm'; cpu: string }
  /** another host's dom0: which of these CPU models can this host run under `accel`? */
  | { op: 'cpu-check'; accel: 'tcg' | 'kvm'; models: string[] }
  /** the stream is through: is the VM running here? (then the source lets its copy go) */
  | { op: 'migrate-finish'; name: string }
  /** the migration failed before the switch-over: drop the copy that was being received */
  | { op: 'migrate-abort'; name: string };

/** A finished migration as `ringside migrate` reports it. */
export interface MigrationReport extends MigrationSummary {
  name: string;
  /** state directories, and the hosts' names (host.cfg's `host`) */
  from: string;
  to: string;
  fromHost: string;
  toHost: string;
  /** the VM's domid on the destination (a new one, as in Xen) */
  domid: number;
  /** the CPU model it runs on both hosts */
  cpu: string;
}

export type ControlReply =
  | {
      ok: true;
      ready?: boolean;
      domains?: DomainRow[];
      xenstoredPath?: string;
      message?: string;
      problems?: string[];
      /** pci assignable-list: BDFs in the assignable pool */
      devices?: string[];
      /** pci list: the running platform's functions, with owners and fault counts */
      functions?: PciDeviceView[];
      /** pci faults: the faults hv attributed, oldest first */
      faults?: PciFault[];
      warnings?: string[];
      /** migrate-incoming: where the destination's QEMU listens for the stream */
      incoming?: string;
      domid?: number;
      /** the answering host's name */
      host?: string;
      migration?: MigrationReport;
      /** cpu-check: per model asked about, the features this host lacks for it ([] = it can run it) */
      cpuMissing?: Record<string, string[]>;
    }
  | { ok: false; error: string };

/** Sent ahead of a long request's reply: one line of how it is going. */
export interface ControlProgress {
  progress: string;
}

export function isProgress(v: unknown): v is ControlProgress {
  return typeof v === 'object' && v !== null && typeof (v as { progress?: unknown }).progress === 'string' && !('ok' in v);
}

/** Another host's words in our errors and log: one line, at most `max` characters. */
export function clipPeerText(t: string, max = 200): string {
  return (t.length > max ? `${t.slice(0, max)}…` : t).replace(/[\r\n]+/g, ' ');
}

export function encodeFrame(v: unknown): Buffer {
  const body = packr.pack(v);
  const hdr = Buffer.alloc(4);
  hdr.writeUInt32LE(body.length, 0);
  return Buffer.concat([hdr, body]);
}

/** Splits a byte stream into decoded frames; throws on an oversized or undecodable frame. */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);
  push(chunk: Buffer, onFrame: (v: unknown) => void): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    while (this.buf.length >= 4) {
      const len = this.buf.readUInt32LE(0);
      if (len > MAX_CONTROL_FRAME) throw new Error(`control frame of ${len} bytes exceeds ${MAX_CONTROL_FRAME}`);
      if (this.buf.length < 4 + len) return;
      const body = this.buf.subarray(4, 4 + len);
      this.buf = this.buf.subarray(4 + len);
      onFrame(packr.unpack(body));
    }
  }
}

/** One request, one reply, on a connected socket; progress frames before the reply go to `onProgress`. */
export function request(sock: Socket, req: ControlRequest, onProgress?: (line: string) => void): Promise<ControlReply> {
  return new Promise((resolve, reject) => {
    const reader = new FrameReader();
    let done = false;
    const onData = (d: Buffer) => {
      try {
        reader.push(d, (v) => {
          if (done) return;
          if (isProgress(v)) return onProgress?.(v.progress.slice(0, 1000));
          done = true;
          cleanup();
          // the other end may be another host's dom0: a frame that is no reply is an error, not a value
          if (typeof v !== 'object' || v === null || typeof (v as { ok?: unknown }).ok !== 'boolean') reject(new Error('the answer is not a control reply (no boolean ok)'));
          else resolve(v as ControlReply);
        });
      } catch (e) {
        cleanup();
        reject(e);
      }
    };
    const onClose = () => {
      cleanup();
      reject(new Error('the control domain closed the connection'));
    };
    const onError = (e: Error) => {
      cleanup();
      reject(e);
    };
    const cleanup = () => {
      sock.off('data', onData);
      sock.off('close', onClose);
      sock.off('error', onError);
    };
    sock.on('data', onData);
    sock.once('close', onClose);
    sock.once('error', onError);
    sock.write(encodeFrame(req));
  });
}
