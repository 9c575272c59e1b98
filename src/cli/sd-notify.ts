// systemd's readiness protocol (sd_notify(3)) for a unit of Type=notify: "READY=1" once
// the server serves, "STOPPING=1" when it begins to stop, as datagrams to the unix socket
// $NOTIFY_SOCKET. Node cannot send a unix datagram without a native module, so the
// message goes through `systemd-notify` (from systemd itself: present wherever a unit
// runs). It sends from its own process, so the unit needs NotifyAccess=all (see
// packaging/pcp-server.service); MAINPID names this process as the service's main one.
import { execFile } from "node:child_process";

export interface Notifier {
  /** Sends `state` (e.g. "READY=1"); resolves to the problem when it could not be sent. */
  notify(state: string): Promise<string | undefined>;
}

/** A notifier for $NOTIFY_SOCKET, or undefined when not started by systemd with Type=notify. */
export function systemdNotifier(env: NodeJS.ProcessEnv = process.env, command = "systemd-notify"): Notifier | undefined {
  if (!env.NOTIFY_SOCKET) return undefined;
  return {
    notify(state) {
      return new Promise((resolve) => {
        execFile(command, [`MAINPID=${process.pid}`, state], { env, timeout: 5000 }, (err, _out, stderr) =>
          resolve(err ? `${command} ${state}: ${(stderr || err.message).trim()}` : undefined),
        );
      });
    },
  };
}
