/*
 * blkif_peer: a frontend or backend of Xen blkif rings written against Debian libxen-dev's own
 * <xen/io/ring.h> and <xen/io/blkif.h> macros and types. It is the C side of ringside's interop
 * tests (TypeScript rings must interoperate with it both ways) and the reference the ring bench
 * compares the TypeScript rings with (same workload, same memfd frames, same notification modes).
 *
 * The ring frames arrive as inherited descriptors (one memfd per 4 KiB frame) and are mapped at
 * consecutive addresses, the way a multi-page ring is mapped by a backend.
 *
 *   blkif_peer front|back [--queue FDS[:data=FD][:kick=FD][:irq=FD]]... [--mode poll|eventfd|futex]
 *              [--workload verify|bench] [--count N] [--duration-ms N] [--warmup-ms N] [--batch N]
 *              [--payload 0|4096] [--start IDX] [--spin N] [--latency 0|1] [--relax pause|none]
 *
 * FDS is a comma-separated list of frame descriptors (2^order of them). kick is the eventfd this
 * end signals to wake its peer, irq the one it sleeps on. The frontend initialises the sring, prints
 * "ready", waits for a line on stdin, runs, then sends a stop request (operation 0xff) on every
 * queue; the backend answers it and exits. Each end prints one JSON line with its counters.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <linux/futex.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* ring.h leaves barriers to its includer. x86 keeps stores in order and loads in order, so
 * wmb/rmb only have to stop the compiler; the store->load ordering that CHECK_NOTIFY and
 * FINAL_CHECK need is a real fence. */
#define __XEN_INTERFACE_VERSION__ 0x00040e00
#define xen_mb() __sync_synchronize()
#define xen_rmb() __asm__ __volatile__("" ::: "memory")
#define xen_wmb() __asm__ __volatile__("" ::: "memory")
#include <xen/io/ring.h>
#include <xen/io/blkif.h>

#define PAGE 4096
#define MAX_QUEUES 4
#define MAX_FRAMES 16
#define OP_STOP 0xff
#define STATUS_MISMATCH (-99)
#define HIST_BUCKETS 928
/* one request in 64 (by ring index) carries a timestamp, as in the TypeScript peer */
#define LATENCY_SAMPLE_MASK 63
/* throughput is also recorded per 10 ms window, so a run that lost its CPU to the host for a while
 * can be told from a slow one */
#define WINDOW_NS 10e6
#define MAX_WINDOWS 8192

enum mode { MODE_POLL, MODE_EVENTFD, MODE_FUTEX };
enum workload { WL_VERIFY, WL_BENCH };

struct queue {
  int frames[MAX_FRAMES];
  int nframes;
  int data_fd, kick_fd, irq_fd;
  size_t bytes;
  void *shared;
  uint8_t *data; /* persistent-grant pool: one page per slot */
  blkif_front_ring_t front;
  blkif_back_ring_t back;
  /* frontend bookkeeping */
  uint64_t sent, done;
  int stopping, stopped;
  double *t_sent;
  uint8_t *answered; /* verify: one flag per sequence number */
};

static struct {
  int front;
  enum mode mode;
  enum workload wl;
  uint64_t count;
  double duration_ms, warmup_ms;
  unsigned batch;
  unsigned payload;
  uint32_t start;
  unsigned spin;
  int latency;
  int nq;
  struct queue q[MAX_QUEUES];
} cfg = {.mode = MODE_POLL, .wl = WL_BENCH, .count = 1000, .duration_ms = 1000, .warmup_ms = 0,
         .batch = 1u << 30, .start = 0, .spin = 2000, .latency = 1};

static uint64_t completed, notifies, wakeups, pushes, errors, polls;
static int announce_wait;
static uint64_t hist[HIST_BUCKETS];
static uint64_t win_n[MAX_WINDOWS];
static double win_ns[MAX_WINDOWS];
static int nwin;
static uint8_t medium[PAGE]; /* the backend's "disk": payload copies land here */
static uint8_t private_buf[PAGE];

static void die(const char *m) {
  fprintf(stderr, "blkif_peer: %s%s%s\n", m, errno ? ": " : "", errno ? strerror(errno) : "");
  exit(2);
}

