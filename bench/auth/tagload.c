// Load generator for bench/auth.bench.ts: MAP refreshes [RFC 6887 §11.1] from several
// client sockets at once, each optionally inside a PCP security association [RFC 7652],
// signing every request with a fresh AUTHENTICATION_TAG and checking every reply's.
// Built with gcc -O2 against OpenSSL's libcrypto (SHA-256 only; scripts/bench-deps.sh
// installs libssl-dev), so that signing costs the generator a fraction of what verifying
// costs the Node server it drives: the server, not the generator, is the bottleneck.
//
// One client per `--client` argument: BIND[,SESSION_ID,KEY_ID,KEY_HEX[,FIRST_SEQUENCE]].
// A client owns the mappings of internal ports 1024 .. 1024+K-1 on its own address (the
// PCP Client's IP Address is the socket's: the codec checks it against the source), each
// with a fixed nonce derived from (client, port), so a refresh passes the strict nonce
// check. With a session every request carries AUTHENTICATION_TAG (Session ID, the next
// sequence number of the session, Key ID, HMAC-SHA-256-128 over the message with the MAC
// field zero [7652 §6.1]). Sequence numbers rise by one per request sent, in the order the
// requests leave the client's one socket; loopback keeps that order, and the server accepts
// any number not below the last it accepted [7652 §6.5], so W requests may be in flight.
// A reply of a session must carry the session's tag with a valid MAC and a sequence number
// not below the last reply's (counted as bad otherwise).
//
// Modes (one JSON line on stdout at the end):
//   populate  every key of every client once, resent after the timeout (up to --tries),
//             until each got SUCCESS; untagged (the bench populates from sources where
//             authentication is optional or off);
//   run       for --duration seconds keep --window requests outstanding per client over
//             its keys in turn; an answer not back within the timeout counts as lost.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <openssl/sha.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "../e2e/latency.h"

enum { MAP_SIZE = 60, TAG_OPT = 32, REQ_MAX = 96, BATCH = 64, MAX_CLIENTS = 64, MAC_SIZE = 16 };
enum { OPTION_AUTHENTICATION_TAG = 5 };

static uint64_t keys = 1000, window = 64, lifetime = 3600;
static double duration = 5, timeout_ms = 1000, deadline_s = 120;
static int max_tries = 20, populate;
static struct sockaddr_in server;

typedef struct {
  SHA256_CTX inner, outer; // HMAC key schedule: SHA-256 after ipad / opad [RFC 2104]
} Hmac;

typedef struct {
  int fd;
  struct sockaddr_in bind;
  int tagged;
  uint32_t session, key_id, seq_out, seq_in;
  Hmac hmac;
  uint64_t *sent_ns; // per key: when its outstanding request left (0: none)
  uint8_t *done;     // populate: key answered SUCCESS
  int *tries;
  uint64_t next, outstanding, remaining;
} Client;

static Client clients[MAX_CLIENTS];
static int nclients;
static uint64_t sent, received, ok, bad, bad_tag, lost, stray, retransmits;

static uint64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void die(const char *what) {
  fprintf(stderr, "tagload: %s: %s\n", what, strerror(errno));
  exit(2);
}

static void usage(void) {
  fprintf(stderr, "usage: tagload populate|run --server A:P --client BIND[,SESSION,KEYID,KEYHEX[,SEQ]] ... [--keys K] [--window W]\n"
                  "               [--duration S] [--timeout-ms T] [--tries N] [--deadline S] [--lifetime L]\n");
  exit(2);
}

static void put32(uint8_t *p, uint32_t v) { v = htonl(v); memcpy(p, &v, 4); }
static void put16(uint8_t *p, uint16_t v) { v = htons(v); memcpy(p, &v, 2); }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return ntohl(v); }
static uint16_t get16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return ntohs(v); }

static void hmac_init(Hmac *h, const uint8_t *key, size_t n) {
  uint8_t k[64] = {0}, pad[64];
  if (n > 64) SHA256(key, n, k); // longer keys are hashed first [RFC 2104 §2]
  else memcpy(k, key, n);
  for (int i = 0; i < 64; i++) pad[i] = k[i] ^ 0x36;
  SHA256_Init(&h->inner);
  SHA256_Update(&h->inner, pad, 64);
  for (int i = 0; i < 64; i++) pad[i] = k[i] ^ 0x5c;
  SHA256_Init(&h->outer);
  SHA256_Update(&h->outer, pad, 64);
}

