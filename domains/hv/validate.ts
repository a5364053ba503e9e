// Runtime shape checks for hypercall arguments. Every failure names the field and what it must
// be, so a misbehaving domain's log line says exactly what it sent wrong.

export class ArgError extends Error {
  readonly code = 'EINVAL';
}

export function obj(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ArgError(`${what} must be an object`);
  return v as Record<string, unknown>;
}

export function uint(o: Record<string, unknown>, key: string, max: number): number {
  const v = o[key];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max)
    throw new ArgError(`${key} must be an integer in 0..${max}, got ${describe(v)}`);
  return v;
}

export function str(o: Record<string, unknown>, key: string, re: RegExp, hint: string): string {
  const v = o[key];
  if (typeof v !== 'string' || !re.test(v)) throw new ArgError(`${key} must be ${hint}, got ${describe(v)}`);
  return v;
}

export function bytes(o: Record<string, unknown>, key: string, max: number): Uint8Array {
  const v = o[key];
  if (!(v instanceof Uint8Array)) throw new ArgError(`${key} must be bytes`);
  if (v.length > max) throw new ArgError(`${key} is ${v.length} bytes, at most ${max}`);
  return v;
}

export function list(o: Record<string, unknown>, key: string, max: number): unknown[] {
  const v = o[key];
  if (!Array.isArray(v)) throw new ArgError(`${key} must be an array`);
  if (v.length === 0 || v.length > max) throw new ArgError(`${key} must hold 1..${max} entries, got ${v.length}`);
  return v;
}

function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null || v === undefined) return String(v);
  return Array.isArray(v) ? 'an array' : typeof v;
}
