// PCI addresses in Xen/Linux syntax: [DDDD:]BB:DD.F, hex. Shared by the config parser, the PCI
// platform and the sysfs checker so one BDF means the same thing everywhere.

export interface Bdf {
  domain: number; // segment, <= 0xffff
  bus: number; // <= 0xff
  dev: number; // <= 0x1f
  fn: number; // <= 7
}

const RE = /^(?:([0-9a-fA-F]{1,4}):)?([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])$/;

/** Parses `[DDDD:]BB:DD.F`; returns an error message instead of throwing so callers can add file/line. */
export function parseBdf(text: string): Bdf | string {
  const m = RE.exec(text.trim());
  if (!m) return `'${text}' is not a PCI address: expected [DDDD:]BB:DD.F in hex, e.g. 0000:03:00.0`;
  const domain = m[1] ? parseInt(m[1], 16) : 0;
  const bus = parseInt(m[2], 16);
  const dev = parseInt(m[3], 16);
  const fn = parseInt(m[4], 10);
  if (dev > 0x1f) return `'${text}': device number 0x${dev.toString(16)} is above 0x1f`;
  return { domain, bus, dev, fn };
}

export function formatBdf(b: Bdf): string {
  const h = (n: number, w: number) => n.toString(16).padStart(w, '0');
  return `${h(b.domain, 4)}:${h(b.bus, 2)}:${h(b.dev, 2)}.${b.fn}`;
}

export function bdfEqual(a: Bdf, b: Bdf): boolean {
  return a.domain === b.domain && a.bus === b.bus && a.dev === b.dev && a.fn === b.fn;
}

/** VT-d source id: bus << 8 | dev << 3 | fn. */
export function sourceId(b: Bdf): number {
  return (b.bus << 8) | (b.dev << 3) | b.fn;
}

export function devfn(b: Bdf): number {
  return (b.dev << 3) | b.fn;
}