static inline double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* --relax pause: the PAUSE a C spin loop normally has. Under KVM it also lets pause-loop exiting
 * hand the physical CPU to a preempted sibling vCPU, which JavaScript (no PAUSE) cannot do; so the
 * bench spins the C peer like the TypeScript one (--relax none) unless asked otherwise. */
static int relax_pause = 1;
static inline void cpu_relax(void) {
  if (relax_pause) __asm__ __volatile__("pause" ::: "memory");
  else __asm__ __volatile__("" ::: "memory");
}

/* log-linear histogram shared with the TypeScript side: exact below 64 ns, 32 sub-buckets per
 * power of two above (about 3% resolution), clamped at 2^32 ns */
static inline void hist_add(double ns) {
  uint64_t v = ns <= 0 ? 0 : (uint64_t)ns;
  if (v > 0xffffffffull) v = 0xffffffffull;
  unsigned idx;
  if (v < 64) {
    idx = (unsigned)v;
  } else {
    unsigned e = 63 - __builtin_clzll(v);
    idx = 64 + (e - 6) * 32 + (unsigned)((v >> (e - 5)) & 31);
  }
  hist[idx]++;
}

/* ---- the verify workload: every field of request and response derived from (queue, seq) ---- */

static inline uint32_t mix(uint32_t q, uint32_t seq) {
  uint32_t x = seq * 2654435761u ^ (q + 1) * 0x5bd1e995u;
  x ^= x >> 13;
  x *= 0x5bd1e995u;
  x ^= x >> 15;
  return x;
}

static inline int expected_status(uint32_t h) {
  return h % 5 == 0 ? BLKIF_RSP_ERROR : h % 5 == 1 ? BLKIF_RSP_EOPNOTSUPP : BLKIF_RSP_OKAY;
}

static inline uint8_t verify_op(uint32_t h) {
  static const uint8_t ops[8] = {BLKIF_OP_READ, BLKIF_OP_READ, BLKIF_OP_READ, BLKIF_OP_WRITE,
                                 BLKIF_OP_WRITE, BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_DISCARD, BLKIF_OP_INDIRECT};
  return ops[h & 7];
}

static void verify_fill(blkif_request_t *slot, uint32_t q, uint32_t seq) {
  uint32_t h = mix(q, seq);
  uint8_t op = verify_op(h);
  uint64_t id = ((uint64_t)(h ^ 0xa5a5a5a5u) << 32) | seq;
  uint64_t sector = ((uint64_t)((h >> 24) & 0xffff) << 32) | (uint32_t)(h * 7u);
  if (op == BLKIF_OP_DISCARD) {
    blkif_request_discard_t *d = (blkif_request_discard_t *)slot;
    d->operation = op;
    d->flag = h & 1 ? BLKIF_DISCARD_SECURE : 0;
    d->handle = (h >> 8) & 0xffff;
    d->id = id;
    d->sector_number = sector;
    d->nr_sectors = (uint64_t)(h >> 5) + 1;
  } else if (op == BLKIF_OP_INDIRECT) {
    blkif_request_indirect_t *r = (blkif_request_indirect_t *)slot;
    r->operation = op;
    r->indirect_op = h & 1 ? BLKIF_OP_WRITE : BLKIF_OP_READ;
    r->nr_segments = 1 + h % 4096;
    r->handle = (h >> 8) & 0xffff;
    r->id = id;
    r->sector_number = sector;
    for (int i = 0; i < BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST; i++) r->indirect_grefs[i] = h ^ ((uint32_t)i * 0x1000193u);
  } else {
    slot->operation = op;
    slot->nr_segments = op == BLKIF_OP_FLUSH_DISKCACHE ? 0 : 1 + (h >> 4) % BLKIF_MAX_SEGMENTS_PER_REQUEST;
    slot->handle = (h >> 8) & 0xffff;
    slot->id = id;
    slot->sector_number = sector;
    for (int i = 0; i < slot->nr_segments; i++) {
      uint8_t first = (h + i) & 7;
      slot->seg[i].gref = h + (uint32_t)i * 977u;
      slot->seg[i].first_sect = first;
      slot->seg[i].last_sect = first + ((h >> 3) + i) % (8 - first);
    }
  }
}

