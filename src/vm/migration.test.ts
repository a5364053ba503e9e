// QEMU's query-migrate answers as the migration driver reads them: every field checked, anything
// malformed an error naming the field.
import { describe, expect, it } from 'vitest';
import { MigrationError, parseQueryMigrate, progressLine } from './migration.js';

describe('query-migrate', () => {
  it('reads an active migration: round, bytes left, dirty rate, throttle', () => {
    const p = parseQueryMigrate({
      status: 'active',
      'total-time': 812,
      'setup-time': 3,
      'cpu-throttle-percentage': 30,
      ram: { transferred: 50 << 20, remaining: 100 << 20, total: 256 << 20, 'dirty-sync-count': 2, 'dirty-pages-rate': 1200, mbps: 950.5 },
    });
    expect(p).toMatchObject({ status: 'active', round: 2, remainingBytes: 100 << 20, totalBytes: 256 << 20, dirtyPagesRate: 1200, throttlePct: 30, totalMs: 812 });
    expect(progressLine(p)).toBe('active: round 2, 100.0 of 256.0 MiB left, dirtying 1200 pages/s, 951 Mbit/s, guest CPU throttled 30%');
  });

  it('reads "no migration yet" (an empty answer) and a failure with its reason', () => {
    expect(parseQueryMigrate({}).status).toBe('none');
    expect(parseQueryMigrate({ status: 'failed', 'error-desc': 'Unable to write to socket: Broken pipe' }).error).toBe('Unable to write to socket: Broken pipe');
  });

  it.each([
    [null, /not an object/],
    [{ status: 'teleporting' }, /status "teleporting", which no QEMU reports/],
    [{ status: 7 }, /status 7/],
    [{ status: 'active', ram: 'lots' }, /ram = "lots", not an object/],
    [{ status: 'active', ram: { remaining: -1 } }, /ram\.remaining = -1, not a count/],
    [{ status: 'completed', downtime: 'short' }, /downtime = "short", not a count/],
  ])('refuses %j', (v, why) => {
    expect(() => parseQueryMigrate(v)).toThrow(MigrationError);
    expect(() => parseQueryMigrate(v)).toThrow(why);
  });
});
