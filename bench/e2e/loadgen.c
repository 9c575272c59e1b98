// End-to-end UDP load generator for the PCP server (bench/e2e.bench.ts compiles it with
// gcc -O2 into build/). One non-blocking UDP socket, sendmmsg/recvmmsg and poll, so the
// generator costs far less per request than the Node server it drives.
//
// Every request is a real, distinct PCP MAP request [RFC 6887 §11.1] carrying a
// THIRD_PARTY option [§13.1], so that this one socket speaks for millions of subscribers
// (its source address must be in the server's `thirdPartySources`):
//   header   version 2, opcode MAP, lifetime L, client address = our own source address
//            (v4-mapped: the codec checks it against the datagram's source, row 10)
//   MAP      nonce derived from the subscriber (strict nonce policy: a key always sends
//            the same nonce), protocol TCP, internal port, suggested external ::ffff:0.0.0.0
//   option   THIRD_PARTY (code 1, length 16): the subscriber's internal address
//   option   CHECKPOINT_REQUIRED (code 192, length 0) [RFC 7767 §3.1], only with
//            --checkpoint 1 (bench/ha.bench.ts); the answer must echo it, i.e. the server
//            honoured it and replied only once the mapping was durable
// Key k in [0, N) belongs to subscriber s = k / PER_SUB (internal address
// 10.s>>16.s>>8.s, s < 2^24) and uses internal port 1024 + k % PER_SUB, as the module's
// own load generator (assembly/loadgen.ts) does.
//
// Modes (one JSON line on stdout at the end; progress and errors on stderr):
//   populate  create keys 0..N-1 once each with at most W requests outstanding,
//             retransmitting any without an answer after the timeout, until every key got
//             a valid SUCCESS (exit 1 if a key exhausts its retries or the deadline passes);
//   run       for D seconds keep W requests outstanding for keys visited in a scattered
//             order (a multiplicative stride through [0, N), so no two outstanding requests
//             share a key); a request without an answer after the timeout counts as lost;
//   echo      as run, against an echo server: the answer must equal the request bytes;
//   ping      send key 0 every 100 ms until one valid SUCCESS answer (readiness probe);
//   churn     as run, but each request deletes its key's mapping (lifetime 0) if it exists
//             and creates it again if not: every answer is a create or a delete event
//             (bench/control.bench.ts); --state F keeps which keys exist between runs.
// Every answer is matched to its key (THIRD_PARTY address + internal port) and checked:
// R bit, opcode, result SUCCESS, lifetime, nonce, protocol, internal port and external
// port non-zero, THIRD_PARTY echoed. Latency is kept in a 1 µs histogram.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "latency.h"

enum { REQ_SIZE = 80, REQ_MAX = 84, BATCH = 64, MAX_SERVERS = 16, MAX_WINDOW = 65536 };
enum { MODE_POPULATE, MODE_RUN, MODE_ECHO, MODE_PING, MODE_CHURN };

// Options (see usage()).
static int mode;
static uint64_t nkeys = 1000, per_sub = 50, window = 128, lifetime = 3600;
static double duration = 10, timeout_ms = 1000, deadline_s = 600;
static int max_tries = 20;
static const char *state_file; // churn: --state F keeps the live/deleted bits between runs
static int checkpoint;             // --checkpoint 1: every request carries CHECKPOINT_REQUIRED
static ssize_t req_size = REQ_SIZE; // REQ_SIZE, + 4 with the option
static struct sockaddr_in servers[MAX_SERVERS];
static int nservers;
static struct sockaddr_in bind_addr;
// --bind A,B,...: subscriber s speaks from source binds[s % nbinds] (several sources reach
// several members of a server's SO_REUSEPORT group, which steers by source address). With
// more than one, the socket is bound to the wildcard and each request names its source
// with IP_PKTINFO.
static struct sockaddr_in binds[MAX_SERVERS];
static int nbinds;

static uint64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void die(const char *what) {
  fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
  exit(2);
}

static void usage(void) {
  fprintf(stderr,
          "usage: loadgen populate|run|echo|ping|churn --server A:P[,A:P...] --bind A[,A...] [--keys N] [--per-sub P]\n"
          "               [--window W] [--duration S] [--timeout-ms T] [--tries K] [--deadline S] [--lifetime L]\n"
          "               [--checkpoint 0|1] [--state FILE]\n");
  exit(2);
}