/* a request copied out of the ring, checked field by field against what the frontend must have sent */
static int verify_check(const blkif_request_t *req, uint32_t q) {
  uint32_t seq = (uint32_t)req->id;
  uint32_t h = mix(q, seq);
  uint8_t op = verify_op(h);
  uint64_t id = ((uint64_t)(h ^ 0xa5a5a5a5u) << 32) | seq;
  uint64_t sector = ((uint64_t)((h >> 24) & 0xffff) << 32) | (uint32_t)(h * 7u);
  if (req->operation != op || req->id != id || req->sector_number != sector) return 0;
  if (op == BLKIF_OP_DISCARD) {
    blkif_request_discard_t d;
    memcpy(&d, req, sizeof d);
    return d.flag == (h & 1 ? BLKIF_DISCARD_SECURE : 0) && d.handle == ((h >> 8) & 0xffff) && d.nr_sectors == (uint64_t)(h >> 5) + 1;
  }
  if (op == BLKIF_OP_INDIRECT) {
    blkif_request_indirect_t r;
    memcpy(&r, req, sizeof r);
    if (r.indirect_op != (h & 1 ? BLKIF_OP_WRITE : BLKIF_OP_READ) || r.nr_segments != 1 + h % 4096 || r.handle != ((h >> 8) & 0xffff)) return 0;
    for (int i = 0; i < BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST; i++)
      if (r.indirect_grefs[i] != (h ^ ((uint32_t)i * 0x1000193u))) return 0;
    return 1;
  }
  unsigned nseg = op == BLKIF_OP_FLUSH_DISKCACHE ? 0 : 1 + (h >> 4) % BLKIF_MAX_SEGMENTS_PER_REQUEST;
  if (req->nr_segments != nseg || req->handle != ((h >> 8) & 0xffff)) return 0;
  for (unsigned i = 0; i < nseg; i++) {
    uint8_t first = (h + i) & 7;
    if (req->seg[i].gref != h + i * 977u || req->seg[i].first_sect != first ||
        req->seg[i].last_sect != first + ((h >> 3) + i) % (8 - first))
      return 0;
  }
  return 1;
}

/* ---- notifications ---- */

static void kick(struct queue *q, int notify, volatile RING_IDX *word) {
  if (!notify) return;
  notifies++;
  if (cfg.mode == MODE_EVENTFD) {
    uint64_t one = 1;
    if (write(q->kick_fd, &one, 8) < 0 && errno != EAGAIN) die("eventfd write");
  } else if (cfg.mode == MODE_FUTEX) {
    syscall(SYS_futex, word, FUTEX_WAKE, 1, NULL, NULL, 0);
  }
}

/* sleep until any queue's irq eventfd fires */
static void wait_irq(void) {
  struct pollfd p[MAX_QUEUES];
  /* --announce-wait: tell the peer, once, that we did the final check and now sleep, so a test can
     make its first send certainly find us asleep instead of hoping the scheduler arranged it. */
  if (announce_wait) {
    announce_wait = 0;
    printf("waiting\n");
    fflush(stdout);
  }
  for (int i = 0; i < cfg.nq; i++) p[i] = (struct pollfd){.fd = cfg.q[i].irq_fd, .events = POLLIN};
  wakeups++;
  while (poll(p, cfg.nq, -1) < 0)
    if (errno != EINTR) die("poll");
  for (int i = 0; i < cfg.nq; i++) {
    uint64_t v;
    if (p[i].revents && read(p[i].fd, &v, 8) < 0 && errno != EAGAIN) die("eventfd read");
  }
}

static void wait_futex(volatile RING_IDX *word, RING_IDX seen) {
  wakeups++;
  syscall(SYS_futex, word, FUTEX_WAIT, seen, NULL, NULL, 0);
}

/* ---- backend ---- */

