// Batched UDP for the packet engine (docs/io.md): recvmmsg straight into the engine's batch
// slots (the WebAssembly memory) and sendmmsg of the replies from them — one system call per
// batch each way, no per-datagram JS callback, object or copy. Readiness comes from the
// calling thread's libuv loop (a uv_poll handle: one JS callback per readable event, never a
// busy loop). IP_PKTINFO / IPV6_RECVPKTINFO record the address each request was sent to, and
// each reply leaves from it, also on a wildcard or anycast socket (RFC 6887 §14.1.3, RFC 7723).
// SO_REUSEPORT plus a classic BPF program on the group steers a source address always to the
// same socket (one per worker). Errors are counted per socket, never thrown per packet.
//
// The slot layout (offsets of the fields this file reads and writes) comes from JS once
// (layout()): the wire constants live in assembly/abi.ts and its generated mirror only.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <net/if.h>
#include <netinet/in.h>
#include <node_api.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#define MAX_BATCH 1024
#define CMSG_ROOM (CMSG_SPACE(sizeof(struct in6_pktinfo)) + CMSG_SPACE(sizeof(struct in_pktinfo)))

// Slot layout, set by layout() from the generated wire constants.
static struct {
  uint32_t size, src, dst, port, wire_len, data, cap, verdict, resp_len, reply;
  int set;
} L;

enum { ST_RECV, ST_SENT, ST_SEND_ERR, ST_EMSGSIZE, ST_ECONNREFUSED, ST_EAGAIN, ST_RECV_ERR, ST_TRUNCATED, ST_CALLS, ST_COUNT };

typedef struct Sock {
  int fd;
  int family;
  int owned;    // close(fd) on close (an adopted descriptor belongs to the main thread)
  int wildcard; // bound to 0.0.0.0 / :: (replies then carry a pktinfo source)
  int polling;
  int closed;
  uv_poll_t poll;
  napi_env env;
  napi_ref callback;
  napi_async_context async;
  struct Sock *next; // the env's open sockets (closed by the cleanup hook)
  double stats[ST_COUNT];
  struct mmsghdr msgs[MAX_BATCH];
  struct iovec iov[MAX_BATCH];
  struct sockaddr_in6 names[MAX_BATCH];
  char cmsg[MAX_BATCH][CMSG_ROOM];
} Sock;

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char code[32], msg[256];
  snprintf(code, sizeof code, "%s", err == EADDRINUSE ? "EADDRINUSE" : err == EADDRNOTAVAIL ? "EADDRNOTAVAIL" : err == EACCES ? "EACCES" : err == EINVAL ? "EINVAL" : "ERRNO");
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_throw_error(env, code, msg);
  return NULL;
}

#define CHECK(call)                                                  \
  do {                                                               \
    if ((call) != napi_ok) {                                         \
      napi_throw_error(env, NULL, "udp_batch: N-API call failed");   \
      return NULL;                                                   \
    }                                                                \
  } while (0)

static napi_value args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) {
    napi_throw_type_error(env, NULL, "udp_batch: missing arguments");
    return NULL;
  }
  return argv[0];
}

static double num(napi_env env, napi_value v) {
  double d = 0;
  napi_get_value_double(env, v, &d);
  return d;
}

static napi_value make_num(napi_env env, double d) {
  napi_value v;
  napi_create_double(env, d, &v);
  return v;
}

static Sock *sock_of(napi_env env, napi_value v) {
  Sock *s = NULL;
  if (napi_get_value_external(env, v, (void **)&s) != napi_ok || s == NULL) {
    napi_throw_type_error(env, NULL, "udp_batch: not a socket");
    return NULL;
  }
  if (s->closed) {
    napi_throw_error(env, "ERR_SOCKET_DGRAM_NOT_RUNNING", "udp_batch: socket closed");
    return NULL;
  }
  return s;
}

// The call's arguments (at least `want`), the first being an open socket.
static Sock *sock_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  return args(env, info, want, argv) ? sock_of(env, argv[0]) : NULL;
}

// Per-env list of open sockets: a worker that ends (piscina terminate) closes its handles.
typedef struct {
  Sock *head;
} EnvData;

static EnvData *env_data(napi_env env) {
  EnvData *d = NULL;
  napi_get_instance_data(env, (void **)&d);
  return d;
}