static void parse_addr(const char *s, struct sockaddr_in *a, int need_port) {
  char host[64];
  const char *colon = strchr(s, ':');
  size_t n = colon ? (size_t)(colon - s) : strlen(s);
  if (n >= sizeof host || (need_port && !colon)) usage();
  memcpy(host, s, n);
  host[n] = 0;
  memset(a, 0, sizeof *a);
  a->sin_family = AF_INET;
  if (inet_pton(AF_INET, host, &a->sin_addr) != 1) usage();
  a->sin_port = htons(colon ? (uint16_t)atoi(colon + 1) : 0);
}

// --- Requests ------------------------------------------------------------------------

static uint32_t subscriber_of(uint64_t key) { return (uint32_t)(key / per_sub); }

/** The 12-byte nonce of a subscriber: fixed, so refreshes pass the strict nonce check. */
static void nonce_of(uint32_t s, uint8_t out[12]) {
  uint64_t a = 0x5851f42d4c957f2dull * (uint64_t)(s + 1);
  uint32_t b = s ^ 0xa5a5a5a5u;
  memcpy(out, &a, 8);
  memcpy(out + 8, &b, 4);
}

static void put32(uint8_t *p, uint32_t v) { v = htonl(v); memcpy(p, &v, 4); }
static void put16(uint8_t *p, uint16_t v) { v = htons(v); memcpy(p, &v, 2); }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return ntohl(v); }
static uint16_t get16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return ntohs(v); }

/** v4-mapped IPv6 form (::ffff:a.b.c.d) of an IPv4 address in host order. */
static void put_mapped(uint8_t *p, uint32_t v4) {
  memset(p, 0, 10);
  p[10] = p[11] = 0xff;
  put32(p + 12, v4);
}

/**
 * churn: one bit per key, set while the key's mapping exists (every key after populate).
 * A live key is deleted (lifetime 0), a deleted one created again: every answered request
 * is a create or a delete event on the server. Flipped only by a valid answer, so a lost
 * one is asked again as it was (deleting a deleted mapping, or creating one that exists:
 * a refresh, both SUCCESS).
 */
static uint8_t *dead;
static int is_dead(uint64_t key) { return mode == MODE_CHURN && (dead[key >> 3] >> (key & 7)) & 1; }
static int is_delete(uint64_t key) { return mode == MODE_CHURN && !is_dead(key); }

static void build_request(uint64_t key, uint8_t *b) {
  uint32_t s = subscriber_of(key);
  memset(b, 0, (size_t)req_size);
  b[0] = 2;                                           // version
  b[1] = 1;                                           // R = 0, opcode MAP
  put32(b + 4, is_delete(key) ? 0 : (uint32_t)lifetime); // requested lifetime (0: delete)
  put_mapped(b + 8, ntohl(binds[s % nbinds].sin_addr.s_addr)); // client address: our source
  nonce_of(s, b + 24);                                // mapping nonce
  b[36] = 6;                                          // protocol TCP
  put16(b + 40, (uint16_t)(1024 + key % per_sub));    // internal port
  put_mapped(b + 44, 0);                              // suggested external: any (v4)
  b[60] = 1;                                          // option THIRD_PARTY
  put16(b + 62, 16);                                  // option length
  put_mapped(b + 64, 0x0a000000u | (s & 0xffffff));   // internal address 10.x.y.z
  if (checkpoint) b[80] = 192;                        // option CHECKPOINT_REQUIRED, no data
}

/** The key an answer is for (from its THIRD_PARTY address and internal port), or -1. */
static int64_t key_of(const uint8_t *b, ssize_t n) {
  if (n < REQ_SIZE || b[60] != 1 || get16(b + 62) != 16) return -1;
  uint32_t a = get32(b + 76), port = get16(b + 40);
  if ((a >> 24) != 10 || port < 1024 || port - 1024 >= per_sub) return -1;
  uint64_t key = (uint64_t)(a & 0xffffff) * per_sub + (port - 1024);
  return key < nkeys ? (int64_t)key : -1;
}

