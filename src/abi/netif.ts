// xen/include/public/io/netif.h: the one definition of the tx/rx rings' bytes for netfront and
// netback. Accessors fill caller-owned objects; nothing allocates.

import type { RingLayout } from './sring.js';

export const NETTXF_csum_blank = 1 << 0;
export const NETTXF_data_validated = 1 << 1;
export const NETTXF_more_data = 1 << 2;
export const NETTXF_extra_info = 1 << 3;

export const NETRXF_data_validated = 1 << 0;
export const NETRXF_csum_blank = 1 << 1;
export const NETRXF_more_data = 1 << 2;
export const NETRXF_extra_info = 1 << 3;
export const NETRXF_gso_prefix = 1 << 4;

export const XEN_NETIF_EXTRA_TYPE_NONE = 0;
export const XEN_NETIF_EXTRA_TYPE_GSO = 1;
export const XEN_NETIF_EXTRA_TYPE_MCAST_ADD = 2;
export const XEN_NETIF_EXTRA_TYPE_MCAST_DEL = 3;
export const XEN_NETIF_EXTRA_TYPE_HASH = 4;
export const XEN_NETIF_EXTRA_TYPE_MAX = 5;
export const XEN_NETIF_EXTRA_FLAG_MORE = 1 << 0;

export const XEN_NETIF_GSO_TYPE_NONE = 0;
export const XEN_NETIF_GSO_TYPE_TCPV4 = 1;
export const XEN_NETIF_GSO_TYPE_TCPV6 = 2;

export const NETIF_RSP_DROPPED = -2;
export const NETIF_RSP_ERROR = -1;
export const NETIF_RSP_OKAY = 0;
/** a tx response slot that answers no request: it fills the slot of an extra_info */
export const NETIF_RSP_NULL = 1;

/** the most slots one packet may use that a backend must accept */
export const XEN_NETIF_NR_SLOTS_MIN = 18;
export const XEN_NETIF_MAX_TX_SIZE = 0xffff;

export const NETIF_TX_REQUEST_SIZE = 12;
export const NETIF_TX_RESPONSE_SIZE = 4;
export const NETIF_RX_REQUEST_SIZE = 8;
export const NETIF_RX_RESPONSE_SIZE = 8;
export const NETIF_EXTRA_INFO_SIZE = 8;

// struct netif_tx_request
export const NETIF_TX_REQ_GREF = 0;
export const NETIF_TX_REQ_OFFSET = 4;
export const NETIF_TX_REQ_FLAGS = 6;
export const NETIF_TX_REQ_ID = 8;
export const NETIF_TX_REQ_SIZE = 10;
// struct netif_tx_response
export const NETIF_TX_RSP_ID = 0;
export const NETIF_TX_RSP_STATUS = 2;
// struct netif_rx_request
export const NETIF_RX_REQ_ID = 0;
export const NETIF_RX_REQ_GREF = 4;
// struct netif_rx_response
export const NETIF_RX_RSP_ID = 0;
export const NETIF_RX_RSP_OFFSET = 2;
export const NETIF_RX_RSP_FLAGS = 4;
export const NETIF_RX_RSP_STATUS = 6;
// struct netif_extra_info
export const NETIF_EXTRA_TYPE = 0;
export const NETIF_EXTRA_FLAGS = 1;
export const NETIF_EXTRA_GSO_SIZE = 2;
export const NETIF_EXTRA_GSO_TYPE = 4;
export const NETIF_EXTRA_GSO_FEATURES = 6;
export const NETIF_EXTRA_MCAST_ADDR = 2;
export const NETIF_EXTRA_HASH_TYPE = 2;
export const NETIF_EXTRA_HASH_ALGORITHM = 3;
export const NETIF_EXTRA_HASH_VALUE = 4;

/** 256 slots in one page; a response is 4 bytes but slots are strided by the 12-byte request */
export const NETIF_TX_RING: RingLayout = Object.freeze({
  name: 'netif-tx',
  entrySize: NETIF_TX_REQUEST_SIZE,
  requestSize: NETIF_TX_REQUEST_SIZE,
  responseSize: NETIF_TX_RESPONSE_SIZE,
});

