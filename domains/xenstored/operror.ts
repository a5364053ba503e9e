import type { XsErrorName } from '../../src/xenstore/wire.js';

// Thrown by request handling to answer the client with an xenstore error name; anything else thrown is
// a server bug and is logged.
export class XsOpError extends Error {
  readonly code: XsErrorName;
  constructor(code: XsErrorName, detail?: string) {
    super(detail ? `${code}: ${detail}` : code);
    this.code = code;
  }
}
