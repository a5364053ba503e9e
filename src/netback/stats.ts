// Per-vif counters, readable at any time (for `ringside top`, tests and the bench).
export interface VifStats {
  /** frames taken from the guest's tx ring and switched */
  txPackets: number;
  txBytes: number;
  /** tx packets answered with an error (legal but unforwardable, e.g. 19-20 slots) */
  txErrors: number;
  /** times the rate limit held the tx ring back */
  txRateLimited: number;
  /** frames copied into the guest's rx buffers */
  rxPackets: number;
  rxBytes: number;
  /** frames that waited in the backlog for rx buffers */
  rxQueued: number;
  /** frames dropped because the backlog was full */
  rxQueueDrops: number;
  /** frames dropped while the rx path was stalled, or flushed when it stalled */
  rxStallDrops: number;
  /** frames that waited longer than the drain timeout */
  rxDrainDrops: number;
  /** frames the guest did not negotiate (GSO, or larger than a page without feature-sg) */
  rxUnsupportedDrops: number;
  /** times the rx path was declared stalled */
  rxStalls: number;
}

export function newVifStats(): VifStats {
  return {
    txPackets: 0, txBytes: 0, txErrors: 0, txRateLimited: 0, rxPackets: 0, rxBytes: 0, rxQueued: 0, rxQueueDrops: 0,
    rxStallDrops: 0, rxDrainDrops: 0, rxUnsupportedDrops: 0, rxStalls: 0,
  };
}