// Parses a literal (IPv4 or IPv6, "%scope" allowed) into a sockaddr of the socket's family;
// an IPv4 literal for an IPv6 socket is refused (v6only sockets).
static int parse_addr(const char *text, int port, int family, struct sockaddr_in6 *out, socklen_t *len) {
  memset(out, 0, sizeof *out);
  if (family == AF_INET) {
    struct sockaddr_in *a = (struct sockaddr_in *)out;
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    *len = sizeof *a;
    return inet_pton(AF_INET, text, &a->sin_addr) == 1 ? 0 : -1;
  }
  char buf[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
  snprintf(buf, sizeof buf, "%s", text);
  char *pct = strchr(buf, '%');
  if (pct) {
    *pct = 0;
    out->sin6_scope_id = if_nametoindex(pct + 1);
    if (out->sin6_scope_id == 0) out->sin6_scope_id = (uint32_t)atoi(pct + 1);
  }
  out->sin6_family = AF_INET6;
  out->sin6_port = htons(port);
  *len = sizeof *out;
  return inet_pton(AF_INET6, buf, &out->sin6_addr) == 1 ? 0 : -1;
}

static void register_sock(napi_env env, Sock *s) {
  EnvData *d = env_data(env);
  s->next = d->head;
  d->head = s;
}

static napi_value wrap(napi_env env, Sock *s) {
  napi_value out;
  CHECK(napi_create_external(env, s, NULL, NULL, &out)); // freed by close() (or the env cleanup)
  register_sock(env, s);
  return out;
}

static Sock *new_sock(napi_env env, int fd, int family, int owned, int wildcard) {
  Sock *s = calloc(1, sizeof(Sock));
  if (!s) return NULL;
  s->fd = fd;
  s->family = family;
  s->owned = owned;
  s->wildcard = wildcard;
  s->env = env;
  int on = 1;
  // Where each request was sent: the reply's source (RFC 6887 §14.1.3).
  if (family == AF_INET) setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &on, sizeof on);
  else setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof on);
  return s;
}

// open(address, port, rcvbuf, reusePort) → socket. Binds a non-blocking UDP socket
// (IPv6 sockets v6-only, as the dgram path's); rcvbuf > 0 sets SO_RCVBUF first.
static napi_value open_socket(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!args(env, info, 4, argv)) return NULL;
  char text[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
  size_t n;
  CHECK(napi_get_value_string_utf8(env, argv[0], text, sizeof text, &n));
  int port = (int)num(env, argv[1]);
  int rcvbuf = (int)num(env, argv[2]);
  bool reuse = false;
  napi_get_value_bool(env, argv[3], &reuse);
  int family = strchr(text, ':') ? AF_INET6 : AF_INET;
  struct sockaddr_in6 addr;
  socklen_t len;
  if (parse_addr(text, port, family, &addr, &len) != 0) return throw_errno(env, "bad address", EINVAL);
  int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket", errno);
  int on = 1;
  if (family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
  if (reuse && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0) {
    int e = errno;
    close(fd);
    return throw_errno(env, "SO_REUSEPORT", e);
  }
  // SO_RCVBUF, not SO_RCVBUFFORCE: the operator's net.core.rmem_max is respected (and reported).
  if (rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  if (bind(fd, (struct sockaddr *)&addr, len) != 0) {
    int e = errno;
    close(fd);
    return throw_errno(env, "bind", e);
  }
  int wildcard = family == AF_INET ? ((struct sockaddr_in *)&addr)->sin_addr.s_addr == INADDR_ANY : IN6_IS_ADDR_UNSPECIFIED(&addr.sin6_addr);
  Sock *s = new_sock(env, fd, family, 1, wildcard);
  if (!s) {
    close(fd);
    return throw_errno(env, "calloc", ENOMEM);
  }
  return wrap(env, s);
}

// adopt(fd) → socket over a descriptor another thread opened and keeps (a reuseport group
// member the main thread bound in shard order): close() leaves the descriptor open.
static napi_value adopt(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!args(env, info, 1, argv)) return NULL;
  int fd = (int)num(env, argv[0]);
  struct sockaddr_in6 addr;
  socklen_t len = sizeof addr;
  if (getsockname(fd, (struct sockaddr *)&addr, &len) != 0) return throw_errno(env, "getsockname", errno);
  int family = addr.sin6_family;
  int wildcard = family == AF_INET ? ((struct sockaddr_in *)&addr)->sin_addr.s_addr == INADDR_ANY : IN6_IS_ADDR_UNSPECIFIED(&addr.sin6_addr);
  Sock *s = new_sock(env, fd, family, 0, wildcard);
  if (!s) return throw_errno(env, "calloc", ENOMEM);
  return wrap(env, s);
}

// fd(socket) → the descriptor (handed to a worker, which adopts it).
static napi_value get_fd(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  Sock *s = sock_args(env, info, 1, argv);
  return s ? make_num(env, s->fd) : NULL;
}

// local(socket) → [address, port].
static napi_value local(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  Sock *s = sock_args(env, info, 1, argv);
  if (!s) return NULL;
  struct sockaddr_in6 addr;
  socklen_t len = sizeof addr;
  if (getsockname(s->fd, (struct sockaddr *)&addr, &len) != 0) return throw_errno(env, "getsockname", errno);
  char text[INET6_ADDRSTRLEN];
  int port;
  if (addr.sin6_family == AF_INET) {
    struct sockaddr_in *a = (struct sockaddr_in *)&addr;
    inet_ntop(AF_INET, &a->sin_addr, text, sizeof text);
    port = ntohs(a->sin_port);
  } else {
    inet_ntop(AF_INET6, &addr.sin6_addr, text, sizeof text);
    port = ntohs(addr.sin6_port);
  }
  napi_value out, a, p;
  CHECK(napi_create_array_with_length(env, 2, &out));
  CHECK(napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &a));
  p = make_num(env, port);
  napi_set_element(env, out, 0, a);
  napi_set_element(env, out, 1, p);
  return out;
}

