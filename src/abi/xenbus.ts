// xen/io/xenbus.h states.
export enum XenbusState {
  Unknown = 0,
  Initialising = 1,
  InitWait = 2,
  Initialised = 3,
  Connected = 4,
  Closing = 5,
  Closed = 6,
  Reconfiguring = 7,
  Reconfigured = 8,
}

export function parseXenbusState(v: string | null | undefined): XenbusState {
  const n = v === null || v === undefined ? NaN : Number(v);
  return Number.isInteger(n) && n >= 0 && n <= 8 ? (n as XenbusState) : XenbusState.Unknown;
}