/** A valid MAP SUCCESS answer to the request of `key` (or the request itself in echo mode). */
static int answer_ok(uint64_t key, const uint8_t *b, ssize_t n) {
  uint8_t req[REQ_MAX];
  build_request(key, req);
  if (mode == MODE_ECHO) return n == req_size && memcmp(b, req, (size_t)req_size) == 0;
  int del = is_delete(key);
  return n == req_size && b[0] == 2 && b[1] == (0x80 | 1) && b[3] == 0 // R bit, MAP, SUCCESS
         && (del ? get32(b + 4) == 0 : get32(b + 4) > 0)             // granted lifetime (0: deleted)
         && memcmp(b + 24, req + 24, 12) == 0                          // nonce echoed
         && b[36] == 6 && get16(b + 40) == get16(req + 40)             // protocol, internal port
         && (del || get16(b + 42) != 0)                                // assigned external port
         && memcmp(b + 60, req + 60, (size_t)req_size - 60) == 0;      // THIRD_PARTY (and CHECKPOINT_REQUIRED) echoed
}

// --- Outstanding requests --------------------------------------------------------------
// At most W requests are outstanding; a small open-addressing table maps key → slot.

typedef struct {
  uint64_t key;
  uint64_t sent_ns; // 0 while queued for sending
  int tries;
  int busy;
} Slot;

static Slot *slots;
static uint32_t *free_slots, nfree;
static uint32_t *send_queue, sq_head, sq_len; // ring of slot indices to send
static int32_t *table;                        // key → slot index, -1 empty
static uint32_t table_mask;

static uint32_t hash_key(uint64_t k) { return (uint32_t)((k * 0x9e3779b97f4a7c15ull) >> 40) & table_mask; }

static int32_t table_find(uint64_t key) {
  for (uint32_t i = hash_key(key);; i = (i + 1) & table_mask) {
    if (table[i] < 0) return -1;
    if (slots[table[i]].key == key) return table[i];
  }
}

static void table_insert(uint64_t key, int32_t slot) {
  uint32_t i = hash_key(key);
  while (table[i] >= 0) i = (i + 1) & table_mask;
  table[i] = slot;
}

/** Linear-probing removal with backward shift (no tombstones). */
static void table_remove(uint64_t key) {
  uint32_t i = hash_key(key);
  while (slots[table[i]].key != key) i = (i + 1) & table_mask;
  for (uint32_t j = (i + 1) & table_mask; table[j] >= 0; j = (j + 1) & table_mask) {
    uint32_t home = hash_key(slots[table[j]].key);
    // Move j back into i if its home is not in the cyclic range (i, j].
    if (((j - home) & table_mask) >= ((j - i) & table_mask)) {
      table[i] = table[j];
      i = j;
    }
  }
  table[i] = -1;
}

static void queue_send(uint32_t slot) {
  slots[slot].sent_ns = 0;
  send_queue[(sq_head + sq_len++) % window] = slot;
}

static void start_key(uint64_t key) {
  uint32_t slot = free_slots[--nfree];
  slots[slot] = (Slot){.key = key, .tries = 0, .busy = 1};
  table_insert(key, (int32_t)slot);
  queue_send(slot);
}

static void finish_slot(uint32_t slot) {
  table_remove(slots[slot].key);
  slots[slot].busy = 0;
  free_slots[nfree++] = slot;
}

// --- Counters ----------------------------------------------------------------------------

static uint64_t sent, received, ok, bad, lost, stray, retransmits;


// --- Socket ------------------------------------------------------------------------------

static int sock;

