// Interface and namespace names end up in argv of ip(8) and in IFNAMSIZ-sized kernel buffers:
// accept only a conservative alphabet and at most 15 characters.
export const IFNAMSIZ_MAX = 15;
const NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/;

/** The one rule for interface and namespace names, for callers that report rather than throw. */
export function isIfName(name: string): boolean {
  return NAME_RE.test(name) && name !== '.' && name !== '..';
}

export function checkIfName(name: string, what = 'interface name'): string {
  if (!isIfName(name)) {
    throw new RangeError(`${what} ${JSON.stringify(name.slice(0, 32))}: use 1-${IFNAMSIZ_MAX} characters from A-Z a-z 0-9 _ . - (not starting with . or -)`);
  }
  return name;
}

export function checkNetnsName(name: string): string {
  return checkIfName(name, 'network namespace name');
}

/** A short unique host-side name for a TAP before it moves into its namespace, e.g. rs1234t3. */
export function tempTapName(tag: number): string {
  return checkIfName(`rs${process.pid % 100000}t${tag % 10000}`);
}