static int serve_queue(struct queue *q, unsigned qi, int *all_stopped) {
  blkif_back_ring_t *r = &q->back;
  RING_IDX rp = r->sring->req_prod;
  xen_rmb();
  if (RING_REQUEST_PROD_OVERFLOW(r, rp)) {
    fprintf(stderr, "blkif_peer: frontend provided bogus ring requests (req_prod %u, rsp_prod_pvt %u)\n", rp, r->rsp_prod_pvt);
    exit(3);
  }
  int did = 0;
  unsigned in_batch = 0;
  while (r->req_cons != rp && !RING_REQUEST_CONS_OVERFLOW(r, r->req_cons)) {
    blkif_request_t req;
    RING_COPY_REQUEST(r, r->req_cons, &req);
    r->req_cons++;
    int16_t status = BLKIF_RSP_OKAY;
    if (req.operation == OP_STOP) {
      q->stopped = 1;
    } else if (cfg.wl == WL_VERIFY) {
      uint32_t h = mix(qi, (uint32_t)req.id);
      if (verify_check(&req, qi)) {
        status = expected_status(h);
      } else {
        status = STATUS_MISMATCH;
        errors++;
      }
    } else {
      int ok = (req.operation == BLKIF_OP_READ || req.operation == BLKIF_OP_WRITE) && req.nr_segments >= 1 &&
               req.nr_segments <= BLKIF_MAX_SEGMENTS_PER_REQUEST;
      for (unsigned i = 0; ok && i < req.nr_segments; i++)
        ok = req.seg[i].last_sect < 8 && req.seg[i].last_sect >= req.seg[i].first_sect && req.seg[i].gref < RING_SIZE(r);
      if (!ok) {
        status = BLKIF_RSP_ERROR;
        errors++;
      } else if (cfg.payload) {
        uint8_t *page = q->data + (size_t)req.seg[0].gref * PAGE;
        if (req.operation == BLKIF_OP_WRITE)
          memcpy(medium, page, cfg.payload);
        else
          memcpy(page, medium, cfg.payload);
      }
    }
    blkif_response_t *rsp = RING_GET_RESPONSE(r, r->rsp_prod_pvt);
    memset(rsp, 0, sizeof *rsp);
    rsp->id = req.id;
    rsp->operation = req.operation;
    rsp->status = status;
    r->rsp_prod_pvt++;
    completed++;
    did = 1;
    if (++in_batch == cfg.batch) {
      int notify;
      RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(r, notify);
      pushes++;
      kick(q, notify, &r->sring->rsp_prod);
      in_batch = 0;
    }
  }
  if (in_batch) {
    int notify;
    RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(r, notify);
    pushes++;
    kick(q, notify, &r->sring->rsp_prod);
  }
  if (!q->stopped) *all_stopped = 0;
  return did;
}

static void run_back(void) {
  unsigned idle = 0;
  for (;;) {
    int all_stopped = 1, did = 0;
    for (int i = 0; i < cfg.nq; i++) did |= serve_queue(&cfg.q[i], i, &all_stopped);
    if (all_stopped) return;
    polls++;
    if (did) {
      idle = 0;
      continue;
    }
    if (cfg.mode == MODE_POLL || (cfg.mode == MODE_FUTEX && ++idle < cfg.spin)) {
      cpu_relax();
      continue;
    }
    idle = 0;
    int more = 0;
    for (int i = 0; i < cfg.nq; i++) {
      int m;
      RING_FINAL_CHECK_FOR_REQUESTS(&cfg.q[i].back, m);
      more |= m;
    }
    if (more) continue;
    if (cfg.mode == MODE_EVENTFD)
      wait_irq();
    else
      wait_futex(&cfg.q[0].back.sring->req_prod, cfg.q[0].back.req_cons);
  }
}

/* ---- frontend ---- */

static int measuring;

static int reap_queue(struct queue *q, unsigned qi) {
  blkif_front_ring_t *r = &q->front;
  RING_IDX rp = r->sring->rsp_prod;
  xen_rmb();
  if (rp == r->rsp_cons) return 0;
  if (RING_RESPONSE_PROD_OVERFLOW(r, rp)) {
    fprintf(stderr, "blkif_peer: backend provided bogus ring responses (rsp_prod %u, rsp_cons %u)\n", rp, r->rsp_cons);
    exit(3);
  }
  int sampling = cfg.latency && measuring;
  double t = 0;
  unsigned mask = RING_SIZE(r) - 1;
  for (RING_IDX i = r->rsp_cons; i != rp; i++) {
    blkif_response_t rsp;
    RING_COPY_RESPONSE(r, i, &rsp);
    if (rsp.operation == OP_STOP) {
      q->stopped = 1;
      continue;
    }
    if (cfg.wl == WL_VERIFY) {
      uint32_t seq = (uint32_t)rsp.id;
      uint32_t h = mix(qi, seq);
      uint64_t id = ((uint64_t)(h ^ 0xa5a5a5a5u) << 32) | seq;
      if (seq >= cfg.count || q->answered[seq] || rsp.id != id || rsp.operation != verify_op(h) || rsp.status != expected_status(h))
        errors++;
      else
        q->answered[seq] = 1;
    } else {
      if (rsp.status != BLKIF_RSP_OKAY) errors++;
      if (cfg.payload && rsp.operation == BLKIF_OP_READ) memcpy(private_buf, q->data + (size_t)(rsp.id & mask) * PAGE, cfg.payload);
      if (sampling && (rsp.id & LATENCY_SAMPLE_MASK) == 0) {
        if (t == 0) t = now_ns();
        hist_add(t - q->t_sent[rsp.id & mask]);
      }
    }
    q->done++;
    if (measuring) completed++;
  }
  r->rsp_cons = rp;
  return 1;
}