// rcvbuf(socket) → getsockopt(SO_RCVBUF) (on Linux twice the bytes kept).
static napi_value rcvbuf(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  Sock *s = sock_args(env, info, 1, argv);
  if (!s) return NULL;
  int v = 0;
  socklen_t len = sizeof v;
  getsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &v, &len);
  return make_num(env, v);
}

// steer(socket, groupSize): a classic BPF program on the socket's SO_REUSEPORT group returns
// hash(source address) mod groupSize, the index of the group member (bind order) that gets
// the datagram. The hash is steerIndex() in src/io/native.ts; keep both equal.
static napi_value steer(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  Sock *s = sock_args(env, info, 2, argv);
  if (!s) return NULL;
  uint32_t n = (uint32_t)num(env, argv[1]);
  if (n < 1) return throw_errno(env, "steer: group size", EINVAL);
  struct sock_filter v4[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SKF_NET_OFF + 12), // IPv4 source address
  };
  struct sock_filter v6[] = {
      // IPv6 source address: the xor of its four words
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SKF_NET_OFF + 8),  BPF_STMT(BPF_MISC | BPF_TAX, 0),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SKF_NET_OFF + 12), BPF_STMT(BPF_ALU | BPF_XOR | BPF_X, 0),
      BPF_STMT(BPF_MISC | BPF_TAX, 0),                      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SKF_NET_OFF + 16),
      BPF_STMT(BPF_ALU | BPF_XOR | BPF_X, 0),               BPF_STMT(BPF_MISC | BPF_TAX, 0),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SKF_NET_OFF + 20), BPF_STMT(BPF_ALU | BPF_XOR | BPF_X, 0),
  };
  struct sock_filter mix[] = {
      // A ^= A >> 16; A *= 0x45d9f3b; A ^= A >> 16; return A % n
      BPF_STMT(BPF_MISC | BPF_TAX, 0),       BPF_STMT(BPF_ALU | BPF_RSH | BPF_K, 16), BPF_STMT(BPF_ALU | BPF_XOR | BPF_X, 0),
      BPF_STMT(BPF_ALU | BPF_MUL | BPF_K, 0x45d9f3b), BPF_STMT(BPF_MISC | BPF_TAX, 0), BPF_STMT(BPF_ALU | BPF_RSH | BPF_K, 16),
      BPF_STMT(BPF_ALU | BPF_XOR | BPF_X, 0), BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, n),   BPF_STMT(BPF_RET | BPF_A, 0),
  };
  struct sock_filter prog[32];
  size_t at = 0;
  if (s->family == AF_INET) {
    memcpy(prog, v4, sizeof v4);
    at = sizeof v4 / sizeof v4[0];
  } else {
    memcpy(prog, v6, sizeof v6);
    at = sizeof v6 / sizeof v6[0];
  }
  memcpy(prog + at, mix, sizeof mix);
  at += sizeof mix / sizeof mix[0];
  struct sock_fprog fprog = {.len = (unsigned short)at, .filter = prog};
  if (setsockopt(s->fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &fprog, sizeof fprog) != 0) return throw_errno(env, "SO_ATTACH_REUSEPORT_CBPF", errno);
  return NULL;
}

