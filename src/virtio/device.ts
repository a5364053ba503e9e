// What a virtio device model offers its transport (vhost-user today), and what the transport
// offers each running queue. The device knows requests and media; the transport knows sockets,
// eventfds, guest memory and the inflight record. Neither reaches into the other.
import type { GuestMemory } from './guest-memory.js';
import type { SplitQueue } from './virtqueue.js';

/** Where writes to guest memory are recorded while a migration copies it (vhost's dirty log). */
export interface DirtyPages {
  /** [gpa, +len) was written */
  mark(gpa: number, len: number): void;
}

export interface VirtioQueueHost {
  /** heads that were in flight when the previous backend died, oldest first: start them again */
  readonly resubmit: readonly number[];
  /** the device took `head` (inflight tracking) */
  began(head: number): void;
  /** `head` is about to go on the used ring */
  completing(head: number): void;
  /** `head` is on the used ring, whose index is now `usedIdx` */
  completed(head: number, usedIdx: number): void;
  /** signal the driver (the call eventfd) */
  interrupt(): void;
  /** the driver broke the queue's rules: the queue has stopped; say why */
  fault(reason: string): void;
  log(line: string): void;
}

export interface VirtioDevice {
  readonly name: string;
  readonly numQueues: number;
  /** the device's feature bits, transport and ring bits included */
  readonly features: bigint;
  /** whether the backend serves the config space (vhost-user CONFIG), or the frontend keeps its own */
  readonly servesConfig: boolean;
  /** the features the driver acked (SET_FEATURES; 0 when it goes), before any queue starts */
  setFeatures?(acked: bigint): void;
  /** the device's config space as the driver reads it */
  config(queueSize: number): Uint8Array;
  startQueue(index: number, queue: SplitQueue, mem: GuestMemory, host: VirtioQueueHost): void;
  /** stops taking requests; resolves with the next avail index once what was taken completed (-1: not running) */
  stopQueue(index: number): Promise<number>;
  /** the driver kicked queue `index` */
  kick(index: number): void;
  /** requests taken and not yet completed, over all queues */
  readonly inFlight: number;
  /**
   * A network device's announcement after a migration (vhost-user SEND_RARP): tell the segment
   * that `mac` is here now; returns why it was refused, or null. Devices without a segment
   * leave it out.
   */
  announce?(mac: Uint8Array): string | null;
}