static void open_socket(void) {
  sock = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  if (sock < 0) die("socket");
  int big = 8 << 20; // capped by net.core.{r,w}mem_max; enough for any window used here
  setsockopt(sock, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  setsockopt(sock, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
  if (nbinds > 1) bind_addr = (struct sockaddr_in){.sin_family = AF_INET}; // 0.0.0.0: sources per request
  if (bind(sock, (struct sockaddr *)&bind_addr, sizeof bind_addr) < 0) die("bind");
}

/** Sends queued requests (sendmmsg, BATCH at a time) until the queue is empty or EAGAIN. */
static void flush_sends(void) {
  static uint8_t bufs[BATCH][REQ_MAX];
  static struct iovec iov[BATCH];
  static struct mmsghdr msgs[BATCH];
  static char control[BATCH][CMSG_SPACE(sizeof(struct in_pktinfo))];
  while (sq_len > 0) {
    uint32_t n = sq_len < BATCH ? sq_len : BATCH;
    for (uint32_t i = 0; i < n; i++) {
      Slot *sl = &slots[send_queue[(sq_head + i) % window]];
      build_request(sl->key, bufs[i]);
      iov[i] = (struct iovec){bufs[i], (size_t)req_size};
      msgs[i].msg_hdr = (struct msghdr){
          .msg_name = &servers[subscriber_of(sl->key) % nservers], // a subscriber keeps its server
          .msg_namelen = sizeof(struct sockaddr_in),
          .msg_iov = &iov[i],
          .msg_iovlen = 1};
      if (nbinds > 1) {
        struct in_pktinfo pi = {.ipi_spec_dst = binds[subscriber_of(sl->key) % nbinds].sin_addr};
        msgs[i].msg_hdr.msg_control = control[i];
        msgs[i].msg_hdr.msg_controllen = sizeof control[i];
        struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[i].msg_hdr);
        c->cmsg_level = IPPROTO_IP;
        c->cmsg_type = IP_PKTINFO;
        c->cmsg_len = CMSG_LEN(sizeof pi);
        memcpy(CMSG_DATA(c), &pi, sizeof pi);
      }
    }
    int r = sendmmsg(sock, msgs, n, 0);
    if (r < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) return;
      if (errno == ECONNREFUSED) continue; // an earlier datagram met a closed port (ping)
      die("sendmmsg");
    }
    uint64_t t = now_ns();
    for (int i = 0; i < r; i++) {
      Slot *sl = &slots[send_queue[sq_head]];
      sl->sent_ns = t;
      sl->tries++;
      sq_head = (sq_head + 1) % window;
      sq_len--;
    }
    sent += (uint64_t)r;
    if ((uint32_t)r < n) return;
  }
}

/** Reads every waiting answer (recvmmsg, BATCH at a time); returns how many were valid. */
static uint64_t drain_answers(void) {
  static uint8_t bufs[BATCH][256];
  static struct iovec iov[BATCH];
  static struct mmsghdr msgs[BATCH];
  uint64_t valid = 0;
  for (;;) {
    for (int i = 0; i < BATCH; i++) {
      iov[i] = (struct iovec){bufs[i], sizeof bufs[i]};
      msgs[i].msg_hdr = (struct msghdr){.msg_iov = &iov[i], .msg_iovlen = 1};
    }
    int r = recvmmsg(sock, msgs, BATCH, 0, NULL);
    if (r < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return valid;
      if (errno == ECONNREFUSED) continue; // ICMP port unreachable (server not up yet)
      die("recvmmsg");
    }
    uint64_t t = now_ns();
    for (int i = 0; i < r; i++) {
      received++;
      ssize_t n = (ssize_t)msgs[i].msg_len;
      int64_t key = key_of(bufs[i], n);
      int32_t slot = key < 0 ? -1 : table_find((uint64_t)key);
      if (slot < 0 || slots[slot].sent_ns == 0) {
        stray++; // unknown key, or a late answer to a request already given up / resent
        continue;
      }
      if (answer_ok((uint64_t)key, bufs[i], n)) {
        ok++;
        if (mode == MODE_CHURN) dead[key >> 3] ^= (uint8_t)(1u << (key & 7));
        valid++;
        record_latency(t - slots[slot].sent_ns);
      } else {
        bad++;
        if (bad <= 5) fprintf(stderr, "loadgen: bad answer for key %" PRId64 " (len %zd, result %d)\n", key, n, n > 3 ? bufs[i][3] : -1);
      }
      finish_slot((uint32_t)slot);
    }
    if (r < BATCH) return valid;
  }
}

/**
 * Requests outstanding longer than the timeout: resent (populate, ping) until `max_tries`,
 * or counted as lost and given up (run, echo). Returns -1 if a key ran out of tries.
 */