/** 256 slots in one page; a response lands in the slot of its request */
export const NETIF_RX_RING: RingLayout = Object.freeze({
  name: 'netif-rx',
  entrySize: NETIF_RX_REQUEST_SIZE,
  requestSize: NETIF_RX_REQUEST_SIZE,
  responseSize: NETIF_RX_RESPONSE_SIZE,
});

export interface NetifTxRequest {
  gref: number;
  offset: number;
  flags: number;
  id: number;
  size: number;
}

export interface NetifTxResponse {
  id: number;
  status: number;
}

export interface NetifRxRequest {
  id: number;
  gref: number;
}

export interface NetifRxResponse {
  id: number;
  offset: number;
  flags: number;
  /** < 0 an error (NETIF_RSP_*), otherwise the length received */
  status: number;
}

export interface NetifExtraInfo {
  type: number;
  flags: number;
  gsoSize: number;
  gsoType: number;
  gsoFeatures: number;
  readonly mcastAddr: Uint8Array;
  hashType: number;
  hashAlgorithm: number;
  /** the 4 value bytes, little-endian */
  hashValue: number;
}

export function newNetifTxRequest(): NetifTxRequest {
  return { gref: 0, offset: 0, flags: 0, id: 0, size: 0 };
}
export function newNetifTxResponse(): NetifTxResponse {
  return { id: 0, status: 0 };
}
export function newNetifRxRequest(): NetifRxRequest {
  return { id: 0, gref: 0 };
}
export function newNetifRxResponse(): NetifRxResponse {
  return { id: 0, offset: 0, flags: 0, status: 0 };
}
export function newNetifExtraInfo(): NetifExtraInfo {
  return { type: 0, flags: 0, gsoSize: 0, gsoType: 0, gsoFeatures: 0, mcastAddr: new Uint8Array(6), hashType: 0, hashAlgorithm: 0, hashValue: 0 };
}

export const netifTxRequest = {
  read(view: DataView, off: number, into: NetifTxRequest): NetifTxRequest {
    into.gref = view.getUint32(off + NETIF_TX_REQ_GREF, true);
    into.offset = view.getUint16(off + NETIF_TX_REQ_OFFSET, true);
    into.flags = view.getUint16(off + NETIF_TX_REQ_FLAGS, true);
    into.id = view.getUint16(off + NETIF_TX_REQ_ID, true);
    into.size = view.getUint16(off + NETIF_TX_REQ_SIZE, true);
    return into;
  },
  write(view: DataView, off: number, gref: number, offset: number, flags: number, id: number, size: number): void {
    view.setUint32(off + NETIF_TX_REQ_GREF, gref >>> 0, true);
    view.setUint32(off + NETIF_TX_REQ_OFFSET, (offset & 0xffff) | ((flags & 0xffff) << 16), true);
    view.setUint32(off + NETIF_TX_REQ_ID, (id & 0xffff) | ((size & 0xffff) << 16), true);
  },
};

export const netifTxResponse = {
  read(view: DataView, off: number, into: NetifTxResponse): NetifTxResponse {
    into.id = view.getUint16(off + NETIF_TX_RSP_ID, true);
    into.status = view.getInt16(off + NETIF_TX_RSP_STATUS, true);
    return into;
  },
  write(view: DataView, off: number, id: number, status: number): void {
    view.setUint32(off, (id & 0xffff) | ((status & 0xffff) << 16), true);
  },
};

export const netifRxRequest = {
  read(view: DataView, off: number, into: NetifRxRequest): NetifRxRequest {
    into.id = view.getUint16(off + NETIF_RX_REQ_ID, true);
    into.gref = view.getUint32(off + NETIF_RX_REQ_GREF, true);
    return into;
  },
  /** the pad is written as zero */
  write(view: DataView, off: number, id: number, gref: number): void {
    view.setUint32(off, id & 0xffff, true);
    view.setUint32(off + NETIF_RX_REQ_GREF, gref >>> 0, true);
  },
};

