// A frame as the switch sees it: bytes somewhere in a driver domain's memory plus offload
// metadata. The switch never copies; a port that must keep a frame past deliver() copies it.
import type { PacketMeta } from '../packet/meta.js';

export interface SwitchFrame {
  /** the memory the frame lives in (for netback: its whole I/O frame area) */
  mem: Uint8Array;
  /** absolute byte offset of the Ethernet header in `mem` */
  off: number;
  len: number;
  meta: PacketMeta;
}

export interface PortStats {
  /** frames that entered the switch from this port */
  inFrames: number;
  inBytes: number;
  /** frames the switch handed to this port */
  outFrames: number;
  outBytes: number;
  /** frames from this port whose source MAC was not the port's */
  spoofDrops: number;
  /** frames from this port that were too short or had a multicast source */
  badFrames: number;
}

export function newPortStats(): PortStats {
  return { inFrames: 0, inBytes: 0, outFrames: 0, outBytes: 0, spoofDrops: 0, badFrames: 0 };
}

export interface SwitchPort {
  readonly portName: string;
  /**
   * The only source MAC this port may use (as macKey()), or null for a port that stands for a
   * whole segment (an uplink), whose addresses the switch learns.
   */
  readonly mac: number | null;
  readonly stats: PortStats;
  /** take the frame (copy it if it must outlive the call); never throws */
  deliver(frame: SwitchFrame): void;
}
