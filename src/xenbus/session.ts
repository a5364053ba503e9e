// The rules both ends of every ringside split device follow on top of the XenBus state machine,
// so a restarted driver domain and its frontends find each other again:
// - A backend publishes a fresh `ringside/instance` nonce with its features at InitWait.
// - A frontend copies the nonce it negotiated with into its own `ringside/backend-instance`, in the
//   same transaction as its ring keys.
// - A backend connects only to a frontend whose keys name its own instance, so values a frontend
//   wrote for a dead backend are never mapped. A frontend that writes no nonce (a third-party
//   one) is taken at its word, as Xen does.
// State changes are handled one at a time per device, in order, whatever the watch timing.
import { randomBytes } from 'node:crypto';

export const INSTANCE_KEY = 'ringside/instance';
export const BACKEND_INSTANCE_KEY = 'ringside/backend-instance';

export const newInstance = () => randomBytes(8).toString('hex');

export function instanceMatches(frontendCopy: string | undefined, ours: string): boolean {
  return frontendCopy === undefined || frontendCopy === ours;
}

/** Runs async steps strictly one after another; an exception is logged and does not stop the chain. */
export class Serial {
  private tail: Promise<void> = Promise.resolve();
  constructor(private readonly onError: (e: Error) => void) {}
  run(step: () => Promise<void>): void {
    this.tail = this.tail.then(step).catch((e: unknown) => this.onError(e instanceof Error ? e : new Error(String(e))));
  }
  idle(): Promise<void> {
    return this.tail;
  }
}
