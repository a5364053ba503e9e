// How request handling refuses a request: an error name from xsd_errors in xs_wire.h, sent back as an
// XS_ERROR reply. Keeping it a distinct class lets connection.ts tell refusals from server bugs, which
// it logs and answers with EIO.
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
