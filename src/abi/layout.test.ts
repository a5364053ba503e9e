// Our layouts against Xen's own headers, as gcc lays them out (test/cpeer/layout.c).
import { describe, expect, it, beforeAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compileC, findRepoFile } from '../bench/ring/cpeer.js';
import * as S from './sring.js';
import * as B from './blkif.js';
import * as N from './netif.js';

let c: Record<string, number> = {};

beforeAll(() => {
  const src = findRepoFile(join('test', 'cpeer', 'layout.c'));
  if (src === null) throw new Error('test/cpeer/layout.c not found');
  const bin = join(mkdtempSync(join(tmpdir(), 'ringside-layout-')), 'layout');
  const r = compileC(src, bin);
  if (!r.ok) throw new Error(`cannot build against Xen's headers (apt-get install libxen-dev):\n${r.stderr}`);
  const out = spawnSync(bin, { encoding: 'utf8' });
  c = JSON.parse(out.stdout) as Record<string, number>;
});

describe("layouts match Xen's public headers (gcc, x86-64)", () => {
  it('sring header and slot counts', () => {
    expect(c['offsetof.blkif_sring_t.req_prod']).toBe(S.SRING_REQ_PROD);
    expect(c['offsetof.blkif_sring_t.req_event']).toBe(S.SRING_REQ_EVENT);
    expect(c['offsetof.blkif_sring_t.rsp_prod']).toBe(S.SRING_RSP_PROD);
    expect(c['offsetof.blkif_sring_t.rsp_event']).toBe(S.SRING_RSP_EVENT);
    expect(c['offsetof.blkif_sring_t.pvt']).toBe(S.SRING_PVT);
    expect(c['offsetof.blkif_sring_t.__pad']).toBe(S.SRING_PAD);
    expect(c['offsetof.blkif_sring_t.ring']).toBe(S.SRING_HEADER_SIZE);
    for (let o = 0; o <= 4; o++) expect(S.ringSlots(S.ringBytes(o), B.BLKIF_RING.entrySize)).toBe(c[`slots.blkif.order${o}`]);
    expect(S.ringSlots(4096, N.NETIF_TX_RING.entrySize)).toBe(c['slots.netif_tx']);
    expect(S.ringSlots(4096, N.NETIF_RX_RING.entrySize)).toBe(c['slots.netif_rx']);
    expect(B.BLKIF_RING.entrySize).toBe(c['sizeof.blkif_sring_entry']);
    expect(N.NETIF_TX_RING.entrySize).toBe(c['sizeof.netif_tx_sring_entry']);
    expect(N.NETIF_RX_RING.entrySize).toBe(c['sizeof.netif_rx_sring_entry']);
  });

  it('blkif structs', () => {
    const want: [string, number][] = [
      ['sizeof.blkif_request_t', B.BLKIF_REQUEST_SIZE],
      ['offsetof.blkif_request_t.operation', B.BLKIF_REQ_OPERATION],
      ['offsetof.blkif_request_t.nr_segments', B.BLKIF_REQ_NR_SEGMENTS],
      ['offsetof.blkif_request_t.handle', B.BLKIF_REQ_HANDLE],
      ['offsetof.blkif_request_t.id', B.BLKIF_REQ_ID],
      ['offsetof.blkif_request_t.sector_number', B.BLKIF_REQ_SECTOR_NUMBER],
      ['offsetof.blkif_request_t.seg', B.BLKIF_REQ_SEG],
      ['sizeof.struct blkif_request_segment', B.BLKIF_SEGMENT_SIZE],
      ['offsetof.struct blkif_request_segment.gref', B.BLKIF_SEG_GREF],
      ['offsetof.struct blkif_request_segment.first_sect', B.BLKIF_SEG_FIRST_SECT],
      ['offsetof.struct blkif_request_segment.last_sect', B.BLKIF_SEG_LAST_SECT],
      ['sizeof.blkif_request_discard_t', B.BLKIF_REQUEST_DISCARD_SIZE],
      ['offsetof.blkif_request_discard_t.flag', B.BLKIF_DISCARD_FLAG],
      ['offsetof.blkif_request_discard_t.handle', B.BLKIF_REQ_HANDLE],
      ['offsetof.blkif_request_discard_t.id', B.BLKIF_REQ_ID],
      ['offsetof.blkif_request_discard_t.sector_number', B.BLKIF_REQ_SECTOR_NUMBER],
      ['offsetof.blkif_request_discard_t.nr_sectors', B.BLKIF_DISCARD_NR_SECTORS],
      ['sizeof.blkif_request_indirect_t', B.BLKIF_REQUEST_INDIRECT_SIZE],
      ['offsetof.blkif_request_indirect_t.indirect_op', B.BLKIF_INDIRECT_OP],
      ['offsetof.blkif_request_indirect_t.nr_segments', B.BLKIF_INDIRECT_NR_SEGMENTS],
      ['offsetof.blkif_request_indirect_t.id', B.BLKIF_REQ_ID],
      ['offsetof.blkif_request_indirect_t.sector_number', B.BLKIF_REQ_SECTOR_NUMBER],
      ['offsetof.blkif_request_indirect_t.handle', B.BLKIF_INDIRECT_HANDLE],
      ['offsetof.blkif_request_indirect_t.indirect_grefs', B.BLKIF_INDIRECT_GREFS],
      ['sizeof.blkif_response_t', B.BLKIF_RESPONSE_SIZE],
      ['offsetof.blkif_response_t.id', B.BLKIF_RSP_ID],
      ['offsetof.blkif_response_t.operation', B.BLKIF_RSP_OPERATION],
      ['offsetof.blkif_response_t.status', B.BLKIF_RSP_STATUS],
      ['BLKIF_OP_READ', B.BLKIF_OP_READ],
      ['BLKIF_OP_WRITE', B.BLKIF_OP_WRITE],
      ['BLKIF_OP_WRITE_BARRIER', B.BLKIF_OP_WRITE_BARRIER],
      ['BLKIF_OP_FLUSH_DISKCACHE', B.BLKIF_OP_FLUSH_DISKCACHE],
      ['BLKIF_OP_RESERVED_1', B.BLKIF_OP_RESERVED_1],
      ['BLKIF_OP_DISCARD', B.BLKIF_OP_DISCARD],
      ['BLKIF_OP_INDIRECT', B.BLKIF_OP_INDIRECT],
      ['BLKIF_RSP_OKAY', B.BLKIF_RSP_OKAY],
      ['BLKIF_RSP_ERROR', B.BLKIF_RSP_ERROR],
      ['BLKIF_RSP_EOPNOTSUPP', B.BLKIF_RSP_EOPNOTSUPP],
      ['BLKIF_MAX_SEGMENTS_PER_REQUEST', B.BLKIF_MAX_SEGMENTS_PER_REQUEST],
      ['BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST', B.BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST],
      ['BLKIF_DISCARD_SECURE', B.BLKIF_DISCARD_SECURE],
      ['VDISK_CDROM', B.VDISK_CDROM],
      ['VDISK_REMOVABLE', B.VDISK_REMOVABLE],
      ['VDISK_READONLY', B.VDISK_READONLY],
    ];
    for (const [k, v] of want) expect([k, c[k]]).toEqual([k, v]);
    expect(B.BLKIF_SEGS_PER_INDIRECT_FRAME * B.BLKIF_SEGMENT_SIZE).toBe(4096);
  });

  it('netif structs and constants', () => {
    const want: [string, number][] = [
      ['sizeof.netif_tx_request_t', N.NETIF_TX_REQUEST_SIZE],
      ['offsetof.netif_tx_request_t.gref', N.NETIF_TX_REQ_GREF],
      ['offsetof.netif_tx_request_t.offset', N.NETIF_TX_REQ_OFFSET],
      ['offsetof.netif_tx_request_t.flags', N.NETIF_TX_REQ_FLAGS],
      ['offsetof.netif_tx_request_t.id', N.NETIF_TX_REQ_ID],
      ['offsetof.netif_tx_request_t.size', N.NETIF_TX_REQ_SIZE],
      ['sizeof.netif_tx_response_t', N.NETIF_TX_RESPONSE_SIZE],
      ['offsetof.netif_tx_response_t.id', N.NETIF_TX_RSP_ID],
      ['offsetof.netif_tx_response_t.status', N.NETIF_TX_RSP_STATUS],
      ['sizeof.netif_rx_request_t', N.NETIF_RX_REQUEST_SIZE],
      ['offsetof.netif_rx_request_t.id', N.NETIF_RX_REQ_ID],
      ['offsetof.netif_rx_request_t.gref', N.NETIF_RX_REQ_GREF],
      ['sizeof.netif_rx_response_t', N.NETIF_RX_RESPONSE_SIZE],
      ['offsetof.netif_rx_response_t.id', N.NETIF_RX_RSP_ID],
      ['offsetof.netif_rx_response_t.offset', N.NETIF_RX_RSP_OFFSET],
      ['offsetof.netif_rx_response_t.flags', N.NETIF_RX_RSP_FLAGS],
      ['offsetof.netif_rx_response_t.status', N.NETIF_RX_RSP_STATUS],
      ['sizeof.netif_extra_info_t', N.NETIF_EXTRA_INFO_SIZE],
      ['offsetof.netif_extra_info_t.type', N.NETIF_EXTRA_TYPE],
      ['offsetof.netif_extra_info_t.flags', N.NETIF_EXTRA_FLAGS],
      ['offsetof.netif_extra_info_t.u.gso.size', N.NETIF_EXTRA_GSO_SIZE],
      ['offsetof.netif_extra_info_t.u.gso.type', N.NETIF_EXTRA_GSO_TYPE],
      ['offsetof.netif_extra_info_t.u.gso.features', N.NETIF_EXTRA_GSO_FEATURES],
      ['offsetof.netif_extra_info_t.u.mcast.addr', N.NETIF_EXTRA_MCAST_ADDR],
      ['offsetof.netif_extra_info_t.u.hash.type', N.NETIF_EXTRA_HASH_TYPE],
      ['offsetof.netif_extra_info_t.u.hash.algorithm', N.NETIF_EXTRA_HASH_ALGORITHM],
      ['offsetof.netif_extra_info_t.u.hash.value', N.NETIF_EXTRA_HASH_VALUE],
      ['NETTXF_csum_blank', N.NETTXF_csum_blank],
      ['NETTXF_data_validated', N.NETTXF_data_validated],
      ['NETTXF_more_data', N.NETTXF_more_data],
      ['NETTXF_extra_info', N.NETTXF_extra_info],
      ['NETRXF_data_validated', N.NETRXF_data_validated],
      ['NETRXF_csum_blank', N.NETRXF_csum_blank],
      ['NETRXF_more_data', N.NETRXF_more_data],
      ['NETRXF_extra_info', N.NETRXF_extra_info],
      ['NETRXF_gso_prefix', N.NETRXF_gso_prefix],
      ['XEN_NETIF_EXTRA_TYPE_NONE', N.XEN_NETIF_EXTRA_TYPE_NONE],
      ['XEN_NETIF_EXTRA_TYPE_GSO', N.XEN_NETIF_EXTRA_TYPE_GSO],
      ['XEN_NETIF_EXTRA_TYPE_MCAST_ADD', N.XEN_NETIF_EXTRA_TYPE_MCAST_ADD],
      ['XEN_NETIF_EXTRA_TYPE_MCAST_DEL', N.XEN_NETIF_EXTRA_TYPE_MCAST_DEL],
      ['XEN_NETIF_EXTRA_TYPE_HASH', N.XEN_NETIF_EXTRA_TYPE_HASH],
      ['XEN_NETIF_EXTRA_TYPE_MAX', N.XEN_NETIF_EXTRA_TYPE_MAX],
      ['XEN_NETIF_EXTRA_FLAG_MORE', N.XEN_NETIF_EXTRA_FLAG_MORE],
      ['XEN_NETIF_GSO_TYPE_NONE', N.XEN_NETIF_GSO_TYPE_NONE],
      ['XEN_NETIF_GSO_TYPE_TCPV4', N.XEN_NETIF_GSO_TYPE_TCPV4],
      ['XEN_NETIF_GSO_TYPE_TCPV6', N.XEN_NETIF_GSO_TYPE_TCPV6],
      ['NETIF_RSP_DROPPED', N.NETIF_RSP_DROPPED],
      ['NETIF_RSP_ERROR', N.NETIF_RSP_ERROR],
      ['NETIF_RSP_OKAY', N.NETIF_RSP_OKAY],
      ['NETIF_RSP_NULL', N.NETIF_RSP_NULL],
      ['XEN_NETIF_NR_SLOTS_MIN', N.XEN_NETIF_NR_SLOTS_MIN],
      ['XEN_NETIF_MAX_TX_SIZE', N.XEN_NETIF_MAX_TX_SIZE],
    ];
    for (const [k, v] of want) expect([k, c[k]]).toEqual([k, v]);
  });
});
