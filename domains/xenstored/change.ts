// The record a tree change leaves for the watch machinery. Operations only produce these; the caller
// fires them after the reply, or at commit for a transaction, so no watch fires mid-request or for a
// transaction that never commits.
import type { XsPerm } from '../../src/xenstore/perms.js';

// One tree change that may fire watches.
export interface ChangeEvent {
  readonly path: string;
  // Permission sets under which a watcher may learn of the change (XSA-115): the node's perms after the
  // change, and before it for removals and permission changes. Readable under any one of them suffices.
  readonly perms: readonly (readonly XsPerm[])[];
  // Exact events come from descendants removed with their ancestor: they fire only watches set on that
  // very path, because watches above it already get the ancestor's event.
  readonly exact: boolean;
}