/** HMAC-SHA-256 of `msg`, truncated to 128 bits [RFC 4868 §2.3]. */
static void hmac_128(const Hmac *h, const uint8_t *msg, size_t n, uint8_t out[MAC_SIZE]) {
  SHA256_CTX c = h->inner;
  uint8_t d[SHA256_DIGEST_LENGTH];
  SHA256_Update(&c, msg, n);
  SHA256_Final(d, &c);
  c = h->outer;
  SHA256_Update(&c, d, sizeof d);
  SHA256_Final(d, &c);
  memcpy(out, d, MAC_SIZE);
}

static void nonce_of(int client, uint64_t key, uint8_t out[12]) {
  uint64_t a = 0x5851f42d4c957f2dull * (key + 1) ^ ((uint64_t)client << 48);
  uint32_t b = (uint32_t)key ^ 0xa5a5a5a5u ^ (uint32_t)client;
  memcpy(out, &a, 8);
  memcpy(out + 8, &b, 4);
}

/** The MAP request of `key`; signed with the client's next sequence number if it has a session. */
static size_t build_request(int ci, uint64_t key, uint8_t *b, int tagged) {
  Client *c = &clients[ci];
  memset(b, 0, REQ_MAX);
  b[0] = 2;                    // version
  b[1] = 1;                    // MAP request
  put32(b + 4, (uint32_t)lifetime);
  b[18] = b[19] = 0xff;        // client address ::ffff:a.b.c.d = our source
  memcpy(b + 20, &c->bind.sin_addr.s_addr, 4);
  nonce_of(ci, key, b + 24);
  b[36] = 6;                   // TCP
  put16(b + 40, (uint16_t)(1024 + key));
  b[54] = b[55] = 0xff;        // suggested external address ::ffff:0.0.0.0
  if (!tagged) return MAP_SIZE;
  b[60] = OPTION_AUTHENTICATION_TAG;
  put16(b + 62, TAG_OPT - 4);
  put32(b + 64, c->session);
  put32(b + 68, c->seq_out++);
  put32(b + 72, c->key_id);
  hmac_128(&c->hmac, b, MAP_SIZE + TAG_OPT, b + 76); // MAC field zero while computing
  return MAP_SIZE + TAG_OPT;
}

/** A SUCCESS answer to `key`'s request; for a session, tagged by it (MAC checked). */
static int answer_ok(int ci, uint64_t key, uint8_t *b, ssize_t n) {
  Client *c = &clients[ci];
  uint8_t nonce[12];
  nonce_of(ci, key, nonce);
  if (n < MAP_SIZE || b[0] != 2 || b[1] != (0x80 | 1) || b[3] != 0 || get32(b + 4) == 0 || memcmp(b + 24, nonce, 12) != 0 ||
      b[36] != 6 || get16(b + 42) == 0)
    return 0;
  if (!c->tagged || populate) return n == MAP_SIZE;
  // The reply's options: exactly one AUTHENTICATION_TAG of our session [7652 §6.1].
  if (n != MAP_SIZE + TAG_OPT || b[60] != OPTION_AUTHENTICATION_TAG || get16(b + 62) != TAG_OPT - 4 || get32(b + 64) != c->session ||
      get32(b + 72) != c->key_id || get32(b + 68) < c->seq_in) {
    bad_tag++;
    return 0;
  }
  uint8_t got[MAC_SIZE], want[MAC_SIZE];
  memcpy(got, b + 76, MAC_SIZE);
  memset(b + 76, 0, MAC_SIZE);
  hmac_128(&c->hmac, b, (size_t)n, want);
  if (memcmp(got, want, MAC_SIZE) != 0) {
    bad_tag++;
    return 0;
  }
  c->seq_in = get32(b + 68);
  return 1;
}


static void parse_client(char *spec) {
  if (nclients == MAX_CLIENTS) usage();
  Client *c = &clients[nclients++];
  char *save, *addr = strtok_r(spec, ",", &save), *sid = strtok_r(NULL, ",", &save);
  c->bind.sin_family = AF_INET;
  if (!addr || inet_pton(AF_INET, addr, &c->bind.sin_addr) != 1) usage();
  if (!sid) return;
  char *kid = strtok_r(NULL, ",", &save), *hex = strtok_r(NULL, ",", &save), *seq = strtok_r(NULL, ",", &save);
  if (!kid || !hex || strlen(hex) % 2 || strlen(hex) > 128) usage();
  uint8_t key[64];
  size_t n = strlen(hex) / 2;
  for (size_t i = 0; i < n; i++) {
    unsigned v;
    if (sscanf(hex + 2 * i, "%2x", &v) != 1) usage();
    key[i] = (uint8_t)v;
  }
  c->tagged = 1;
  c->session = (uint32_t)strtoul(sid, NULL, 10);
  c->key_id = (uint32_t)strtoul(kid, NULL, 10);
  c->seq_out = seq ? (uint32_t)strtoul(seq, NULL, 10) : 0;
  hmac_init(&c->hmac, key, n);
}

