// The toolstack's control protocol (CLI <-> dom0): length-prefixed msgpackr frames over a Unix
// stream socket. Control plane only; every frame is size-checked before decoding.
import type { PciDeviceView, PciFault } from '../hypercall/pci.js';
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
  devices: DeviceRow[];
  /** a VM: the accelerator it runs under, and why that one */
  accel?: { accel: string; why: string };
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
  | { op: 'pci'; action: 'assignable-add' | 'assignable-remove'; bdf: string };

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
    }
  | { ok: false; error: string };

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

/** One request, one reply, on a connected socket. */
export function request(sock: Socket, req: ControlRequest): Promise<ControlReply> {
  return new Promise((resolve, reject) => {
    const reader = new FrameReader();
    const onData = (d: Buffer) => {
      try {
        reader.push(d, (v) => {
          cleanup();
          resolve(v as ControlReply);
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
