// The physical reference of the end-to-end benchmark (bench/e2e-io.bench.ts): a C UDP echo
// with the batched server's system calls and nothing else — per socket, one blocking
// recvmmsg of up to 256 datagrams and one sendmmsg of them back to their sources. One
// thread per listen address (as one worker per address), so /proc/<pid> counts all its CPU.
//   e2e-echo-mmsg --listen 127.0.0.20[,ADDRESS...] --port P
// Prints "ready" once every socket is bound; SIGTERM stops it.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <pthread.h>
#include <unistd.h>

#define BATCH 256
#define CAP 1104

static void *serve(void *arg) {
  int fd = (int)(long)arg;
  struct mmsghdr *msgs = calloc(BATCH, sizeof *msgs);
  struct iovec *iov = calloc(BATCH, sizeof *iov);
  struct sockaddr_in *names = calloc(BATCH, sizeof *names);
  char (*bufs)[CAP] = calloc(BATCH, CAP);
  for (;;) {
    for (int i = 0; i < BATCH; i++) {
      iov[i].iov_base = bufs[i];
      iov[i].iov_len = CAP;
      msgs[i].msg_hdr = (struct msghdr){.msg_name = &names[i], .msg_namelen = sizeof names[i], .msg_iov = &iov[i], .msg_iovlen = 1};
    }
    int n = recvmmsg(fd, msgs, BATCH, MSG_WAITFORONE, NULL);
    if (n <= 0) continue;
    for (int i = 0; i < n; i++) iov[i].iov_len = msgs[i].msg_len;
    for (int off = 0; off < n;) {
      int r = sendmmsg(fd, msgs + off, n - off, 0);
      off += r > 0 ? r : 1;
    }
  }
  return NULL;
}

int main(int argc, char **argv) {
  const char *listen = "127.0.0.20";
  int port = 5351;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--listen")) listen = argv[i + 1];
    else if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
  }
  char list[1024];
  snprintf(list, sizeof list, "%s", listen);
  for (char *a = strtok(list, ","); a; a = strtok(NULL, ",")) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    int buf = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, a, &sa.sin_addr) != 1 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
      perror(a);
      return 1;
    }
    pthread_t t;
    pthread_create(&t, NULL, serve, (void *)(long)fd);
  }
  printf("ready\n");
  fflush(stdout);
  pause(); // SIGTERM's default action ends the process
  return 0;
}