static void send_some(int ci) {
  Client *c = &clients[ci];
  static uint8_t bufs[BATCH][REQ_MAX];
  static struct iovec iov[BATCH];
  static struct mmsghdr msgs[BATCH];
  static uint64_t batch_keys[BATCH];
  for (;;) {
    int n = 0;
    while (n < BATCH && c->outstanding + (uint64_t)n < window && (!populate || c->remaining > 0)) {
      // The next key not outstanding (populate: not yet answered either).
      uint64_t k = c->next, tried = 0;
      while ((c->sent_ns[k] != 0 || (populate && c->done[k])) && tried++ < keys) k = (k + 1) % keys;
      if (tried > keys) break;
      c->next = (k + 1) % keys;
      c->sent_ns[k] = 1; // reserved until sent
      batch_keys[n] = k;
      size_t len = build_request(ci, k, bufs[n], c->tagged && !populate);
      iov[n] = (struct iovec){bufs[n], len};
      msgs[n].msg_hdr = (struct msghdr){.msg_name = &server, .msg_namelen = sizeof server, .msg_iov = &iov[n], .msg_iovlen = 1};
      n++;
      if (populate && c->remaining <= c->outstanding + (uint64_t)n) break;
    }
    if (n == 0) return;
    int r = sendmmsg(c->fd, msgs, (unsigned)n, 0);
    if (r < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS && errno != ECONNREFUSED) die("sendmmsg");
      r = 0;
    }
    uint64_t t = now_ns();
    for (int i = 0; i < n; i++) {
      uint64_t k = batch_keys[i];
      if (i >= r) {
        c->sent_ns[k] = 0; // not sent: its sequence number is skipped, which the server allows
        continue;
      }
      c->sent_ns[k] = t;
      c->tries[k]++;
      c->outstanding++;
      sent++;
    }
    if (r < n) return;
  }
}

static void drain(int ci) {
  Client *c = &clients[ci];
  static uint8_t bufs[BATCH][256];
  static struct iovec iov[BATCH];
  static struct mmsghdr msgs[BATCH];
  for (;;) {
    for (int i = 0; i < BATCH; i++) {
      iov[i] = (struct iovec){bufs[i], sizeof bufs[i]};
      msgs[i].msg_hdr = (struct msghdr){.msg_iov = &iov[i], .msg_iovlen = 1};
    }
    int r = recvmmsg(c->fd, msgs, BATCH, 0, NULL);
    if (r < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == ECONNREFUSED) continue;
      die("recvmmsg");
    }
    uint64_t t = now_ns();
    for (int i = 0; i < r; i++) {
      received++;
      ssize_t n = (ssize_t)msgs[i].msg_len;
      uint16_t port = n >= MAP_SIZE ? get16(bufs[i] + 40) : 0;
      uint64_t k = port >= 1024 ? (uint64_t)(port - 1024) : keys;
      if (k >= keys || c->sent_ns[k] <= 1) {
        stray++; // unknown, or answered / given up already
        continue;
      }
      if (answer_ok(ci, k, bufs[i], n)) {
        ok++;
        record_latency(t - c->sent_ns[k]);
        if (populate && !c->done[k]) {
          c->done[k] = 1;
          c->remaining--;
        }
      } else if (++bad <= 5)
        fprintf(stderr, "tagload: bad answer client %d key %" PRIu64 " (len %zd, result %d)\n", ci, k, n, n > 3 ? bufs[i][3] : -1);
      c->sent_ns[k] = 0;
      c->outstanding--;
    }
    if (r < BATCH) return;
  }
}

