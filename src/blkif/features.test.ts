import { describe, expect, it } from 'vitest';
import {
  BlkifNegotiationError, blkbackConnectKeys, blkbackFeatureKeys, blkfrontConnectKeys, defaultBlkbackFeatures,
  parseBlkbackConnect, parseBlkbackFeatures, parseBlkfrontConnect, type BlkfrontConnectInfo,
} from './features.js';
import { segmentSectors, sectorRangeValid } from './validate.js';

const reader = (k: Record<string, string>) => (key: string) => k[key];

describe('blkif feature negotiation through xenstore keys', () => {
  it('round-trips the backend features with the keys Linux uses', () => {
    const f = defaultBlkbackFeatures(false, { granularity: 4096, alignment: 0, secure: true });
    const keys = blkbackFeatureKeys(f);
    expect(keys['feature-max-indirect-segments']).toBe('256');
    expect(keys['discard-granularity']).toBe('4096');
    expect(keys['max-ring-page-order']).toBe('4');
    expect(parseBlkbackFeatures(reader(keys))).toEqual(f);
    expect(parseBlkbackConnect(reader(blkbackConnectKeys({ sectors: 2048, sectorSize: 512, physicalSectorSize: 4096, info: 4 })))).toEqual({
      sectors: 2048, sectorSize: 512, physicalSectorSize: 4096, info: 4,
    });
  });

  it('round-trips the frontend keys, single and multi-queue, 1-page and multi-page', () => {
    const offered = defaultBlkbackFeatures(false, null);
    const one: BlkfrontConnectInfo = { ringPageOrder: 0, queues: [{ ringRefs: [8], eventChannel: 5 }], protocol: 'x86_64-abi', persistent: true };
    expect(blkfrontConnectKeys(one)).toMatchObject({ 'ring-ref': '8', 'event-channel': '5', protocol: 'x86_64-abi' });
    expect(parseBlkfrontConnect(reader(blkfrontConnectKeys(one)), offered)).toEqual(one);
    const multi: BlkfrontConnectInfo = {
      ringPageOrder: 1, queues: [{ ringRefs: [8, 9], eventChannel: 5 }, { ringRefs: [10, 11], eventChannel: 6 }], protocol: 'x86_64-abi', persistent: true,
    };
    const mk = blkfrontConnectKeys(multi);
    expect(mk).toMatchObject({ 'multi-queue-num-queues': '2', 'queue-1/ring-ref1': '11', 'queue-0/event-channel': '5', 'ring-page-order': '1' });
    expect(parseBlkfrontConnect(reader(mk), offered)).toEqual(multi);
  });

  it('refuses what a hostile frontend writes', () => {
    const offered = { ...defaultBlkbackFeatures(false, null), maxQueues: 2, maxRingPageOrder: 1 };
    const bad = (k: Record<string, string>) => () => parseBlkfrontConnect(reader(k), offered);
    expect(bad({ 'ring-ref': '8' })).toThrow(/event-channel missing/);
    expect(bad({ 'ring-ref': '-1', 'event-channel': '3' })).toThrow(BlkifNegotiationError);
    expect(bad({ 'ring-ref': '8', 'event-channel': '3', protocol: 'x86_32-abi' })).toThrow(/protocol/);
    expect(bad({ 'ring-page-order': '2', 'ring-ref0': '8', 'event-channel': '3' })).toThrow(/max-ring-page-order/);
    expect(bad({ 'multi-queue-num-queues': '0', 'ring-ref': '8', 'event-channel': '3' })).toThrow(/outside 1..2/);
    expect(bad({ 'multi-queue-num-queues': '3', 'ring-ref': '8', 'event-channel': '3' })).toThrow(/outside 1..2/);
    expect(bad({ 'ring-ref': '8 ', 'event-channel': '3' })).toThrow(/not a number/);
    expect(bad({ 'ring-ref': '99999999999', 'event-channel': '3' })).toThrow(/exceeds/);
    // persistent only if both ends want it
    const np = parseBlkfrontConnect(reader({ 'ring-ref': '8', 'event-channel': '3', 'feature-persistent': '1' }), { ...offered, persistent: false });
    expect(np.persistent).toBe(false);
  });

  it('checks segments and sector ranges without overflow', () => {
    const why = { reason: '' };
    expect(segmentSectors(Uint8Array.of(0, 0), Uint8Array.of(7, 3), 2, why)).toBe(12);
    expect(segmentSectors(Uint8Array.of(0), Uint8Array.of(8), 1, why)).toBe(-1);
    expect(why.reason).toMatch(/last_sect 8/);
    expect(segmentSectors(Uint8Array.of(4), Uint8Array.of(3), 1, why)).toBe(-1);
    expect(sectorRangeValid(0, 8, 8)).toBe(true);
    expect(sectorRangeValid(1, 8, 8)).toBe(false);
    expect(sectorRangeValid(2 ** 64, 1, 8)).toBe(false);
    expect(sectorRangeValid(-1, 1, 8)).toBe(false);
  });
});
