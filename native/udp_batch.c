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
#include "udp_batch.h"

// A batch this large means the socket is busy: it leaves its epoll set until the drain ends.
// While a socket is in an epoll set, every datagram queued to it and every reply it sends
// (loopback_xmit's sock_wfree) takes the socket's wait-queue lock with interrupts off to
// wake the (idle) epoll entry; on this machine's paravirtualised kernel that was a tenth
// of the server's CPU per request under load. Out of the set there is nobody to wake.
#define BUSY_BATCH 32

// Slot layout, set by layout() from the generated wire constants.
static struct {
  uint32_t size, src, dst, port, wire_len, data, cap, verdict, resp_len, reply;
  int set;
} L;

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
    // Control data only where pktinfo is asked (a wildcard socket): none is copied otherwise.
    h->msg_control = s->wildcard ? s->cmsg[i] : NULL;
    h->msg_controllen = s->wildcard ? CMSG_ROOM : 0;
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
    count_recv_error(s, errno);
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
    memcpy(dst, s->local16, 16); // (a wildcard socket's pktinfo below overwrites it)
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
    if (!s->wildcard) continue;
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
  if (n >= BUSY_BATCH && s->armed && epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->fd, NULL) == 0) s->armed = 0;
  return make_num(env, n);
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
  } else {
    to->sin6_family = AF_INET6;
    to->sin6_port = htons(port);
    memcpy(&to->sin6_addr, src, 16);
    h->msg_namelen = sizeof *to;
  }
  if (s->wildcard) source_control(s->family, dst, h, s->cmsg[i]);
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
      count_send_error(s, err, n - off);
      break;
    }
    count_send_error(s, err, 1);
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

// Puts the socket back into its epoll set (level-triggered: what arrived meanwhile raises
// the next readable event at once).
static int arm(Sock *s) {
  struct epoll_event ev = {.events = EPOLLIN, .data = {.fd = s->fd}};
  if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->fd, &ev) != 0) return -1;
  s->armed = 1;
  return 0;
}

// A re-arm that failed (ENOMEM in epoll_ctl: in practice never) is retried every 10 ms
// until it holds: a socket out of its set would never raise another event.
static void retry_arm(uv_timer_t *timer) {
  Sock *s = timer->data;
  if (!s->closed && !s->armed && arm(s) != 0) uv_timer_start(timer, retry_arm, 10, 0);
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
  if (!s->closed && !s->armed && arm(s) != 0) uv_timer_start(&s->rearm, retry_arm, 10, 0);
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
  s->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (s->epfd < 0) return throw_errno(env, "epoll_create1", errno);
  if (arm(s) != 0 || uv_poll_init(loop, &s->poll, s->epfd) != 0) {
    int e = errno;
    close(s->epfd);
    return throw_errno(env, "epoll", e);
  }
  uv_timer_init(loop, &s->rearm);
  s->rearm.data = s;
  s->poll.data = s;
  s->handles = 2;
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
  if (--s->handles == 0) free(s);
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
    uv_timer_stop(&s->rearm);
    uv_close((uv_handle_t *)&s->rearm, after_close);
    // uv_close has taken the descriptor out of the loop's epoll set: it can be closed now,
    // so the address is free when close() returns (an Epoch reset binds it again at once).
    close(s->epfd);
    if (s->owned) close(s->fd);
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
      {"sendMany", send_many},
      {"multicastInterface", multicast_if},      {"stats", stats},     {"start", start},   {"close", close_socket},
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value f;
    napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &f);
    napi_set_named_property(env, exports, fns[i].name, f);
  }
  napi_value notify; // sdNotify (native/sd_notify.c): systemd readiness from this process
  napi_create_function(env, "sdNotify", NAPI_AUTO_LENGTH, sd_notify, NULL, &notify);
  napi_set_named_property(env, exports, "sdNotify", notify);
  napi_value huge;
  napi_create_function(env, "hugePages", NAPI_AUTO_LENGTH, huge_pages, NULL, &huge);
  napi_set_named_property(env, exports, "hugePages", huge);
  napi_value elements;
  napi_create_function(env, "nftElements", NAPI_AUTO_LENGTH, nft_elements, NULL, &elements);
  napi_set_named_property(env, exports, "nftElements", elements);
  napi_value batch = make_num(env, MAX_BATCH);
  napi_set_named_property(env, exports, "maxBatch", batch);
  return exports;
}
