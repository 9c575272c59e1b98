// Chosen elements of an nftables set, read over netlink (NFT_MSG_GETSETELEM) one request per
// element, so an element that is missing answers ENOENT for itself only. For the activity
// set of traffic-driven lifetimes (src/dataplane/nftables.ts): `nft get element` stops at the
// first element missing, and listing the whole set costs nft about 40 µs per element.
//
// nftElements(family, table, set, keys, keyLength) → Float64Array: for each key (`keys`:
// keyLength bytes each, back to back, in the set's register layout: every field of a
// concatenation padded to 4 bytes) the element's time left in ms (its expiration; 0 when it
// has none), or -1 when the set holds no such element. Throws, with the errno, when the set
// itself cannot be read (no such table or set, no CAP_NET_ADMIN) or the kernel does not
// answer within 2 s. Runs in the calling process's network namespace.
#include "udp_batch.h"

#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <sys/time.h>

#define ALIGN4(n) (((n) + 3u) & ~3u)
// Requests per sendmsg. The kernel answers them all within that call, so every answer of a
// group (a few hundred bytes of buffer each) must fit the receive buffer at once; they are
// read before the next group goes out.
#define GROUP 128
#define NAME_MAX_LEN 256
#define KEY_MAX_LEN 64

typedef struct {
  uint8_t *buf;
  size_t len;
} Out;

static struct nlattr *attr(Out *o, uint16_t type, const void *data, size_t len) {
  struct nlattr *a = (struct nlattr *)(o->buf + o->len);
  a->nla_type = type;
  a->nla_len = (uint16_t)(NLA_HDRLEN + len);
  if (len) memcpy(o->buf + o->len + NLA_HDRLEN, data, len);
  memset(o->buf + o->len + NLA_HDRLEN + len, 0, ALIGN4(len) - len);
  o->len += NLA_HDRLEN + ALIGN4(len);
  return a;
}

static void end_nest(Out *o, struct nlattr *a) {
  a->nla_len = (uint16_t)(o->buf + o->len - (uint8_t *)a);
}

// One request: nlmsghdr, nfgenmsg, the table and set names, and (key != NULL) one element.
static void request(Out *o, uint16_t type, uint8_t family, uint32_t seq, const char *table, const char *set, const uint8_t *key, size_t key_len) {
  struct nlmsghdr *h = (struct nlmsghdr *)(o->buf + o->len);
  size_t start = o->len;
  h->nlmsg_type = (uint16_t)((NFNL_SUBSYS_NFTABLES << 8) | type);
  h->nlmsg_flags = NLM_F_REQUEST;
  h->nlmsg_seq = seq;
  h->nlmsg_pid = 0;
  o->len += NLMSG_HDRLEN;
  struct nfgenmsg *g = (struct nfgenmsg *)(o->buf + o->len);
  g->nfgen_family = family;
  g->version = NFNETLINK_V0;
  g->res_id = 0;
  o->len += NLMSG_ALIGN(sizeof *g);
  if (key == NULL) {
    attr(o, NFTA_SET_TABLE, table, strlen(table) + 1);
    attr(o, NFTA_SET_NAME, set, strlen(set) + 1);
  } else {
    attr(o, NFTA_SET_ELEM_LIST_TABLE, table, strlen(table) + 1);
    attr(o, NFTA_SET_ELEM_LIST_SET, set, strlen(set) + 1);
    struct nlattr *elements = attr(o, NLA_F_NESTED | NFTA_SET_ELEM_LIST_ELEMENTS, NULL, 0);
    struct nlattr *elem = attr(o, NLA_F_NESTED | NFTA_LIST_ELEM, NULL, 0);
    struct nlattr *k = attr(o, NLA_F_NESTED | NFTA_SET_ELEM_KEY, NULL, 0);
    attr(o, NFTA_DATA_VALUE, key, key_len);
    end_nest(o, k);
    end_nest(o, elem);
    end_nest(o, elements);
  }
  h->nlmsg_len = (uint32_t)(o->len - start);
}

// The first attribute of `type` in [at, at + len), or NULL.
static const struct nlattr *find(const uint8_t *at, size_t len, uint16_t type) {
  while (len >= NLA_HDRLEN) {
    const struct nlattr *a = (const struct nlattr *)at;
    if (a->nla_len < NLA_HDRLEN || a->nla_len > len) return NULL;
    if ((a->nla_type & NLA_TYPE_MASK) == type) return a;
    size_t step = ALIGN4(a->nla_len);
    if (step >= len) return NULL;
    at += step;
    len -= step;
  }
  return NULL;
}

#define PAYLOAD(a) ((const uint8_t *)(a) + NLA_HDRLEN)
#define PAYLOAD_LEN(a) ((size_t)(a)->nla_len - NLA_HDRLEN)

// An element's answer (NFT_MSG_NEWSETELEM): its expiration in ms, 0 without one.
static double expiration(const struct nlmsghdr *h) {
  const uint8_t *at = (const uint8_t *)NLMSG_DATA(h) + NLMSG_ALIGN(sizeof(struct nfgenmsg));
  size_t len = h->nlmsg_len - NLMSG_HDRLEN - NLMSG_ALIGN(sizeof(struct nfgenmsg));
  const struct nlattr *elements = find(at, len, NFTA_SET_ELEM_LIST_ELEMENTS);
  const struct nlattr *elem = elements ? find(PAYLOAD(elements), PAYLOAD_LEN(elements), NFTA_LIST_ELEM) : NULL;
  const struct nlattr *exp = elem ? find(PAYLOAD(elem), PAYLOAD_LEN(elem), NFTA_SET_ELEM_EXPIRATION) : NULL;
  if (!exp || PAYLOAD_LEN(exp) < 8) return 0;
  uint64_t be;
  memcpy(&be, PAYLOAD(exp), 8);
  return (double)be64toh(be);
}

