// One in-flight request of a queue. A queue preallocates as many as its ring has slots (the ring
// can never have more outstanding), so servicing a request allocates nothing of ours: fields are
// decoded into these arrays once, straight from the private copy of the ring slot.
import { DmaList } from '../blkdev/device.js';
import type { GrantMapping } from '../grant/mapper.js';
import type { GrantPage } from './grant-page.js';

const SECTOR = 512;

export class BlkbackRequest {
  /** the ring's operation byte, echoed in the response only for ops we do not know */
  rawOp = 0;
  /** READ / WRITE / FLUSH / BARRIER / DISCARD, the indirect_op for indirect requests */
  op = 0;
  indirect = false;
  idLo = 0;
  idHi = 0;
  sector = 0;
  nseg = 0;
  discardFlag = 0;
  nrSectors = 0;
  /** bytes to transfer */
  bytes = 0;
  readonly segGref: Uint32Array;
  readonly segFirst: Uint8Array;
  readonly segLast: Uint8Array;
  readonly indirectGrefs = new Uint32Array(8);
  /** the mapped page behind each segment */
  readonly pages: (GrantPage | null)[];
  /** per-request (non-persistent) mappings to undo before responding */
  readonly transient: GrantMapping[] = [];
  /** the segments' bytes as one vector for preadv/pwritev; its length is set per request */
  readonly iov: Uint8Array[] = [];
  /** the segments by bus address, for a medium that DMAs them in place */
  readonly dma: DmaList;
  /** FLUSH_DISKCACHE / WRITE_BARRIER with data: fdatasync after the write */
  flushAfter = false;
  status = 0;
  /** bound once: the device callbacks for this request */
  ioDone: (err: Error | null) => void = () => undefined;
  flushDone: (err: Error | null) => void = () => undefined;

  constructor(readonly maxSegs: number) {
    this.segGref = new Uint32Array(maxSegs);
    this.segFirst = new Uint8Array(maxSegs);
    this.segLast = new Uint8Array(maxSegs);
    this.pages = new Array<GrantPage | null>(maxSegs).fill(null);
    this.dma = new DmaList(maxSegs);
  }

  /** Where segment i's bytes start in its page (first_sect, in bytes). */
  segStart(i: number): number {
    return this.segFirst[i] * SECTOR;
  }

  /** Where segment i's bytes end in its page, exclusive (last_sect + 1, in bytes). */
  segEnd(i: number): number {
    return (this.segLast[i] + 1) * SECTOR;
  }
}
