// Sockets of the batched UDP addon (native/udp_batch.c has the design): opening or adopting
// one, its options (IP_PKTINFO, SO_REUSEPORT, SO_RCVBUF), the reuseport steering program,
// unsolicited sends and the per-socket counters.
#include "udp_batch.h"
#include <linux/sock_diag.h>

napi_value throw_errno(napi_env env, const char *what, int err) {
  char code[32], msg[256];
  snprintf(code, sizeof code, "%s", err == EADDRINUSE ? "EADDRINUSE" : err == EADDRNOTAVAIL ? "EADDRNOTAVAIL" : err == EACCES ? "EACCES" : err == EINVAL ? "EINVAL" : "ERRNO");
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_throw_error(env, code, msg);
  return NULL;
}



napi_value args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) {
    napi_throw_type_error(env, NULL, "udp_batch: missing arguments");
    return NULL;
  }
  return argv[0];
}

double num(napi_env env, napi_value v) {
  double d = 0;
  napi_get_value_double(env, v, &d);
  return d;
}

napi_value make_num(napi_env env, double d) {
  napi_value v;
  napi_create_double(env, d, &v);
  return v;
}

Sock *sock_of(napi_env env, napi_value v) {
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
Sock *sock_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  return args(env, info, want, argv) ? sock_of(env, argv[0]) : NULL;
}



EnvData *env_data(napi_env env) {
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

// The datagrams the kernel dropped for the socket since it was created (sk_drops: a full
// receive queue, a bad checksum), read when asked — SO_RXQ_OVFL would put it in a control
// message on every datagram read after the first drop, a copy per datagram.
static uint32_t kernel_drops(int fd) {
  uint32_t mem[SK_MEMINFO_VARS] = {0};
  socklen_t len = sizeof mem;
  if (getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mem, &len) != 0 || len <= SK_MEMINFO_DROPS * sizeof mem[0]) return 0;
  return mem[SK_MEMINFO_DROPS];
}

// A socket over `fd`, bound to `addr`.
static Sock *new_sock(napi_env env, int fd, int owned, const struct sockaddr_in6 *addr) {
  Sock *s = calloc(1, sizeof(Sock));
  if (!s) return NULL;
  s->fd = fd;
  s->family = addr->sin6_family;
  s->owned = owned;
  s->env = env;
  if (s->family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)addr;
    s->wildcard = a->sin_addr.s_addr == INADDR_ANY;
    s->local16[10] = s->local16[11] = 0xff;
    memcpy(s->local16 + 12, &a->sin_addr, 4);
  } else {
    s->wildcard = IN6_IS_ADDR_UNSPECIFIED(&addr->sin6_addr);
    memcpy(s->local16, &addr->sin6_addr, 16);
  }
  int on = 1;
  // Where each request was sent: the reply's source (RFC 6887 §14.1.3). Asked only on a
  // wildcard socket: on one bound to an address it is that address (recv_batch writes it),
  // and the control message would cost every datagram a put_cmsg.
  if (s->wildcard) {
    if (s->family == AF_INET) setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &on, sizeof on);
    else setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof on);
  }
  s->drops_base = kernel_drops(fd);
  return s;
}

// open(address, port, rcvbuf, reusePort) → socket. Binds a non-blocking UDP socket
// (IPv6 sockets v6-only, as the dgram path's); rcvbuf > 0 sets SO_RCVBUF first.
napi_value open_socket(napi_env env, napi_callback_info info) {
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
  Sock *s = new_sock(env, fd, 1, &addr);
  if (!s) {
    close(fd);
    return throw_errno(env, "calloc", ENOMEM);
  }
  return wrap(env, s);
}

// adopt(fd) → socket over a descriptor another thread opened and keeps (a reuseport group
// member the main thread bound in shard order): close() leaves the descriptor open.
napi_value adopt(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!args(env, info, 1, argv)) return NULL;
  int fd = (int)num(env, argv[0]);
  struct sockaddr_in6 addr;
  socklen_t len = sizeof addr;
  if (getsockname(fd, (struct sockaddr *)&addr, &len) != 0) return throw_errno(env, "getsockname", errno);
  Sock *s = new_sock(env, fd, 0, &addr);
  if (!s) return throw_errno(env, "calloc", ENOMEM);
  return wrap(env, s);
}

// fd(socket) → the descriptor (handed to a worker, which adopts it).
napi_value get_fd(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  Sock *s = sock_args(env, info, 1, argv);
  return s ? make_num(env, s->fd) : NULL;
}