// layout(slotSize, src, dst, port, wireLen, data, cap, verdict, respLen, verdictReply).
static napi_value layout(napi_env env, napi_callback_info info) {
  napi_value argv[10];
  if (!args(env, info, 10, argv)) return NULL;
  uint32_t *f[] = {&L.size, &L.src, &L.dst, &L.port, &L.wire_len, &L.data, &L.cap, &L.verdict, &L.resp_len, &L.reply};
  for (int i = 0; i < 10; i++) *f[i] = (uint32_t)num(env, argv[i]);
  L.set = 1;
  return NULL;
}

// The slot area [base, base + count × slot size) inside `buffer` (an ArrayBuffer — the
// WebAssembly memory's, taken anew on every call: growth detaches the old one — or a view).
static uint8_t *slots(napi_env env, napi_value buffer, double base, uint32_t count) {
  void *data = NULL;
  size_t length = 0;
  bool is_ab = false;
  napi_is_arraybuffer(env, buffer, &is_ab);
  if (is_ab) {
    if (napi_get_arraybuffer_info(env, buffer, &data, &length) != napi_ok) data = NULL;
  } else {
    napi_typedarray_type type;
    size_t elems, offset;
    napi_value ab;
    if (napi_get_typedarray_info(env, buffer, &type, &elems, &data, &ab, &offset) != napi_ok || type != napi_uint8_array) data = NULL;
    length = elems;
  }
  if (!L.set || data == NULL || count > MAX_BATCH || base < 0 || base + (double)count * L.size > (double)length) {
    napi_throw_range_error(env, NULL, "udp_batch: slot area outside the buffer (or layout not set)");
    return NULL;
  }
  return (uint8_t *)data + (size_t)base;
}

// (socket, buffer, base, count): the socket, the count and the slot area.
static uint8_t *batch_args(napi_env env, napi_callback_info info, Sock **s, uint32_t *count) {
  napi_value argv[4];
  *s = sock_args(env, info, 4, argv);
  if (!*s) return NULL;
  *count = (uint32_t)num(env, argv[3]);
  return slots(env, argv[1], num(env, argv[2]), *count);
}

static void count_error(Sock *s, int err) {
  if (err == EMSGSIZE) s->stats[ST_EMSGSIZE]++;
  else if (err == ECONNREFUSED) s->stats[ST_ECONNREFUSED]++;
  else if (err == EAGAIN || err == EWOULDBLOCK) s->stats[ST_EAGAIN]++;
}

