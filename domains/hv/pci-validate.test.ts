import { describe, expect, it } from 'vitest';
import { hostConfig, hostDev } from '../../iommu/platform/host-builder.js';
import { toPlatformInit } from '../../src/hypercall/pci.js';
import { parsePlatformInit } from './pci-validate.js';

// platform_init comes from dom0, which hv trusts to describe the hardware but still checks: a
// malformed list must be refused with the field it got wrong, never half-applied.
const good = () => toPlatformInit(hostConfig([hostDev('00:02.0', 'root-port'), hostDev('02:00.0', 'nic', { parent: '00:02.0' })]));
const refuse = (mutate: (a: ReturnType<typeof good>) => void): string => {
  const a = good();
  mutate(a);
  try {
    parsePlatformInit(a as unknown as Record<string, unknown>);
  } catch (e) {
    return (e as Error).message;
  }
  return 'accepted';
};

describe('platform_init arguments', () => {
  it('accepts what dom0 sends for host.cfg, a NIC with the address the toolstack chose', () => {
    const host = parsePlatformInit(good() as unknown as Record<string, unknown>);
    expect(host.devices.find((d) => d.type === 'nic')?.mac).toBe('02:52:53:02:00:00');
  });

  it('refuses a NIC with no address, or one not in the toolstack form', () => {
    expect(refuse((a) => delete a.devices[1].mac)).toMatch(/devices\[1\]\.mac must be a lowercase MAC.*dom0 gives every NIC one/);
    expect(refuse((a) => (a.devices[1].mac = '02:52:53:02:00:0G'))).toMatch(/devices\[1\]\.mac/);
    expect(refuse((a) => (a.devices[1].mac = 'AA:BB:CC:DD:EE:FF'))).toMatch(/lowercase/);
  });

  it('refuses a parent that is not a bridge in the list, and a device listed twice', () => {
    expect(refuse((a) => (a.devices[1].parent = '0000:00:07.0'))).toMatch(/parent of 0000:02:00.0 is not a bridge/);
    expect(refuse((a) => a.devices.push({ ...a.devices[1] }))).toMatch(/listed twice/);
  });
});