static int issue_queue(struct queue *q, unsigned qi) {
  blkif_front_ring_t *r = &q->front;
  int did = 0;
  unsigned mask = RING_SIZE(r) - 1;
  for (;;) {
    unsigned free_slots = RING_FREE_REQUESTS(r);
    if (free_slots == 0 || q->stopped || q->stopping == 2) return did;
    if (q->stopping == 1) {
      if (free_slots != RING_SIZE(r)) return did; /* wait for every answer before the stop */
      blkif_request_t *req = RING_GET_REQUEST(r, r->req_prod_pvt);
      memset(req, 0, sizeof *req);
      req->operation = OP_STOP;
      r->req_prod_pvt++;
      int notify;
      RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(r, notify);
      pushes++;
      kick(q, notify, &r->sring->req_prod);
      q->stopping = 2;
      return 1;
    }
    unsigned n = free_slots < cfg.batch ? free_slots : cfg.batch;
    if (cfg.wl == WL_VERIFY && q->sent + n > cfg.count) n = (unsigned)(cfg.count - q->sent);
    if (n == 0) return did;
    double t = 0;
    for (unsigned k = 0; k < n; k++) {
      RING_IDX idx = r->req_prod_pvt;
      blkif_request_t *req = RING_GET_REQUEST(r, idx);
      if (cfg.wl == WL_VERIFY) {
        verify_fill(req, qi, (uint32_t)q->sent);
      } else {
        unsigned slot = idx & mask;
        req->operation = idx & 1 ? BLKIF_OP_WRITE : BLKIF_OP_READ;
        req->nr_segments = 1;
        req->handle = 0;
        req->id = idx;
        req->sector_number = (uint64_t)(idx & 0xfffff) * 8;
        req->seg[0].gref = slot;
        req->seg[0].first_sect = 0;
        req->seg[0].last_sect = 7;
        if (cfg.payload && req->operation == BLKIF_OP_WRITE) memcpy(q->data + (size_t)slot * PAGE, private_buf, cfg.payload);
        if (cfg.latency && (idx & LATENCY_SAMPLE_MASK) == 0) {
          if (t == 0) t = now_ns();
          q->t_sent[slot] = t;
        }
      }
      r->req_prod_pvt++;
      q->sent++;
    }
    int notify;
    RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(r, notify);
    pushes++;
    kick(q, notify, &r->sring->req_prod);
    did = 1;
  }
}