// Sends `o` and reads one answer per request, seq first .. first + count - 1: out[i] gets -1
// for ENOENT, else the element's expiration in ms (`elements`) or 0. Returns 0, or the errno
// of the socket or of an answer that is neither a success nor ENOENT.
static int exchange(int fd, Out *o, uint32_t first, uint32_t count, double *out, int elements, uint8_t *rx, size_t rx_size) {
  struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  if (sendto(fd, o->buf, o->len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) return errno;
  uint32_t answered = 0;
  while (answered < count) {
    ssize_t n = recv(fd, rx, rx_size, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno == EAGAIN || errno == EWOULDBLOCK ? ETIMEDOUT : errno;
    }
    size_t left = (size_t)n;
    for (struct nlmsghdr *h = (struct nlmsghdr *)rx; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_seq < first || h->nlmsg_seq >= first + count) continue; // not ours (a late answer)
      uint32_t i = h->nlmsg_seq - first;
      if (h->nlmsg_type == NLMSG_ERROR) {
        const struct nlmsgerr *e = (const struct nlmsgerr *)NLMSG_DATA(h);
        if (e->error == 0) continue; // an acknowledgement (none asked)
        if (-e->error != ENOENT) return -e->error;
        out[i] = -1;
      } else {
        out[i] = elements ? expiration(h) : 0;
      }
      answered++;
    }
  }
  return 0;
}

static int string_arg(napi_env env, napi_value v, char *buf, size_t size) {
  size_t len = 0;
  return napi_get_value_string_utf8(env, v, buf, size, &len) == napi_ok && len > 0 && len < size - 1;
}

napi_value nft_elements(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  if (!args(env, info, 5, argv)) return NULL;
  char table[NAME_MAX_LEN], set[NAME_MAX_LEN];
  double family = num(env, argv[0]);
  double key_len_d = num(env, argv[4]);
  void *keys = NULL;
  size_t keys_len = 0;
  napi_typedarray_type type;
  napi_value ab;
  size_t offset;
  if ((family != NFPROTO_IPV4 && family != NFPROTO_IPV6 && family != NFPROTO_INET) || !string_arg(env, argv[1], table, sizeof table) ||
      !string_arg(env, argv[2], set, sizeof set) || napi_get_typedarray_info(env, argv[3], &type, &keys_len, &keys, &ab, &offset) != napi_ok ||
      type != napi_uint8_array || key_len_d < 1 || key_len_d > KEY_MAX_LEN || keys_len % (size_t)key_len_d != 0) {
    napi_throw_type_error(env, NULL, "nftElements(family, table, set, keys: Uint8Array, keyLength): bad arguments");
    return NULL;
  }
  size_t key_len = (size_t)key_len_d;
  uint32_t count = (uint32_t)(keys_len / key_len);

  napi_value result_ab, result;
  double *out = NULL;
  CHECK(napi_create_arraybuffer(env, (size_t)count * sizeof(double), (void **)&out, &result_ab));
  CHECK(napi_create_typedarray(env, napi_float64_array, count, result_ab, 0, &result));

  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
  if (fd < 0) return throw_errno(env, "nftElements: netlink socket", errno);
  struct timeval timeout = {.tv_sec = 2};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  int rcvbuf = 1 << 20; // beyond net.core.rmem_max with CAP_NET_ADMIN (which nftables needs anyway)
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) != 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  // Room for a group of requests, and for the answers of one recv (elements are small).
  size_t request_room = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(struct nfgenmsg)) + 2 * (NLA_HDRLEN + ALIGN4(NAME_MAX_LEN)) + 4 * NLA_HDRLEN + ALIGN4(KEY_MAX_LEN);
  size_t rx_size = 64 * 1024;
  Out o = {.buf = malloc(GROUP * request_room), .len = 0};
  uint8_t *rx = malloc(rx_size);
  int err = o.buf && rx ? 0 : ENOMEM;
  uint32_t seq = (uint32_t)time(NULL);
  if (!err) {
    // The set itself first: without it every element would answer ENOENT, read as "idle".
    double found = 0;
    request(&o, NFT_MSG_GETSET, (uint8_t)family, seq, table, set, NULL, 0);
    err = exchange(fd, &o, seq, 1, &found, 0, rx, rx_size);
    if (err == 0 && found < 0) err = ENOENT;
    seq++;
  }
  for (uint32_t at = 0; !err && at < count; at += GROUP) {
    uint32_t n = count - at < GROUP ? count - at : GROUP;
    o.len = 0;
    for (uint32_t i = 0; i < n; i++) request(&o, NFT_MSG_GETSETELEM, (uint8_t)family, seq + i, table, set, (const uint8_t *)keys + (size_t)(at + i) * key_len, key_len);
    err = exchange(fd, &o, seq, n, out + at, 1, rx, rx_size);
    seq += n;
  }
  free(o.buf);
  free(rx);
  close(fd);
  if (err) return throw_errno(env, err == ENOENT ? "nftElements: no such table or set" : "nftElements", err);
  return result;
}
