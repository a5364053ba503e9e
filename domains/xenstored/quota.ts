// Limits applied to unprivileged domains (XSA-326: a guest must not be able to grow xenstored without
// bound). Defaults follow C xenstored where it has an equivalent.
export interface XenstoredQuotas {
  nodesPerDomain: number;
  watchesPerDomain: number;
  // Largest value an unprivileged domain may store in one node.
  entrySize: number;
  transactionsPerDomain: number;
  // Replies not yet taken by the peer; beyond this the connection's input is paused.
  outstandingRequests: number;
  // XSA-322: permission entries per node set by an unprivileged domain.
  permsPerNode: number;
  // Nodes one transaction may read or write.
  transactionNodes: number;
  // Watch events queued for a peer that does not read; further events are dropped and logged.
  pendingWatchEvents: number;
  // Connections on one domain socket (our per-domain identity has no Xen counterpart to bound it).
  connectionsPerDomain: number;
}

export const DEFAULT_QUOTAS: Readonly<XenstoredQuotas> = Object.freeze({
  nodesPerDomain: 1000,
  watchesPerDomain: 128,
  entrySize: 2048,
  transactionsPerDomain: 10,
  outstandingRequests: 20,
  permsPerNode: 5,
  transactionNodes: 1024,
  pendingWatchEvents: 1024,
  connectionsPerDomain: 16,
});

export function resolveQuotas(partial: Partial<XenstoredQuotas> | undefined): XenstoredQuotas {
  const q: XenstoredQuotas = { ...DEFAULT_QUOTAS };
  if (!partial) return q;
  for (const key of Object.keys(DEFAULT_QUOTAS) as (keyof XenstoredQuotas)[]) {
    const v = partial[key];
    if (v === undefined) continue;
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`xenstored quota ${key} must be a positive integer, got ${String(v)}`);
    q[key] = v;
  }
  return q;
}
