/*
 * Prints sizes, offsets and constants of Xen's public ring, blkif and netif headers as JSON, as
 * gcc lays them out for x86-64, so the TypeScript definitions (src/abi/) can be checked against the
 * real thing rather than against our reading of it.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#define __XEN_INTERFACE_VERSION__ 0x00040e00
#define xen_mb() __sync_synchronize()
#define xen_rmb() __asm__ __volatile__("" ::: "memory")
#define xen_wmb() __asm__ __volatile__("" ::: "memory")
#include <xen/io/ring.h>
#include <xen/io/blkif.h>
#include <xen/io/netif.h>

static int first = 1;
static void kv(const char *k, long long v) {
  printf("%s\"%s\":%lld", first ? "{" : ",", k, v);
  first = 0;
}

#define SZ(t) kv("sizeof." #t, (long long)sizeof(t))
#define OFF(t, f) kv("offsetof." #t "." #f, (long long)offsetof(t, f))
#define C(n) kv(#n, (long long)(n))

int main(void) {
  SZ(blkif_sring_t);
  OFF(blkif_sring_t, req_prod);
  OFF(blkif_sring_t, req_event);
  OFF(blkif_sring_t, rsp_prod);
  OFF(blkif_sring_t, rsp_event);
  OFF(blkif_sring_t, pvt);
  OFF(blkif_sring_t, __pad);
  OFF(blkif_sring_t, ring);
  kv("slots.blkif.order0", __CONST_RING_SIZE(blkif, 4096));
  kv("slots.blkif.order1", __CONST_RING_SIZE(blkif, 8192));
  kv("slots.blkif.order2", __CONST_RING_SIZE(blkif, 16384));
  kv("slots.blkif.order3", __CONST_RING_SIZE(blkif, 32768));
  kv("slots.blkif.order4", __CONST_RING_SIZE(blkif, 65536));
  kv("slots.netif_tx", __CONST_RING_SIZE(netif_tx, 4096));
  kv("slots.netif_rx", __CONST_RING_SIZE(netif_rx, 4096));
  kv("sizeof.blkif_sring_entry", sizeof(union blkif_sring_entry));
  kv("sizeof.netif_tx_sring_entry", sizeof(union netif_tx_sring_entry));
  kv("sizeof.netif_rx_sring_entry", sizeof(union netif_rx_sring_entry));

  SZ(blkif_request_t);
  OFF(blkif_request_t, operation);
  OFF(blkif_request_t, nr_segments);
  OFF(blkif_request_t, handle);
  OFF(blkif_request_t, id);
  OFF(blkif_request_t, sector_number);
  OFF(blkif_request_t, seg);
  SZ(struct blkif_request_segment);
  OFF(struct blkif_request_segment, gref);
  OFF(struct blkif_request_segment, first_sect);
  OFF(struct blkif_request_segment, last_sect);
  SZ(blkif_request_discard_t);
  OFF(blkif_request_discard_t, flag);
  OFF(blkif_request_discard_t, handle);
  OFF(blkif_request_discard_t, id);
  OFF(blkif_request_discard_t, sector_number);
  OFF(blkif_request_discard_t, nr_sectors);
  SZ(blkif_request_indirect_t);
  OFF(blkif_request_indirect_t, indirect_op);
  OFF(blkif_request_indirect_t, nr_segments);
  OFF(blkif_request_indirect_t, id);
  OFF(blkif_request_indirect_t, sector_number);
  OFF(blkif_request_indirect_t, handle);
  OFF(blkif_request_indirect_t, indirect_grefs);
  SZ(blkif_response_t);
  OFF(blkif_response_t, id);
  OFF(blkif_response_t, operation);
  OFF(blkif_response_t, status);
  C(BLKIF_OP_READ);
  C(BLKIF_OP_WRITE);
  C(BLKIF_OP_WRITE_BARRIER);
  C(BLKIF_OP_FLUSH_DISKCACHE);
  C(BLKIF_OP_RESERVED_1);
  C(BLKIF_OP_DISCARD);
  C(BLKIF_OP_INDIRECT);
  C(BLKIF_RSP_OKAY);
  C(BLKIF_RSP_ERROR);
  C(BLKIF_RSP_EOPNOTSUPP);
  C(BLKIF_MAX_SEGMENTS_PER_REQUEST);
  C(BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST);
  C(BLKIF_DISCARD_SECURE);
  C(VDISK_CDROM);
  C(VDISK_REMOVABLE);
  C(VDISK_READONLY);

  SZ(netif_tx_request_t);
  OFF(netif_tx_request_t, gref);
  OFF(netif_tx_request_t, offset);
  OFF(netif_tx_request_t, flags);
  OFF(netif_tx_request_t, id);
  OFF(netif_tx_request_t, size);
  SZ(netif_tx_response_t);
  OFF(netif_tx_response_t, id);
  OFF(netif_tx_response_t, status);
  SZ(netif_rx_request_t);
  OFF(netif_rx_request_t, id);
  OFF(netif_rx_request_t, gref);
  SZ(netif_rx_response_t);
  OFF(netif_rx_response_t, id);
  OFF(netif_rx_response_t, offset);
  OFF(netif_rx_response_t, flags);
  OFF(netif_rx_response_t, status);
  SZ(netif_extra_info_t);
  OFF(netif_extra_info_t, type);
  OFF(netif_extra_info_t, flags);
  OFF(netif_extra_info_t, u.gso.size);
  OFF(netif_extra_info_t, u.gso.type);
  OFF(netif_extra_info_t, u.gso.features);
  OFF(netif_extra_info_t, u.mcast.addr);
  OFF(netif_extra_info_t, u.hash.type);
  OFF(netif_extra_info_t, u.hash.algorithm);
  OFF(netif_extra_info_t, u.hash.value);
  C(NETTXF_csum_blank);
  C(NETTXF_data_validated);
  C(NETTXF_more_data);
  C(NETTXF_extra_info);
  C(NETRXF_data_validated);
  C(NETRXF_csum_blank);
  C(NETRXF_more_data);
  C(NETRXF_extra_info);
  C(NETRXF_gso_prefix);
  C(XEN_NETIF_EXTRA_TYPE_NONE);
  C(XEN_NETIF_EXTRA_TYPE_GSO);
  C(XEN_NETIF_EXTRA_TYPE_MCAST_ADD);
  C(XEN_NETIF_EXTRA_TYPE_MCAST_DEL);
  C(XEN_NETIF_EXTRA_TYPE_HASH);
  C(XEN_NETIF_EXTRA_TYPE_MAX);
  C(XEN_NETIF_EXTRA_FLAG_MORE);
  C(XEN_NETIF_GSO_TYPE_NONE);
  C(XEN_NETIF_GSO_TYPE_TCPV4);
  C(XEN_NETIF_GSO_TYPE_TCPV6);
  C(NETIF_RSP_DROPPED);
  C(NETIF_RSP_ERROR);
  C(NETIF_RSP_OKAY);
  C(NETIF_RSP_NULL);
  C(XEN_NETIF_NR_SLOTS_MIN);
  C(XEN_NETIF_MAX_TX_SIZE);
  printf("}\n");
  return 0;
}