/** Outstanding requests older than the timeout: lost (run) or resent (populate). -1: out of tries. */
static int expire(int ci, uint64_t t) {
  Client *c = &clients[ci];
  uint64_t limit = (uint64_t)(timeout_ms * 1e6);
  for (uint64_t k = 0; k < keys; k++) {
    uint64_t s = c->sent_ns[k];
    if (s <= 1 || t - s < limit) continue;
    c->sent_ns[k] = 0; // a late answer counts as stray
    c->outstanding--;
    if (!populate) lost++;
    else if (c->tries[k] >= max_tries) {
      fprintf(stderr, "tagload: client %d key %" PRIu64 " unanswered after %d tries\n", ci, k, c->tries[k]);
      return -1;
    } else retransmits++;
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) usage();
  if (!strcmp(argv[1], "populate")) populate = 1;
  else if (strcmp(argv[1], "run")) usage();
  int have_server = 0;
  for (int i = 2; i + 1 < argc; i += 2) {
    const char *k = argv[i];
    char *v = argv[i + 1];
    if (!strcmp(k, "--server")) {
      char *colon = strchr(v, ':');
      if (!colon) usage();
      *colon = 0;
      server.sin_family = AF_INET;
      if (inet_pton(AF_INET, v, &server.sin_addr) != 1) usage();
      server.sin_port = htons((uint16_t)atoi(colon + 1));
      have_server = 1;
    } else if (!strcmp(k, "--client")) parse_client(v);
    else if (!strcmp(k, "--keys")) keys = strtoull(v, NULL, 10);
    else if (!strcmp(k, "--window")) window = strtoull(v, NULL, 10);
    else if (!strcmp(k, "--duration")) duration = atof(v);
    else if (!strcmp(k, "--timeout-ms")) timeout_ms = atof(v);
    else if (!strcmp(k, "--tries")) max_tries = atoi(v);
    else if (!strcmp(k, "--deadline")) deadline_s = atof(v);
    else if (!strcmp(k, "--lifetime")) lifetime = strtoull(v, NULL, 10);
    else usage();
  }
  if (!have_server || nclients == 0 || keys == 0 || keys > 64511 || window == 0 || window >= keys) usage();
  struct pollfd pfd[MAX_CLIENTS];
  for (int i = 0; i < nclients; i++) {
    Client *c = &clients[i];
    c->sent_ns = calloc(keys, sizeof *c->sent_ns);
    c->done = calloc(keys, 1);
    c->tries = calloc(keys, sizeof *c->tries);
    if (!c->sent_ns || !c->done || !c->tries) die("calloc");
    c->remaining = keys;
    c->next = (uint64_t)i * 7919 % keys; // clients start at different keys
    c->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) die("socket");
    int big = 4 << 20;
    setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    if (bind(c->fd, (struct sockaddr *)&c->bind, sizeof c->bind) < 0) die("bind");
    pfd[i] = (struct pollfd){.fd = c->fd, .events = POLLIN};
  }
  uint64_t start = now_ns(), last_scan = start;
  uint64_t end = start + (uint64_t)((populate ? deadline_s : duration) * 1e9);
  int failed = 0;
  for (;;) {
    uint64_t t = now_ns();
    if (t >= end) {
      if (populate) {
        fprintf(stderr, "tagload: populate deadline of %.0f s passed\n", deadline_s);
        failed = 1;
      }
      break;
    }
    if (populate) {
      uint64_t left = 0;
      for (int i = 0; i < nclients; i++) left += clients[i].remaining;
      if (left == 0) break;
    }
    for (int i = 0; i < nclients; i++) send_some(i);
    int r = poll(pfd, (nfds_t)nclients, 2);
    if (r < 0 && errno != EINTR) die("poll");
    for (int i = 0; r > 0 && i < nclients; i++)
      if (pfd[i].revents & POLLIN) drain(i);
    t = now_ns();
    if (t - last_scan >= 20000000) { // every 20 ms
      last_scan = t;
      for (int i = 0; i < nclients; i++)
        if (expire(i, t) < 0) failed = 1;
      if (failed) break;
    }
    if (populate && bad > 0) {
      failed = 1;
      break;
    }
  }
  double elapsed = (now_ns() - start) / 1e9;
  uint64_t unfinished = 0;
  for (int i = 0; i < nclients; i++) unfinished += clients[i].outstanding;
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
  printf("{\"mode\":\"%s\",\"clients\":%d,\"keys\":%" PRIu64 ",\"window\":%" PRIu64 ",\"seconds\":%.3f,\"sent\":%" PRIu64
         ",\"received\":%" PRIu64 ",\"ok\":%" PRIu64 ",\"bad\":%" PRIu64 ",\"badTag\":%" PRIu64 ",\"lost\":%" PRIu64 ",\"stray\":%" PRIu64
         ",\"retransmits\":%" PRIu64 ",\"unfinished\":%" PRIu64 ",\"okPerSecond\":%.0f,\"p50us\":%.0f,\"p99us\":%.0f,\"cpuSeconds\":%.3f,"
         "\"nextSequence\":[",
         populate ? "populate" : "run", nclients, keys, window, elapsed, sent, received, ok, bad, bad_tag, lost, stray, retransmits,
         unfinished, ok / elapsed, percentile(0.5), percentile(0.99), cpu);
  for (int i = 0; i < nclients; i++) printf("%s%" PRIu32, i ? "," : "", clients[i].seq_out);
  printf("],\"failed\":%s}\n", failed ? "true" : "false");
  return failed || bad ? 1 : 0;
}