static void run_front(void) {
  double t0 = now_ns();
  double t_measure = t0 + cfg.warmup_ms * 1e6;
  double t_end = t_measure + cfg.duration_ms * 1e6;
  double t_start = t0;
  /* 0 warming up, 1 measuring, 2 draining before the stop */
  int phase = cfg.wl == WL_VERIFY || cfg.warmup_ms <= 0 ? 1 : 0;
  measuring = phase == 1;
  unsigned idle = 0, tick = 0;
  double w_start = t0;
  uint64_t w_done = 0;
  for (;;) {
    int did = 0, all_stopped = 1;
    for (int i = 0; i < cfg.nq; i++) {
      struct queue *q = &cfg.q[i];
      did |= reap_queue(q, i);
      if (!q->stopping && cfg.wl == WL_VERIFY && q->done == cfg.count) q->stopping = 1;
      did |= issue_queue(q, i);
      if (!q->stopped) all_stopped = 0;
    }
    if (all_stopped) break;
    if (cfg.wl == WL_BENCH && phase < 2 && (++tick & 63) == 0) {
      double t = now_ns();
      if (phase == 0 && t >= t_measure) {
        phase = 1;
        measuring = 1;
        completed = notifies = wakeups = pushes = 0;
        memset(hist, 0, sizeof hist);
        t_start = w_start = t;
        w_done = 0;
      } else if (phase == 1 && t >= t_end) {
        if (t - w_start >= WINDOW_NS / 5 && nwin < MAX_WINDOWS) {
          win_n[nwin] = completed - w_done;
          win_ns[nwin++] = t - w_start;
        }
        phase = 2;
        measuring = 0;
        t_end = t;
        for (int i = 0; i < cfg.nq; i++) cfg.q[i].stopping = 1;
      } else if (phase == 1 && t - w_start >= WINDOW_NS && nwin < MAX_WINDOWS) {
        win_n[nwin] = completed - w_done;
        win_ns[nwin++] = t - w_start;
        w_start = t;
        w_done = completed;
      }
    }
    polls++;
    if (did) {
      idle = 0;
      continue;
    }
    if (cfg.mode == MODE_POLL || (cfg.mode == MODE_FUTEX && ++idle < cfg.spin)) {
      cpu_relax();
      continue;
    }
    idle = 0;
    int more = 0;
    for (int i = 0; i < cfg.nq; i++) {
      int m;
      RING_FINAL_CHECK_FOR_RESPONSES(&cfg.q[i].front, m);
      more |= m;
    }
    if (more) continue;
    if (cfg.mode == MODE_EVENTFD)
      wait_irq();
    else
      wait_futex(&cfg.q[0].front.sring->rsp_prod, cfg.q[0].front.rsp_cons);
  }
  if (cfg.wl == WL_VERIFY) {
    t_end = now_ns();
    for (int i = 0; i < cfg.nq; i++)
      for (uint64_t s = 0; s < cfg.count; s++)
        if (!cfg.q[i].answered[s]) errors++;
  }
  printf("{\"role\":\"front\",\"completed\":%" PRIu64 ",\"elapsed_ns\":%.0f,\"notifies\":%" PRIu64 ",\"wakeups\":%" PRIu64
         ",\"pushes\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"ring_size\":%u,\"hist\":[",
         completed, t_end - t_start, notifies, wakeups, pushes, errors, RING_SIZE(&cfg.q[0].front));
  int first = 1;
  for (int i = 0; i < HIST_BUCKETS; i++)
    if (hist[i]) {
      printf("%s[%d,%" PRIu64 "]", first ? "" : ",", i, hist[i]);
      first = 0;
    }
  printf("],\"windows\":[");
  for (int i = 0; i < nwin; i++) printf("%s[%" PRIu64 ",%.0f]", i ? "," : "", win_n[i], win_ns[i]);
  printf("]}\n");
}

/* ---- setup ---- */

static void parse_queue(const char *spec) {
  if (cfg.nq == MAX_QUEUES) die("too many queues");
  struct queue *q = &cfg.q[cfg.nq++];
  q->data_fd = q->kick_fd = q->irq_fd = -1;
  char *s = strdup(spec), *save = NULL;
  char *frames = strtok_r(s, ":", &save);
  for (char *opt = strtok_r(NULL, ":", &save); opt; opt = strtok_r(NULL, ":", &save)) {
    if (!strncmp(opt, "data=", 5)) q->data_fd = atoi(opt + 5);
    else if (!strncmp(opt, "kick=", 5)) q->kick_fd = atoi(opt + 5);
    else if (!strncmp(opt, "irq=", 4)) q->irq_fd = atoi(opt + 4);
    else die("bad --queue option");
  }
  char *save2 = NULL;
  for (char *f = strtok_r(frames, ",", &save2); f; f = strtok_r(NULL, ",", &save2)) {
    if (q->nframes == MAX_FRAMES) die("too many frames");
    q->frames[q->nframes++] = atoi(f);
  }
  if (q->nframes == 0 || (q->nframes & (q->nframes - 1))) die("frame count must be a power of two");
  free(s);
}

