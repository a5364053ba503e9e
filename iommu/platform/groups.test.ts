import { describe, expect, it } from 'vitest';
import { computeGroups } from './groups.js';
import { hostConfig, hostDev } from './host-builder.js';
import { Topology } from './topology.js';

function groups(devs: Parameters<typeof hostConfig>[0]): string[][] {
  return computeGroups(new Topology(hostConfig(devs))).groups.map((g) => g.members.map((m) => m.slice(5)));
}

describe('IOMMU groups as Linux computes them', () => {
  it('ACS root ports isolate each device below them', () => {
    expect(
      groups([
        hostDev('00:00.0', 'host-bridge'),
        hostDev('00:01.0', 'root-port'),
        hostDev('00:02.0', 'root-port'),
        hostDev('01:00.0', 'nic', { parent: '00:01.0' }),
        hostDev('02:00.0', 'nvme', { parent: '00:02.0' }),
      ]),
    ).toEqual([['00:00.0'], ['00:01.0'], ['01:00.0'], ['00:02.0'], ['02:00.0']]);
  });

  it('a root port without ACS and everything below it form one group', () => {
    expect(
      groups([
        hostDev('00:1c.0', 'root-port', { acs: false }),
        hostDev('01:00.0', 'nic', { parent: '00:1c.0', multifunction: true }),
        hostDev('01:00.1', 'nic', { parent: '00:1c.0', multifunction: true }),
        hostDev('00:01.0', 'root-port'),
        hostDev('02:00.0', 'nvme', { parent: '00:01.0' }),
      ]),
    ).toEqual([['00:01.0'], ['02:00.0'], ['00:1c.0', '01:00.0', '01:00.1']]);
  });

  it('multifunction devices without ACS share a group; with ACS they do not', () => {
    const topo = (acs: boolean) => [
      hostDev('00:01.0', 'root-port'),
      hostDev('01:00.0', 'nic', { parent: '00:01.0', multifunction: true, acs }),
      hostDev('01:00.1', 'nic', { parent: '00:01.0', multifunction: true, acs }),
      hostDev('01:00.2', 'nvme', { parent: '00:01.0', multifunction: true, acs }),
    ];
    expect(groups(topo(false))).toEqual([['00:01.0'], ['01:00.0', '01:00.1', '01:00.2']]);
    expect(groups(topo(true))).toEqual([['00:01.0'], ['01:00.0'], ['01:00.1'], ['01:00.2']]);
  });

  it('multifunction root ports without ACS (a PCH) merge, and pull in the devices below both', () => {
    expect(
      groups([
        hostDev('00:1c.0', 'root-port', { acs: false, multifunction: true }),
        hostDev('00:1c.4', 'root-port', { acs: false, multifunction: true }),
        hostDev('02:00.0', 'nic', { parent: '00:1c.0' }),
        hostDev('03:00.0', 'nic', { parent: '00:1c.4' }),
      ]),
    ).toEqual([['00:1c.0', '02:00.0', '00:1c.4', '03:00.0']]); // enumeration (depth-first) order
  });

  it('a switch: ACS downstream ports isolate, a port without ACS groups with its devices', () => {
    const sw = (uspAcs: boolean) => [
      hostDev('00:01.0', 'root-port'),
      hostDev('01:00.0', 'pci-bridge', { parent: '00:01.0', acs: uspAcs }),
      hostDev('02:01.0', 'pci-bridge', { parent: '01:00.0', acs: true }),
      hostDev('02:02.0', 'pci-bridge', { parent: '01:00.0', acs: false }),
      hostDev('03:00.0', 'nic', { parent: '02:01.0' }),
      hostDev('04:00.0', 'nvme', { parent: '02:02.0' }),
      hostDev('04:00.1', 'nvme', { parent: '02:02.0' }),
    ];
    expect(groups(sw(true))).toEqual([['00:01.0'], ['01:00.0'], ['02:01.0'], ['03:00.0'], ['02:02.0', '04:00.0', '04:00.1']]);
    // without ACS at the upstream port nothing below it is isolated, whatever the downstream ports say
    expect(groups(sw(false))).toEqual([['00:01.0'], ['01:00.0', '02:01.0', '03:00.0', '02:02.0', '04:00.0', '04:00.1']]);
  });

  it('a device on the root bus without a parent has its own group', () => {
    expect(groups([hostDev('00:03.0', 'nic'), hostDev('00:04.0', 'nic')])).toEqual([['00:03.0'], ['00:04.0']]);
  });
});