static int check_timeouts(uint64_t t, int resend) {
  uint64_t limit = (uint64_t)(timeout_ms * 1e6);
  for (uint32_t i = 0; i < window; i++) {
    Slot *sl = &slots[i];
    if (!sl->busy || sl->sent_ns == 0 || t - sl->sent_ns < limit) continue;
    if (!resend) {
      lost++;
      finish_slot(i);
    } else if (sl->tries >= max_tries) {
      fprintf(stderr, "loadgen: key %" PRIu64 " unanswered after %d tries\n", sl->key, sl->tries);
      return -1;
    } else {
      retransmits++;
      queue_send(i);
    }
  }
  return 0;
}

static uint64_t gcd(uint64_t a, uint64_t b) {
  while (b) {
    uint64_t t = a % b;
    a = b;
    b = t;
  }
  return a;
}

int main(int argc, char **argv) {
  if (argc < 2) usage();
  if (!strcmp(argv[1], "populate")) mode = MODE_POPULATE;
  else if (!strcmp(argv[1], "run")) mode = MODE_RUN;
  else if (!strcmp(argv[1], "echo")) mode = MODE_ECHO;
  else if (!strcmp(argv[1], "ping")) mode = MODE_PING;
  else if (!strcmp(argv[1], "churn")) mode = MODE_CHURN;
  else usage();
  int have_bind = 0;
  for (int i = 2; i + 1 < argc; i += 2) {
    const char *k = argv[i], *v = argv[i + 1];
    if (!strcmp(k, "--server")) {
      char list[1024];
      snprintf(list, sizeof list, "%s", v);
      for (char *save, *p = strtok_r(list, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        if (nservers == MAX_SERVERS) usage();
        parse_addr(p, &servers[nservers++], 1);
      }
    } else if (!strcmp(k, "--bind")) {
      char list[1024];
      snprintf(list, sizeof list, "%s", v);
      for (char *save, *p = strtok_r(list, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        if (nbinds == MAX_SERVERS) usage();
        parse_addr(p, &binds[nbinds++], 0);
      }
      bind_addr = binds[0];
      have_bind = 1;
    }
    else if (!strcmp(k, "--keys")) nkeys = strtoull(v, NULL, 10);
    else if (!strcmp(k, "--per-sub")) per_sub = strtoull(v, NULL, 10);
    else if (!strcmp(k, "--window")) window = strtoull(v, NULL, 10);
    else if (!strcmp(k, "--duration")) duration = atof(v);
    else if (!strcmp(k, "--timeout-ms")) timeout_ms = atof(v);
    else if (!strcmp(k, "--tries")) max_tries = atoi(v);
    else if (!strcmp(k, "--deadline")) deadline_s = atof(v);
    else if (!strcmp(k, "--lifetime")) lifetime = strtoull(v, NULL, 10);
    else if (!strcmp(k, "--state")) state_file = v;
    else if (!strcmp(k, "--checkpoint")) {
      checkpoint = atoi(v) != 0;
      req_size = checkpoint ? REQ_MAX : REQ_SIZE;
    }
    else usage();
  }
  if (mode == MODE_PING) { // one request at a time, resent every 100 ms until the deadline
    window = 1;
    timeout_ms = 100;
    max_tries = 1 << 30;
  }
  if (!nservers || !have_bind || nkeys == 0 || per_sub == 0 || per_sub > 64511 || window == 0 || window > MAX_WINDOW ||
      nkeys / per_sub >= (1u << 24) || (mode != MODE_POPULATE && mode != MODE_PING && window >= nkeys))
    usage();

  slots = calloc(window, sizeof *slots);
  free_slots = malloc(window * sizeof *free_slots);
  send_queue = malloc(window * sizeof *send_queue);
  uint32_t tsize = 16;
  while (tsize < 4 * window) tsize <<= 1;
  table = malloc(tsize * sizeof *table);
  table_mask = tsize - 1;
  dead = calloc(nkeys / 8 + 1, 1);
  if (!slots || !free_slots || !send_queue || !table || !dead) die("malloc");
  if (state_file) { // the bits of the previous churn run (absent: every key live, as after populate)
    FILE *f = fopen(state_file, "rb");
    if (f) {
      if (fread(dead, 1, nkeys / 8 + 1, f) != nkeys / 8 + 1) memset(dead, 0, nkeys / 8 + 1);
      fclose(f);
    }
  }
  memset(table, 0xff, tsize * sizeof *table);
  for (uint32_t i = 0; i < window; i++) free_slots[nfree++] = window - 1 - i;
  open_socket();

  // Key order: populate and ping walk 0..N-1; run and echo a multiplicative stride
  // coprime with N (a permutation of [0, N), far apart in the server's tables).
  uint64_t stride = 1;
  if (mode == MODE_RUN || mode == MODE_ECHO || mode == MODE_CHURN) {
    stride = 2654435761u % nkeys;
    if (stride == 0) stride = 1;
    while (gcd(stride, nkeys) != 1) stride++;
  }
  uint64_t next = 0, issued = 0;
  uint64_t start = now_ns(), last_scan = start, last_progress = start;
  uint64_t hard_end = start + (uint64_t)(deadline_s * 1e9);
  uint64_t run_end = start + (uint64_t)(duration * 1e9);
  int endless = mode == MODE_RUN || mode == MODE_ECHO || mode == MODE_CHURN; // keys keep cycling until run_end
  int failed = 0;

  for (;;) {
    uint64_t t = now_ns();
    if (endless ? t >= run_end : ok >= (mode == MODE_PING ? 1 : nkeys)) break;
    if (t >= hard_end) {
      fprintf(stderr, "loadgen: deadline of %.0f s passed\n", deadline_s);
      failed = 1;
      break;
    }
    // Keep the window full.
    while (nfree > 0 && (endless || issued < nkeys)) {
      if (mode == MODE_PING) {
        start_key(0);
      } else {
        uint64_t key = next;
        next += stride;
        if (next >= nkeys) next -= nkeys;
        issued++;
        start_key(key);
      }
    }
    flush_sends();
    struct pollfd p = {.fd = sock, .events = POLLIN | (sq_len ? POLLOUT : 0)};
    int r = poll(&p, 1, 5);
    if (r < 0 && errno != EINTR) die("poll");
    if (r > 0 && (p.revents & POLLIN)) drain_answers();
    if (bad > 0 && !endless) { // populate and ping must not go on after a refused request
      failed = 1;
      break;
    }
    t = now_ns();
    if (t - last_scan >= 5000000) { // every 5 ms
      last_scan = t;
      if (check_timeouts(t, !endless) < 0) {
        failed = 1;
        break;
      }
    }
    if (mode == MODE_POPULATE && t - last_progress >= 10000000000ull) {
      last_progress = t;
      fprintf(stderr, "loadgen: populate %" PRIu64 "/%" PRIu64 " (%.0f/s)\n", ok, nkeys, ok / ((t - start) / 1e9));
    }
  }
  double elapsed = (now_ns() - start) / 1e9;
  if (state_file && mode == MODE_CHURN) {
    FILE *f = fopen(state_file, "wb");
    if (!f || fwrite(dead, 1, nkeys / 8 + 1, f) != nkeys / 8 + 1 || fclose(f) != 0) die("state file");
  }
  // Answers to what is still outstanding at the end are neither ok nor lost: count them
  // as unfinished, so sent = ok + bad + lost + unfinished + retransmits (+ answers to
  // requests given up that arrive late, which count as stray).
  uint64_t unfinished = (uint64_t)(window - nfree);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
  static const char *names[] = {"populate", "run", "echo", "ping", "churn"};
  printf("{\"mode\":\"%s\",\"keys\":%" PRIu64 ",\"perSubscriber\":%" PRIu64 ",\"window\":%" PRIu64 ",\"seconds\":%.3f,"
         "\"sent\":%" PRIu64 ",\"received\":%" PRIu64 ",\"ok\":%" PRIu64 ",\"bad\":%" PRIu64 ",\"lost\":%" PRIu64
         ",\"stray\":%" PRIu64 ",\"retransmits\":%" PRIu64 ",\"unfinished\":%" PRIu64 ",\"okPerSecond\":%.0f,"
         "\"p50us\":%.0f,\"p99us\":%.0f,\"p999us\":%.0f,\"maxUs\":%.0f,\"cpuSeconds\":%.3f,\"failed\":%s}\n",
         names[mode], nkeys, per_sub, window, elapsed, sent, received, ok, bad, lost, stray, retransmits, unfinished,
         ok / elapsed, percentile(0.5), percentile(0.99), percentile(0.999), percentile(1.0), cpu,
         failed ? "true" : "false");
  return failed || bad ? 1 : 0;
}
