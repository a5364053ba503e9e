import type { XsErrorName } from './wire.js';

// Codes beyond Xen's list describe failures of the transport rather than answers from xenstored.
export type XenstoreErrorCode = XsErrorName | 'ECONNRESET' | 'EPROTO';

export class XenstoreError extends Error {
  readonly code: XenstoreErrorCode;
  readonly op: string;
  readonly path: string | undefined;

  constructor(code: XenstoreErrorCode, op: string, path?: string, detail?: string) {
    super(`xenstore ${op}${path !== undefined ? ` ${path}` : ''}: ${code}${detail ? ` (${detail})` : ''}`);
    this.name = 'XenstoreError';
    this.code = code;
    this.op = op;
    this.path = path;
  }
}

export function isXenstoreError(e: unknown, code?: XenstoreErrorCode): e is XenstoreError {
  return e instanceof XenstoreError && (code === undefined || e.code === code);
}