// recv(socket, buffer, base, count) → datagrams read (0: none waiting). Each lands in its
// slot: payload at data (cut at cap), real length, source (16 bytes, IPv4 as ::ffff:a.b.c.d),
// source port, and the destination address it was sent to.
static napi_value recv_batch(napi_env env, napi_callback_info info) {
  Sock *s;
  uint32_t count;
  uint8_t *area = batch_args(env, info, &s, &count);
  if (!area || count == 0) return area ? make_num(env, 0) : NULL; // (s is set when area is)
  for (uint32_t i = 0; i < count; i++) {
    uint8_t *slot = area + (size_t)i * L.size;
    s->iov[i].iov_base = slot + L.data;
    s->iov[i].iov_len = L.cap;
    struct msghdr *h = &s->msgs[i].msg_hdr;
    h->msg_name = &s->names[i];
    h->msg_namelen = sizeof s->names[i];
    h->msg_iov = &s->iov[i];
    h->msg_iovlen = 1;
    h->msg_control = s->cmsg[i];
    h->msg_controllen = CMSG_ROOM;
    h->msg_flags = 0;
  }
  s->stats[ST_CALLS]++;
  int n;
  for (int tries = 0;; tries++) {
    // MSG_TRUNC: msg_len is the datagram's real length even when cut at cap.
    n = recvmmsg(s->fd, s->msgs, count, MSG_DONTWAIT | MSG_TRUNC, NULL);
    if (n >= 0) break;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return make_num(env, 0);
    if (errno == EINTR && tries < 4) continue;
    // A queued ICMP error (ECONNREFUSED) and the like: counted, the next call reads on.
    count_error(s, errno);
    s->stats[ST_RECV_ERR]++;
    if (tries < 4) continue;
    return make_num(env, 0);
  }
  for (int i = 0; i < n; i++) {
    uint8_t *slot = area + (size_t)i * L.size;
    uint32_t len = s->msgs[i].msg_len;
    if (len > L.cap) s->stats[ST_TRUNCATED]++;
    uint16_t wire = len > 0xffff ? 0xffff : (uint16_t)len;
    memcpy(slot + L.wire_len, &wire, 2); // little-endian, as the module reads it
    struct sockaddr_in6 *from = &s->names[i];
    uint8_t *src = slot + L.src, *dst = slot + L.dst;
    uint16_t port;
    memset(dst, 0, 16);
    if (from->sin6_family == AF_INET) {
      struct sockaddr_in *a = (struct sockaddr_in *)from;
      memset(src, 0, 10);
      src[10] = src[11] = 0xff;
      memcpy(src + 12, &a->sin_addr, 4);
      port = ntohs(a->sin_port);
    } else {
      memcpy(src, &from->sin6_addr, 16);
      port = ntohs(from->sin6_port);
    }
    memcpy(slot + L.port, &port, 2);
    struct msghdr *h = &s->msgs[i].msg_hdr;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c)) {
      if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
        struct in_pktinfo pi;
        memcpy(&pi, CMSG_DATA(c), sizeof pi);
        dst[10] = dst[11] = 0xff;
        memcpy(dst + 12, &pi.ipi_addr, 4); // the header's destination: the address asked
      } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
        struct in6_pktinfo pi;
        memcpy(&pi, CMSG_DATA(c), sizeof pi);
        memcpy(dst, &pi.ipi6_addr, 16);
      }
    }
  }
  s->stats[ST_RECV] += n;
  return make_num(env, n);
}

static int all_zero(const uint8_t *p, int n) {
  for (int i = 0; i < n; i++)
    if (p[i]) return 0;
  return 1;
}

// Message i's control data: one pktinfo naming the source address of the reply.
static void source_cmsg(Sock *s, int i, int level, int type, const void *info, size_t size) {
  struct msghdr *h = &s->msgs[i].msg_hdr;
  memset(s->cmsg[i], 0, CMSG_ROOM);
  h->msg_control = s->cmsg[i];
  h->msg_controllen = CMSG_SPACE(size);
  struct cmsghdr *c = CMSG_FIRSTHDR(h);
  c->cmsg_level = level;
  c->cmsg_type = type;
  c->cmsg_len = CMSG_LEN(size);
  memcpy(CMSG_DATA(c), info, size);
}

// Fills message i from slot: to (source address:port), from (the destination it was sent
// to, as pktinfo, on a wildcard socket), the reply bytes.
static void reply_msg(Sock *s, int i, uint8_t *slot, uint16_t length) {
  struct sockaddr_in6 *to = &s->names[i];
  struct msghdr *h = &s->msgs[i].msg_hdr;
  uint16_t port;
  memcpy(&port, slot + L.port, 2);
  memset(to, 0, sizeof *to);
  const uint8_t *src = slot + L.src, *dst = slot + L.dst;
  h->msg_control = NULL;
  h->msg_controllen = 0;
  if (s->family == AF_INET) {
    struct sockaddr_in *a = (struct sockaddr_in *)to;
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    memcpy(&a->sin_addr, src + 12, 4);
    h->msg_namelen = sizeof *a;
    if (s->wildcard && !all_zero(dst + 12, 4)) {
      struct in_pktinfo pi = {0};
      memcpy(&pi.ipi_spec_dst, dst + 12, 4);
      source_cmsg(s, i, IPPROTO_IP, IP_PKTINFO, &pi, sizeof pi);
    }
  } else {
    to->sin6_family = AF_INET6;
    to->sin6_port = htons(port);
    memcpy(&to->sin6_addr, src, 16);
    h->msg_namelen = sizeof *to;
    if (s->wildcard && !all_zero(dst, 16)) {
      struct in6_pktinfo pi = {0};
      memcpy(&pi.ipi6_addr, dst, 16);
      source_cmsg(s, i, IPPROTO_IPV6, IPV6_PKTINFO, &pi, sizeof pi);
    }
  }
  h->msg_name = to;
  s->iov[i].iov_base = slot + L.data;
  s->iov[i].iov_len = length;
  h->msg_iov = &s->iov[i];
  h->msg_iovlen = 1;
  h->msg_flags = 0;
}

