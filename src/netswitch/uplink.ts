// The switch's way out of the driver domain: a host TAP today, an emulated NIC owned by netdom
// through the IOMMU later. Netback pulls received frames into its own staging memory (so they
// can be grant-copied to guests) and pushes frames out through transmit().
import type { PacketMeta } from '../packet/meta.js';
import type { SwitchFrame } from './frame.js';

export interface UplinkSink {
  /** absolute offset in `mem` of room for `max` bytes, or -1 when this round has no room left */
  reserve(max: number): number;
  readonly mem: Uint8Array;
  /** a frame of `len` bytes now sits at absolute offset `off` (inside the last reservation) */
  commit(off: number, len: number, meta: PacketMeta): void;
}

export interface Uplink {
  readonly name: string;
  /** the wire takes only whole, checksummed, MTU-sized frames (no GSO or checksum offload):
   *  the switch segments and checksums in software before transmit */
  readonly noOffloads?: boolean;
  /** largest frame the wire takes, with noOffloads */
  readonly maxFrame?: number;
  /** moves up to `max` frames from the wire into `sink`; returns how many */
  receive(sink: UplinkSink, max: number): number;
  /** copies the frame onto the wire; false when the wire refused it (it is dropped) */
  transmit(f: SwitchFrame): boolean;
  /** `cb` runs when frames are waiting to be received */
  onReadable(cb: () => void): void;
  close(): Promise<void>;
}