// local(socket) → [address, port].
napi_value local(napi_env env, napi_callback_info info) {
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
napi_value rcvbuf(napi_env env, napi_callback_info info) {
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
napi_value steer(napi_env env, napi_callback_info info) {
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

static int errno_class(int err) {
  if (err == EAGAIN || err == EWOULDBLOCK) return EC_EAGAIN;
  if (err == ENOBUFS) return EC_ENOBUFS;
  if (err == EMSGSIZE) return EC_EMSGSIZE;
  if (err == ECONNREFUSED) return EC_ECONNREFUSED;
  return EC_OTHER;
}

void count_recv_error(Sock *s, int err) {
  s->stats[ST_RECV_ERR + errno_class(err)]++;
}

// `messages` replies not sent because of `err` (a full send buffer drops the rest of a batch).
void count_send_error(Sock *s, int err, int messages) {
  s->stats[ST_UNSENT + errno_class(err)] += messages;
}

static int all_zero(const uint8_t *p, int n) {
  for (int i = 0; i < n; i++)
    if (p[i]) return 0;
  return 1;
}

// Control data naming the reply's source: from16 (16 bytes, IPv4 v4-mapped) as IP_PKTINFO's
// ipi_spec_dst or IPV6_PKTINFO's address, in `control` (CMSG_ROOM bytes), attached to h.
// 0 (nothing attached) when from16 is all zero (no destination was recorded).
int source_control(int family, const uint8_t *from16, struct msghdr *h, char *control) {
  int level, type;
  size_t size;
  struct in_pktinfo pi4 = {0};
  struct in6_pktinfo pi6 = {0};
  const void *info;
  if (family == AF_INET) {
    if (all_zero(from16 + 12, 4)) return 0;
    memcpy(&pi4.ipi_spec_dst, from16 + 12, 4);
    level = IPPROTO_IP, type = IP_PKTINFO, size = sizeof pi4, info = &pi4;
  } else {
    if (all_zero(from16, 16)) return 0;
    memcpy(&pi6.ipi6_addr, from16, 16);
    level = IPPROTO_IPV6, type = IPV6_PKTINFO, size = sizeof pi6, info = &pi6;
  }
  memset(control, 0, CMSG_ROOM);
  h->msg_control = control;
  h->msg_controllen = CMSG_SPACE(size);
  struct cmsghdr *c = CMSG_FIRSTHDR(h);
  c->cmsg_level = level;
  c->cmsg_type = type;
  c->cmsg_len = CMSG_LEN(size);
  memcpy(CMSG_DATA(c), info, size);
  return 1;
}

// sendTo(socket, bytes, address, port[, from]) → 0, or the errno of a refused send. One
// datagram outside the batches: unsolicited messages (ANNOUNCE, Mapping Update: the source is
// the socket's own address) and the replies that leave one by one (RFC 7652 tagged replies,
// the authenticator's messages). `from` (16 bytes, IPv4 v4-mapped: a slot's SLOT_DST_ADDR)
// is the address the request was sent to: on a wildcard socket it rides along as
// IP_PKTINFO / IPV6_PKTINFO in the same sendmsg, so the reply leaves from it (RFC 6887
// §14.1.3), as the batch's replies do.
napi_value send_to(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  size_t argc = 5;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 4) {
    napi_throw_type_error(env, NULL, "udp_batch: missing arguments");
    return NULL;
  }
  Sock *s = sock_of(env, argv[0]);
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
  const uint8_t *from = NULL;
  if (argc >= 5) {
    napi_valuetype t;
    napi_typeof(env, argv[4], &t);
    if (t != napi_undefined && t != napi_null) {
      size_t flen;
      void *fdata;
      if (napi_get_typedarray_info(env, argv[4], &type, &flen, &fdata, &ab, &offset) != napi_ok || type != napi_uint8_array || flen != 16) {
        napi_throw_type_error(env, NULL, "udp_batch: from must be a 16-byte Uint8Array");
        return NULL;
      }
      from = fdata;
    }
  }
  char text[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
  size_t n;
  CHECK(napi_get_value_string_utf8(env, argv[2], text, sizeof text, &n));
  struct sockaddr_in6 to;
  socklen_t len;
  if (parse_addr(text, (int)num(env, argv[3]), s->family, &to, &len) != 0) return make_num(env, EINVAL);
  struct iovec iov = {.iov_base = data, .iov_len = length};
  struct msghdr h = {.msg_name = &to, .msg_namelen = len, .msg_iov = &iov, .msg_iovlen = 1};
  char control[CMSG_ROOM];
  if (from && s->wildcard) source_control(s->family, from, &h, control);
  if (sendmsg(s->fd, &h, MSG_DONTWAIT) < 0) {
    int e = errno;
    count_send_error(s, e, 1);
    return make_num(env, e);
  }
  s->stats[ST_SENT]++;
  return make_num(env, 0);
}

// A typed array argument's bytes and element count (0 when it is not of `want`'s type).
static void *typed(napi_env env, napi_value v, napi_typedarray_type want, size_t *count) {
  napi_typedarray_type type;
  void *data = NULL;
  napi_value ab;
  size_t offset;
  if (napi_get_typedarray_info(env, v, &type, count, &data, &ab, &offset) != napi_ok || type != want) return NULL;
  return data;
}

// sendMany(socket, bytes, lengths, count, address, port, result) → datagrams taken. `count`
// datagrams packed back to back in `bytes` (lengths[i] bytes each), in order, to one
// destination: sendmmsg of up to MAX_BATCH per call (the mapping log's flush: one system call
// instead of one sendto per syslog message, RFC 5426 §3.1 keeping one message a datagram).
// A full send buffer (EAGAIN, ENOBUFS) stops the call: the datagrams from there on are not
// taken and wait in the caller's bounded queue. Any other refused datagram (EMSGSIZE, a
// reported ICMP error) is skipped and counted, and its lengths[i] set to 0 (the caller knows
// which; callers send no empty datagrams): result[0] = how many of the taken ones were
// refused, result[1] = the errno that stopped the call (0 when all were taken). Counted in
// stats() as sendTo's sends are (sent, unsent by class).
napi_value send_many(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  Sock *s = sock_args(env, info, 7, argv);
  if (!s) return NULL;
  size_t length, nlengths, nresult;
  uint8_t *bytes = typed(env, argv[1], napi_uint8_array, &length);
  uint32_t *lengths = typed(env, argv[2], napi_uint32_array, &nlengths);
  int32_t *result = typed(env, argv[6], napi_int32_array, &nresult);
  double want = num(env, argv[3]);
  if (!bytes || !lengths || !result || nresult < 2 || !(want >= 0 && want <= (double)nlengths)) { // (NaN too)
    napi_throw_type_error(env, NULL, "udp_batch: sendMany(socket, Uint8Array, Uint32Array, count <= lengths, address, port, Int32Array(2))");
    return NULL;
  }
  size_t count = (size_t)want, total = 0;
  for (size_t i = 0; i < count; i++) total += lengths[i];
  if (total > length) {
    napi_throw_range_error(env, NULL, "udp_batch: sendMany: the lengths add up to more than bytes");
    return NULL;
  }
  result[0] = result[1] = 0;
  char text[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
  size_t n;
  CHECK(napi_get_value_string_utf8(env, argv[4], text, sizeof text, &n));
  struct sockaddr_in6 to;
  socklen_t len;
  if (parse_addr(text, (int)num(env, argv[5]), s->family, &to, &len) != 0) {
    result[1] = EINVAL;
    return make_num(env, 0);
  }
  size_t done = 0, at = 0; // datagrams taken, and where the next one starts in bytes
  while (done < count) {
    size_t chunk = count - done < MAX_BATCH ? count - done : MAX_BATCH;
    for (size_t i = 0, p = at; i < chunk; p += lengths[done + i], i++) {
      s->iov[i] = (struct iovec){.iov_base = bytes + p, .iov_len = lengths[done + i]};
      s->msgs[i].msg_hdr = (struct msghdr){.msg_name = &to, .msg_namelen = len, .msg_iov = &s->iov[i], .msg_iovlen = 1};
    }
    int r = sendmmsg(s->fd, s->msgs, (unsigned)chunk, MSG_DONTWAIT);
    if (r < 0) {
      int e = errno;
      if (e == EINTR) continue;
      count_send_error(s, e, 1);
      if (e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS) {
        result[1] = e;
        break;
      }
      result[0]++; // this datagram is refused: skipped, its length set to 0 (which one it was)
      at += lengths[done];
      lengths[done++] = 0;
      continue;
    }
    s->stats[ST_SENT] += r;
    for (int i = 0; i < r; i++) at += lengths[done++];
  }
  return make_num(env, (double)done);
}

// multicastInterface(socket, address): IP_MULTICAST_IF for IPv4 multicast (ANNOUNCE).
napi_value multicast_if(napi_env env, napi_callback_info info) {
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

// stats(socket) → the counters in ST_* order (src/io/native.ts NATIVE_STATS).
napi_value stats(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  Sock *s = sock_args(env, info, 1, argv);
  if (!s) return NULL;
  napi_value out;
  s->stats[ST_RXQ_DROPS] = (uint32_t)(kernel_drops(s->fd) - s->drops_base); // (wraps as the kernel's count does)
  CHECK(napi_create_array_with_length(env, ST_COUNT, &out));
  for (int i = 0; i < ST_COUNT; i++) napi_set_element(env, out, i, make_num(env, s->stats[i]));
  return out;
}