// sendmmsg of messages [0, n): a message the kernel refuses is counted and skipped; a full
// send buffer (EAGAIN) drops the rest, counted. Returns the number sent.
static int send_all(Sock *s, int n) {
  int sent = 0, off = 0;
  while (off < n) {
    int r = sendmmsg(s->fd, s->msgs + off, n - off, MSG_DONTWAIT);
    if (r > 0) {
      sent += r;
      off += r;
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    int err = r < 0 ? errno : EIO;
    if (err == EAGAIN || err == EWOULDBLOCK) {
      s->stats[ST_EAGAIN] += n - off;
      s->stats[ST_SEND_ERR] += n - off;
      break;
    }
    count_error(s, err);
    s->stats[ST_SEND_ERR]++;
    off++;
  }
  s->stats[ST_SENT] += sent;
  return sent;
}

// send(socket, buffer, base, count) → replies sent: every slot in [0, count) whose verdict
// is a reply goes back to its source, from the address its request was sent to.
static napi_value send_batch(napi_env env, napi_callback_info info) {
  Sock *s;
  uint32_t count;
  uint8_t *area = batch_args(env, info, &s, &count);
  if (!area) return NULL;
  int n = 0;
  for (uint32_t i = 0; i < count; i++) {
    uint8_t *slot = area + (size_t)i * L.size;
    if (slot[L.verdict] != L.reply) continue;
    uint16_t length;
    memcpy(&length, slot + L.resp_len, 2);
    if (length > L.cap) length = (uint16_t)L.cap;
    reply_msg(s, n++, slot, length);
  }
  return make_num(env, send_all(s, n));
}

// sendTo(socket, bytes, address, port) → 0, or the errno of a refused send (unsolicited
// messages: ANNOUNCE, Mapping Update; the source is the socket's own address).
static napi_value send_to(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  Sock *s = sock_args(env, info, 4, argv);
  if (!s) return NULL;
  void *data;
  size_t length;
  napi_typedarray_type type;
  napi_value ab;
  size_t offset;
  if (napi_get_typedarray_info(env, argv[1], &type, &length, &data, &ab, &offset) != napi_ok || type != napi_uint8_array) {
    napi_throw_type_error(env, NULL, "udp_batch: bytes must be a Uint8Array");
    return NULL;
  }
  char text[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
  size_t n;
  CHECK(napi_get_value_string_utf8(env, argv[2], text, sizeof text, &n));
  struct sockaddr_in6 to;
  socklen_t len;
  if (parse_addr(text, (int)num(env, argv[3]), s->family, &to, &len) != 0) return make_num(env, EINVAL);
  if (sendto(s->fd, data, length, MSG_DONTWAIT, (struct sockaddr *)&to, len) < 0) {
    int e = errno;
    count_error(s, e);
    s->stats[ST_SEND_ERR]++;
    return make_num(env, e);
  }
  s->stats[ST_SENT]++;
  return make_num(env, 0);
}

// multicastInterface(socket, address): IP_MULTICAST_IF for IPv4 multicast (ANNOUNCE).
static napi_value multicast_if(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  Sock *s = sock_args(env, info, 2, argv);
  if (!s) return NULL;
  char text[INET6_ADDRSTRLEN];
  size_t n;
  CHECK(napi_get_value_string_utf8(env, argv[1], text, sizeof text, &n));
  struct in_addr a;
  if (s->family != AF_INET || inet_pton(AF_INET, text, &a) != 1) return throw_errno(env, "multicast interface", EINVAL);
  if (setsockopt(s->fd, IPPROTO_IP, IP_MULTICAST_IF, &a, sizeof a) != 0) return throw_errno(env, "IP_MULTICAST_IF", errno);
  return NULL;
}

// stats(socket) → [received, sent, sendErrors, emsgsize, econnrefused, eagain, recvErrors, truncated, recvCalls].
static napi_value stats(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  Sock *s = sock_args(env, info, 1, argv);
  if (!s) return NULL;
  napi_value out;
  CHECK(napi_create_array_with_length(env, ST_COUNT, &out));
  for (int i = 0; i < ST_COUNT; i++) napi_set_element(env, out, i, make_num(env, s->stats[i]));
  return out;
}

static void on_readable(uv_poll_t *handle, int status, int events) {
  (void)events;
  Sock *s = handle->data;
  if (s->closed || s->callback == NULL) return;
  napi_env env = s->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value fn, recv, global, result;
  napi_get_reference_value(env, s->callback, &fn);
  napi_get_global(env, &recv);
  global = recv;
  napi_value arg = make_num(env, status);
  // make_callback: microtasks run after it, and an exception reaches 'uncaughtException'.
  if (fn && napi_make_callback(env, s->async, global, fn, 1, &arg, &result) == napi_pending_exception) {
    napi_value e;
    napi_get_and_clear_last_exception(env, &e);
    napi_fatal_exception(env, e);
  }
  napi_close_handle_scope(env, scope);
}

// start(socket, callback): callback() on every readable event of the loop of the calling
// thread (level-triggered: data left unread raises the next one).
static napi_value start(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  Sock *s = sock_args(env, info, 2, argv);
  if (!s) return NULL;
  if (s->polling) return throw_errno(env, "start: already polling", EINVAL);
  uv_loop_t *loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  CHECK(napi_create_reference(env, argv[1], 1, &s->callback));
  napi_value name;
  napi_create_string_utf8(env, "pcpd:udp_batch", NAPI_AUTO_LENGTH, &name);
  CHECK(napi_async_init(env, NULL, name, &s->async));
  if (uv_poll_init(loop, &s->poll, s->fd) != 0) return throw_errno(env, "uv_poll_init", EINVAL);
  s->poll.data = s;
  s->polling = 1;
  uv_poll_start(&s->poll, UV_READABLE, on_readable);
  return NULL;
}

static void unlink_sock(Sock *s) {
  EnvData *d = env_data(s->env);
  for (Sock **p = &d->head; *p; p = &(*p)->next)
    if (*p == s) {
      *p = s->next;
      break;
    }
}

static void after_close(uv_handle_t *handle) {
  Sock *s = handle->data;
  if (s->owned) close(s->fd);
  free(s);
}

// Stops polling, closes the descriptor (if owned) and frees the socket once libuv is done.
static void close_sock(Sock *s, int in_cleanup) {
  s->closed = 1;
  if (!in_cleanup) {
    if (s->callback) napi_delete_reference(s->env, s->callback);
    if (s->async) napi_async_destroy(s->env, s->async);
  }
  s->callback = NULL;
  if (s->polling) {
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, after_close);
  } else {
    if (s->owned) close(s->fd);
    free(s);
  }
}

static napi_value close_socket(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  Sock *s = sock_args(env, info, 1, argv);
  if (!s) return NULL;
  unlink_sock(s);
  close_sock(s, 0);
  return NULL;
}

static void cleanup(void *arg) {
  EnvData *d = arg;
  while (d->head) {
    Sock *s = d->head;
    d->head = s->next;
    close_sock(s, 1);
  }
}

static void free_env(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

NAPI_MODULE_INIT() {
  EnvData *d = calloc(1, sizeof(EnvData));
  napi_set_instance_data(env, d, free_env, NULL);
  napi_add_env_cleanup_hook(env, cleanup, d);
  struct {
    const char *name;
    napi_callback fn;
  } fns[] = {
      {"open", open_socket}, {"adopt", adopt},   {"fd", get_fd},       {"local", local},   {"rcvbuf", rcvbuf},
      {"steer", steer},      {"layout", layout}, {"recv", recv_batch}, {"send", send_batch}, {"sendTo", send_to},
      {"multicastInterface", multicast_if},      {"stats", stats},     {"start", start},   {"close", close_socket},
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value f;
    napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &f);
    napi_set_named_property(env, exports, fns[i].name, f);
  }
  napi_value batch = make_num(env, MAX_BATCH);
  napi_set_named_property(env, exports, "maxBatch", batch);
  return exports;
}
