import { describe, expect, it } from 'vitest';
import {
  NETIF_RX_RING,
  NETIF_TX_RING,
  NETTXF_extra_info,
  NETTXF_more_data,
  XEN_NETIF_EXTRA_FLAG_MORE,
  XEN_NETIF_EXTRA_TYPE_GSO,
  XEN_NETIF_EXTRA_TYPE_HASH,
  XEN_NETIF_EXTRA_TYPE_MCAST_ADD,
  XEN_NETIF_GSO_TYPE_TCPV6,
  netifExtraInfo,
  netifRxRequest,
  netifRxResponse,
  netifTxRequest,
  netifTxResponse,
  newNetifExtraInfo,
  newNetifRxRequest,
  newNetifRxResponse,
  newNetifTxRequest,
  newNetifTxResponse,
} from './netif.js';
import { ringSlots } from './sring.js';

function bytes(fn: (dv: DataView) => void, n = 16): string {
  const u8 = new Uint8Array(n).fill(0xee);
  fn(new DataView(u8.buffer));
  return Buffer.from(u8).toString('hex');
}

describe('netif bytes', () => {
  it('tx request: gref, offset, flags, id, size', () => {
    const h = bytes((dv) => netifTxRequest.write(dv, 2, 0x01020304, 0x0a0b, NETTXF_more_data | NETTXF_extra_info, 0x0102, 1514));
    expect(h.slice(4, 28)).toBe('04030201' + '0b0a' + '0c00' + '0201' + 'ea05');
    const dv = new DataView(new ArrayBuffer(12));
    netifTxRequest.write(dv, 0, 7, 100, 4, 9, 60);
    expect(netifTxRequest.read(dv, 0, newNetifTxRequest())).toEqual({ gref: 7, offset: 100, flags: 4, id: 9, size: 60 });
  });

  it('tx response: id, signed status', () => {
    expect(bytes((dv) => netifTxResponse.write(dv, 0, 0x1234, -2), 4)).toBe('3412feff');
    const dv = new DataView(new ArrayBuffer(4));
    netifTxResponse.write(dv, 0, 5, 1);
    expect(netifTxResponse.read(dv, 0, newNetifTxResponse())).toEqual({ id: 5, status: 1 });
  });

  it('rx request: id, zero pad, gref', () => {
    expect(bytes((dv) => netifRxRequest.write(dv, 0, 0x0102, 0xa0b0c0d0), 8)).toBe('02010000d0c0b0a0');
    const dv = new DataView(new ArrayBuffer(8));
    netifRxRequest.write(dv, 0, 3, 44);
    expect(netifRxRequest.read(dv, 0, newNetifRxRequest())).toEqual({ id: 3, gref: 44 });
  });

  it('rx response: id, offset, flags, status (length or error)', () => {
    expect(bytes((dv) => netifRxResponse.write(dv, 0, 1, 2, 3, -1), 8)).toBe('010002000300ffff');
    const dv = new DataView(new ArrayBuffer(8));
    netifRxResponse.write(dv, 0, 9, 0, 1, 1500);
    expect(netifRxResponse.read(dv, 0, newNetifRxResponse())).toEqual({ id: 9, offset: 0, flags: 1, status: 1500 });
  });

  it('extra info: gso, mcast and hash unions', () => {
    expect(bytes((dv) => netifExtraInfo.writeGso(dv, 0, XEN_NETIF_EXTRA_FLAG_MORE, 1448, XEN_NETIF_GSO_TYPE_TCPV6, 0), 8)).toBe('0101a8050200' + '0000');
    const mac = Uint8Array.of(1, 0, 0x5e, 0, 0, 0xfb);
    expect(bytes((dv) => netifExtraInfo.writeMcast(dv, 0, XEN_NETIF_EXTRA_TYPE_MCAST_ADD, 0, mac), 8)).toBe('020001005e0000fb');
    expect(bytes((dv) => netifExtraInfo.writeHash(dv, 0, 0, 3, 1, 0xdeadbeef), 8)).toBe('04000301efbeadde');
    const dv = new DataView(new ArrayBuffer(8));
    const e = newNetifExtraInfo();
    netifExtraInfo.writeGso(dv, 0, 0, 9000, 1, 0);
    netifExtraInfo.read(dv, 0, e);
    expect([e.type, e.gsoSize, e.gsoType]).toEqual([XEN_NETIF_EXTRA_TYPE_GSO, 9000, 1]);
    netifExtraInfo.writeHash(dv, 0, 0, 2, 1, 77);
    netifExtraInfo.read(dv, 0, e);
    expect([e.type, e.hashType, e.hashAlgorithm, e.hashValue]).toEqual([XEN_NETIF_EXTRA_TYPE_HASH, 2, 1, 77]);
    netifExtraInfo.writeMcast(dv, 0, XEN_NETIF_EXTRA_TYPE_MCAST_ADD, 0, mac);
    netifExtraInfo.read(dv, 0, e);
    expect([...e.mcastAddr]).toEqual([...mac]);
    const copy = new DataView(new ArrayBuffer(8));
    netifExtraInfo.write(copy, 0, e);
    expect(Buffer.from(copy.buffer).toString('hex')).toBe(Buffer.from(dv.buffer).toString('hex'));
  });

  it('ring geometry: 256 tx and rx slots in a page', () => {
    expect(ringSlots(4096, NETIF_TX_RING.entrySize)).toBe(256);
    expect(ringSlots(4096, NETIF_RX_RING.entrySize)).toBe(256);
    expect(NETIF_TX_RING.responseSize).toBe(4);
  });
});