static void map_queue(struct queue *q) {
  q->bytes = (size_t)q->nframes * PAGE;
  uint8_t *base = mmap(NULL, q->bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) die("mmap reserve");
  for (int i = 0; i < q->nframes; i++)
    if (mmap(base + (size_t)i * PAGE, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, q->frames[i], 0) == MAP_FAILED)
      die("mmap frame");
  q->shared = base;
  blkif_sring_t *s = (blkif_sring_t *)base;
  if (cfg.front) {
    SHARED_RING_INIT(s);
    if (cfg.start) {
      s->req_prod = s->rsp_prod = cfg.start;
      s->req_event = s->rsp_event = cfg.start + 1;
    }
    FRONT_RING_ATTACH(&q->front, s, cfg.start, q->bytes);
    q->t_sent = calloc(RING_SIZE(&q->front), sizeof(double));
    if (cfg.wl == WL_VERIFY) q->answered = calloc(cfg.count ? cfg.count : 1, 1);
  } else {
    BACK_RING_ATTACH(&q->back, s, cfg.start, q->bytes);
  }
  unsigned n = cfg.front ? RING_SIZE(&q->front) : RING_SIZE(&q->back);
  if (cfg.payload) {
    if (q->data_fd < 0) die("--payload needs data=FD in --queue");
    q->data = mmap(NULL, (size_t)n * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, q->data_fd, 0);
    if (q->data == MAP_FAILED) die("mmap data");
  }
  if (cfg.mode == MODE_EVENTFD && (q->kick_fd < 0 || q->irq_fd < 0)) die("--mode eventfd needs kick=FD and irq=FD");
}

int main(int argc, char **argv) {
  if (argc < 2) die("usage: blkif_peer front|back [options]");
  if (!strcmp(argv[1], "front")) cfg.front = 1;
  else if (strcmp(argv[1], "back")) die("role must be front or back");
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) die("missing option value");
    i++;
    if (!strcmp(a, "--queue")) parse_queue(v);
    else if (!strcmp(a, "--mode")) cfg.mode = !strcmp(v, "poll") ? MODE_POLL : !strcmp(v, "eventfd") ? MODE_EVENTFD : !strcmp(v, "futex") ? MODE_FUTEX : (die("bad --mode"), MODE_POLL);
    else if (!strcmp(a, "--workload")) cfg.wl = !strcmp(v, "verify") ? WL_VERIFY : !strcmp(v, "bench") ? WL_BENCH : (die("bad --workload"), WL_BENCH);
    else if (!strcmp(a, "--count")) cfg.count = strtoull(v, NULL, 10);
    else if (!strcmp(a, "--duration-ms")) cfg.duration_ms = atof(v);
    else if (!strcmp(a, "--warmup-ms")) cfg.warmup_ms = atof(v);
    else if (!strcmp(a, "--batch")) cfg.batch = (unsigned)strtoul(v, NULL, 10);
    else if (!strcmp(a, "--payload")) cfg.payload = (unsigned)strtoul(v, NULL, 10);
    else if (!strcmp(a, "--start")) cfg.start = (uint32_t)strtoul(v, NULL, 0);
    else if (!strcmp(a, "--spin")) cfg.spin = (unsigned)strtoul(v, NULL, 10);
    else if (!strcmp(a, "--latency")) cfg.latency = atoi(v);
    else if (!strcmp(a, "--announce-wait")) announce_wait = atoi(v);
    else if (!strcmp(a, "--relax")) relax_pause = !strcmp(v, "pause") ? 1 : !strcmp(v, "none") ? 0 : (die("bad --relax"), 0);
    else die("unknown option");
  }
  if (cfg.nq == 0) die("need at least one --queue");
  if (cfg.batch == 0) cfg.batch = 1;
  if (cfg.payload > PAGE) die("--payload is at most 4096");
  if (cfg.mode == MODE_FUTEX && cfg.nq != 1) die("--mode futex supports one queue");
  if (cfg.wl == WL_VERIFY && cfg.count > 0xffffffffull) die("--count too large");
  memset(medium, 0x5a, sizeof medium);
  memset(private_buf, 0xa5, sizeof private_buf);
  for (int i = 0; i < cfg.nq; i++) map_queue(&cfg.q[i]);
  if (cfg.front) {
    printf("ready\n");
    fflush(stdout);
    char line[16];
    if (!fgets(line, sizeof line, stdin)) die("no go line on stdin");
    run_front();
  } else {
    printf("ready\n");
    fflush(stdout);
    run_back();
    printf("{\"role\":\"back\",\"completed\":%" PRIu64 ",\"notifies\":%" PRIu64 ",\"wakeups\":%" PRIu64 ",\"pushes\":%" PRIu64
           ",\"errors\":%" PRIu64 ",\"ring_size\":%u}\n",
           completed, notifies, wakeups, pushes, errors, RING_SIZE(&cfg.q[0].back));
  }
  return 0;
}
