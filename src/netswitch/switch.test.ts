import { describe, expect, it } from 'vitest';
import { macKey, parseMacBytes } from '../packet/mac.js';
import { newPacketMeta } from '../packet/meta.js';
import { newPortStats, type SwitchFrame, type SwitchPort } from './frame.js';
import { MAX_LEARNED, NetSwitch } from './switch.js';

class Port implements SwitchPort {
  readonly stats = newPortStats();
  got: number[] = [];
  constructor(readonly portName: string, readonly mac: number | null) {}
  deliver(f: SwitchFrame): void {
    this.got.push(f.len);
  }
}

const mk = (m: string) => macKey(parseMacBytes(m), 0);
function fr(dst: string, src: string, len = 60): SwitchFrame {
  const mem = new Uint8Array(len + 8);
  mem.set(parseMacBytes(dst), 8);
  mem.set(parseMacBytes(src), 14);
  return { mem, off: 8, len, meta: newPacketMeta() };
}

describe('NetSwitch', () => {
  it('forwards to static vif MACs, floods broadcast and unknowns, learns behind the uplink', () => {
    const sw = new NetSwitch();
    const a = new Port('a', mk('00:16:3e:00:00:01'));
    const b = new Port('b', mk('00:16:3e:00:00:02'));
    const up = new Port('up', null);
    for (const p of [a, b, up]) sw.addPort(p);
    expect(sw.input(a, fr('00:16:3e:00:00:02', '00:16:3e:00:00:01', 61))).toBe('unicast');
    expect(b.got).toEqual([61]);
    expect(sw.input(a, fr('ff:ff:ff:ff:ff:ff', '00:16:3e:00:00:01', 62))).toBe('flood');
    expect(b.got).toEqual([61, 62]);
    expect(up.got).toEqual([62]);
    expect(sw.input(a, fr('02:00:00:00:00:09', '00:16:3e:00:00:01', 63))).toBe('flood');
    expect(sw.input(up, fr('00:16:3e:00:00:01', '02:00:00:00:00:09', 64))).toBe('unicast');
    expect(sw.input(a, fr('02:00:00:00:00:09', '00:16:3e:00:00:01', 65))).toBe('unicast');
    expect(up.got.at(-1)).toBe(65);
    expect(b.got.at(-1)).toBe(63);
  });

  it('drops and counts forged sources; an uplink cannot take over a vif MAC', () => {
    const sw = new NetSwitch();
    const a = new Port('a', mk('00:16:3e:00:00:01'));
    const b = new Port('b', mk('00:16:3e:00:00:02'));
    const up = new Port('up', null);
    for (const p of [a, b, up]) sw.addPort(p);
    expect(sw.input(a, fr('00:16:3e:00:00:02', '00:16:3e:00:00:02'))).toBe('spoof');
    expect(a.stats.spoofDrops).toBe(1);
    expect(b.got).toEqual([]);
    sw.input(up, fr('ff:ff:ff:ff:ff:ff', '00:16:3e:00:00:02'));
    expect(sw.lookup(mk('00:16:3e:00:00:02'))).toBe(b);
    expect(sw.input(up, fr('00:16:3e:00:00:02', '01:00:5e:00:00:01'))).toBe('bad');
    expect(() => sw.addPort(new Port('dup', mk('00:16:3e:00:00:01')))).toThrow(/already used/);
  });

  it('bounds the learned table', () => {
    const sw = new NetSwitch();
    const up = new Port('up', null);
    const a = new Port('a', mk('00:16:3e:00:00:01'));
    sw.addPort(up);
    sw.addPort(a);
    for (let i = 0; i < MAX_LEARNED + 100; i++) {
      const m = `02:00:00:${((i >> 16) & 255).toString(16).padStart(2, '0')}:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;
      sw.input(up, fr('00:16:3e:00:00:01', m));
    }
    expect(sw.lookup(mk('02:00:00:00:00:05'))).toBe(up);
    expect(sw.lookup(mk(`02:00:00:00:${((MAX_LEARNED + 50) >> 8).toString(16).padStart(2, '0')}:${((MAX_LEARNED + 50) & 255).toString(16).padStart(2, '0')}`))).toBeUndefined();
    sw.removePort(up);
    expect(sw.lookup(mk('02:00:00:00:00:05'))).toBeUndefined();
  });
});
