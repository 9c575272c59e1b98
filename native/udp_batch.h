// Shared between native/udp_socket.c (sockets: open, adopt, options, steering, unsolicited
// sends) and native/udp_batch.c (the batch path, readiness, the module); see udp_batch.c.
#ifndef UDP_BATCH_H
#define UDP_BATCH_H
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
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#define MAX_BATCH 1024
// A received message's control data (wildcard sockets): its destination, pktinfo of either family.
#define CMSG_ROOM (CMSG_SPACE(sizeof(struct in6_pktinfo)) + CMSG_SPACE(sizeof(struct in_pktinfo)))

// Errno classes of the counters (src/io/native.ts NATIVE_STATS names them).
enum { EC_EAGAIN, EC_ENOBUFS, EC_EMSGSIZE, EC_ECONNREFUSED, EC_OTHER, EC_COUNT };
// Per-socket counters, stats() order: datagrams read and sent, recvmmsg calls, datagrams
// longer than a slot (MSG_TRUNC), datagrams the kernel dropped on the full receive queue
// (SO_MEMINFO's count, read by stats()), receive errors by class, replies not sent by class (EAGAIN: the send
// buffer was full, the rest of that batch dropped).
enum { ST_RECV, ST_SENT, ST_CALLS, ST_TRUNCATED, ST_RXQ_DROPS, ST_RECV_ERR, ST_UNSENT = ST_RECV_ERR + EC_COUNT, ST_COUNT = ST_UNSENT + EC_COUNT };

typedef struct Sock {
  int fd;
  int family;
  int owned;    // close(fd) on close (an adopted descriptor belongs to the main thread)
  int wildcard; // bound to 0.0.0.0 / :: (replies then carry a pktinfo source)
  uint8_t local16[16]; // the bound address (IPv4 as ::ffff:a.b.c.d)
  int polling;
  int closed;
  // Readiness (udp_batch.c start): the socket sits in a private epoll set whose descriptor
  // the loop polls; `armed`: the socket is in that set now (a busy drain takes it out).
  int epfd;
  int armed;
  uv_poll_t poll;
  uv_timer_t rearm; // retries a failed re-arm (never leaves the socket unwatched)
  int handles;      // libuv handles still open (the socket is freed when the last closes)
  napi_env env;
  napi_ref callback;
  napi_async_context async;
  struct Sock *next; // the env's open sockets (closed by the cleanup hook)
  double stats[ST_COUNT];
  // SO_MEMINFO reports the socket's drops since it was created: an adopted socket (a
  // reuseport member a replaced worker takes over) counts from the value at adoption.
  uint32_t drops_base;
  struct mmsghdr msgs[MAX_BATCH];
  struct iovec iov[MAX_BATCH];
  struct sockaddr_in6 names[MAX_BATCH];
  char cmsg[MAX_BATCH][CMSG_ROOM];
} Sock;


#define CHECK(call)                                                  \
  do {                                                               \
    if ((call) != napi_ok) {                                         \
      napi_throw_error(env, NULL, "udp_batch: N-API call failed");   \
      return NULL;                                                   \
    }                                                                \
  } while (0)

// Per-env list of open sockets: a worker that ends (piscina terminate) closes its handles.
typedef struct {
  Sock *head;
} EnvData;

napi_value throw_errno(napi_env env, const char *what, int err);
napi_value args(napi_env env, napi_callback_info info, size_t want, napi_value *argv);
napi_value sd_notify(napi_env env, napi_callback_info info); // native/sd_notify.c
double num(napi_env env, napi_value v);
napi_value make_num(napi_env env, double d);
Sock *sock_of(napi_env env, napi_value v);
Sock *sock_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv);
EnvData *env_data(napi_env env);
void count_recv_error(Sock *s, int err);
void count_send_error(Sock *s, int err, int messages);
int source_control(int family, const uint8_t *from16, struct msghdr *h, char *control);

// The module's socket functions (udp_socket.c).
napi_value open_socket(napi_env env, napi_callback_info info);
napi_value adopt(napi_env env, napi_callback_info info);
napi_value get_fd(napi_env env, napi_callback_info info);
napi_value local(napi_env env, napi_callback_info info);
napi_value rcvbuf(napi_env env, napi_callback_info info);
napi_value steer(napi_env env, napi_callback_info info);
napi_value send_to(napi_env env, napi_callback_info info);
napi_value send_many(napi_env env, napi_callback_info info);
napi_value multicast_if(napi_env env, napi_callback_info info);
napi_value stats(napi_env env, napi_callback_info info);
// Transparent huge pages for a WebAssembly memory (hugepages.c).
napi_value huge_pages(napi_env env, napi_callback_info info);
// Chosen elements of an nftables set over netlink (nft_elements.c).
napi_value nft_elements(napi_env env, napi_callback_info info);

#endif