export const netifRxResponse = {
  read(view: DataView, off: number, into: NetifRxResponse): NetifRxResponse {
    into.id = view.getUint16(off + NETIF_RX_RSP_ID, true);
    into.offset = view.getUint16(off + NETIF_RX_RSP_OFFSET, true);
    into.flags = view.getUint16(off + NETIF_RX_RSP_FLAGS, true);
    into.status = view.getInt16(off + NETIF_RX_RSP_STATUS, true);
    return into;
  },
  write(view: DataView, off: number, id: number, offset: number, flags: number, status: number): void {
    view.setUint32(off, (id & 0xffff) | ((offset & 0xffff) << 16), true);
    view.setUint32(off + 4, (flags & 0xffff) | ((status & 0xffff) << 16), true);
  },
};

/**
 * netif_extra_info: occupies a tx request slot (after a request with NETTXF_extra_info) or an rx
 * response slot (after a response with NETRXF_extra_info). The union is decoded per `type`.
 */
export const netifExtraInfo = {
  read(view: DataView, off: number, into: NetifExtraInfo): NetifExtraInfo {
    const type = view.getUint8(off + NETIF_EXTRA_TYPE);
    into.type = type;
    into.flags = view.getUint8(off + NETIF_EXTRA_FLAGS);
    if (type === XEN_NETIF_EXTRA_TYPE_GSO) {
      into.gsoSize = view.getUint16(off + NETIF_EXTRA_GSO_SIZE, true);
      into.gsoType = view.getUint8(off + NETIF_EXTRA_GSO_TYPE);
      into.gsoFeatures = view.getUint16(off + NETIF_EXTRA_GSO_FEATURES, true);
    } else if (type === XEN_NETIF_EXTRA_TYPE_MCAST_ADD || type === XEN_NETIF_EXTRA_TYPE_MCAST_DEL) {
      for (let i = 0; i < 6; i++) into.mcastAddr[i] = view.getUint8(off + NETIF_EXTRA_MCAST_ADDR + i);
    } else if (type === XEN_NETIF_EXTRA_TYPE_HASH) {
      into.hashType = view.getUint8(off + NETIF_EXTRA_HASH_TYPE);
      into.hashAlgorithm = view.getUint8(off + NETIF_EXTRA_HASH_ALGORITHM);
      into.hashValue = view.getUint32(off + NETIF_EXTRA_HASH_VALUE, true);
    }
    return into;
  },
  writeGso(view: DataView, off: number, flags: number, gsoSize: number, gsoType: number, gsoFeatures: number): void {
    view.setUint32(off, XEN_NETIF_EXTRA_TYPE_GSO | ((flags & 0xff) << 8) | ((gsoSize & 0xffff) << 16), true);
    view.setUint32(off + 4, (gsoType & 0xff) | ((gsoFeatures & 0xffff) << 16), true);
  },
  writeMcast(view: DataView, off: number, type: number, flags: number, addr: Uint8Array): void {
    view.setUint8(off + NETIF_EXTRA_TYPE, type);
    view.setUint8(off + NETIF_EXTRA_FLAGS, flags);
    for (let i = 0; i < 6; i++) view.setUint8(off + NETIF_EXTRA_MCAST_ADDR + i, addr[i] ?? 0);
  },
  writeHash(view: DataView, off: number, flags: number, hashType: number, algorithm: number, value: number): void {
    view.setUint32(off, XEN_NETIF_EXTRA_TYPE_HASH | ((flags & 0xff) << 8) | ((hashType & 0xff) << 16) | ((algorithm & 0xff) << 24), true);
    view.setUint32(off + NETIF_EXTRA_HASH_VALUE, value >>> 0, true);
  },
  write(view: DataView, off: number, e: NetifExtraInfo): void {
    if (e.type === XEN_NETIF_EXTRA_TYPE_GSO) {
      netifExtraInfo.writeGso(view, off, e.flags, e.gsoSize, e.gsoType, e.gsoFeatures);
    } else if (e.type === XEN_NETIF_EXTRA_TYPE_MCAST_ADD || e.type === XEN_NETIF_EXTRA_TYPE_MCAST_DEL) {
      netifExtraInfo.writeMcast(view, off, e.type, e.flags, e.mcastAddr);
    } else if (e.type === XEN_NETIF_EXTRA_TYPE_HASH) {
      netifExtraInfo.writeHash(view, off, e.flags, e.hashType, e.hashAlgorithm, e.hashValue);
    } else {
      view.setUint32(off, (e.type & 0xff) | ((e.flags & 0xff) << 8), true);
      view.setUint32(off + 4, 0, true);
    }
  },
};
