// sd_notify(3) from the server's own process: one datagram of "KEY=VALUE\n…" to the unix
// socket systemd names in $NOTIFY_SOCKET (a path, or "@name" for the abstract namespace).
// Sent from this process, the kernel stamps it with this pid (SCM_CREDENTIALS on systemd's
// SO_PASSCRED socket), so the unit needs no NotifyAccess=all and systemd never has to map a
// short-lived helper process to the unit (systemd-notify's race). Like
// sd_notify(unset_environment=0): the environment is left as it is.
#include "udp_batch.h"

#include <stddef.h>
#include <sys/un.h>

// sdNotify(socket, state): throws with the errno's text when the datagram is not sent.
napi_value sd_notify(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!args(env, info, 2, argv)) return NULL;
  char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
  size_t path_len = 0;
  if (napi_get_value_string_utf8(env, argv[0], path, sizeof path, &path_len) != napi_ok) return throw_errno(env, "sdNotify: socket", EINVAL);
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  // A path fills sun_path with its NUL; "@name" is the abstract name "\0name" (no NUL).
  if (path_len < 2 || (path[0] != '/' && path[0] != '@') || path_len >= sizeof addr.sun_path)
    return throw_errno(env, "sdNotify: $NOTIFY_SOCKET is neither an absolute path nor @abstract", EAFNOSUPPORT);
  memcpy(addr.sun_path, path, path_len);
  if (path[0] == '@') addr.sun_path[0] = '\0';
  socklen_t addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + path_len + (path[0] == '/'));

  size_t state_len = 0;
  if (napi_get_value_string_utf8(env, argv[1], NULL, 0, &state_len) != napi_ok) return throw_errno(env, "sdNotify: state", EINVAL);
  char *state = malloc(state_len + 1);
  if (!state) return throw_errno(env, "sdNotify", ENOMEM);
  napi_get_value_string_utf8(env, argv[1], state, state_len + 1, &state_len);

  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  int err = fd < 0 ? errno : 0;
  if (!err) {
    // MSG_DONTWAIT: a stalled service manager must not block the event loop (EAGAIN then).
    ssize_t n = sendto(fd, state, state_len, MSG_NOSIGNAL | MSG_DONTWAIT, (struct sockaddr *)&addr, addr_len);
    err = n < 0 ? errno : (size_t)n != state_len ? EMSGSIZE : 0;
    close(fd);
  }
  free(state);
  return err ? throw_errno(env, "sdNotify", err) : NULL;
}
