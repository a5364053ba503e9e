import { describe, expect, it } from 'vitest';
import { checkIfName, checkNetnsName, tempTapName } from './names.js';

describe('interface and namespace names', () => {
  it('accepts short safe names and refuses the rest', () => {
    expect(checkIfName('eth0')).toBe('eth0');
    expect(checkNetnsName('rs-guest1')).toBe('rs-guest1');
    for (const bad of ['', 'a'.repeat(16), '-x', '.', '..', 'a b', 'a/b', 'x;rm', '$(id)', 'é']) expect(() => checkIfName(bad)).toThrow(/1-15 characters/);
    expect(tempTapName(123456).length).toBeLessThanOrEqual(15);
  });
});
