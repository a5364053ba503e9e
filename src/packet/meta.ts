// What travels with a frame besides its bytes, in one shape for every hop (TAP vnet header,
// netif tx flags and GSO extra, netif rx flags), so each hop maps to and from it once.
import {
  NETRXF_csum_blank, NETRXF_data_validated, NETTXF_csum_blank, NETTXF_data_validated,
  XEN_NETIF_GSO_TYPE_NONE, XEN_NETIF_GSO_TYPE_TCPV4, XEN_NETIF_GSO_TYPE_TCPV6,
} from '../abi/netif.js';

export type GsoType = typeof XEN_NETIF_GSO_TYPE_NONE | typeof XEN_NETIF_GSO_TYPE_TCPV4 | typeof XEN_NETIF_GSO_TYPE_TCPV6;

export interface PacketMeta {
  /** the L4 checksum field holds only the pseudo-header sum; someone downstream must finish it */
  csumBlank: boolean;
  /** the sender vouches for the checksum (or will fill it in): the receiver need not verify it */
  dataValidated: boolean;
  gsoType: GsoType;
  /** MSS of the segments a GSO frame stands for; 0 when gsoType is NONE */
  gsoSize: number;
}

export function newPacketMeta(): PacketMeta {
  return { csumBlank: false, dataValidated: false, gsoType: XEN_NETIF_GSO_TYPE_NONE, gsoSize: 0 };
}

export function copyMeta(to: PacketMeta, from: PacketMeta): PacketMeta {
  to.csumBlank = from.csumBlank;
  to.dataValidated = from.dataValidated;
  to.gsoType = from.gsoType;
  to.gsoSize = from.gsoSize;
  return to;
}

export function clearMeta(m: PacketMeta): PacketMeta {
  m.csumBlank = false;
  m.dataValidated = false;
  m.gsoType = XEN_NETIF_GSO_TYPE_NONE;
  m.gsoSize = 0;
  return m;
}

export function metaFromTxFlags(flags: number, into: PacketMeta): PacketMeta {
  into.csumBlank = (flags & NETTXF_csum_blank) !== 0;
  into.dataValidated = (flags & NETTXF_data_validated) !== 0 || into.csumBlank;
  return into;
}

export function txFlagsFromMeta(m: PacketMeta): number {
  return (m.csumBlank ? NETTXF_csum_blank | NETTXF_data_validated : 0) | (m.dataValidated ? NETTXF_data_validated : 0);
}

export function metaFromRxFlags(flags: number, into: PacketMeta): PacketMeta {
  into.csumBlank = (flags & NETRXF_csum_blank) !== 0;
  into.dataValidated = (flags & NETRXF_data_validated) !== 0 || into.csumBlank;
  return into;
}

export function rxFlagsFromMeta(m: PacketMeta): number {
  return (m.csumBlank ? NETRXF_csum_blank | NETRXF_data_validated : 0) | (m.dataValidated ? NETRXF_data_validated : 0);
}

export function isGsoType(t: number): t is GsoType {
  return t === XEN_NETIF_GSO_TYPE_NONE || t === XEN_NETIF_GSO_TYPE_TCPV4 || t === XEN_NETIF_GSO_TYPE_TCPV6;
}
