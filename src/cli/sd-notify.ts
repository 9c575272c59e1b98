// systemd's notification protocol (sd_notify(3)) for a unit of Type=notify: "READY=1" once
// the server serves, "STATUS=…" for `systemctl status`, "STOPPING=1" when it begins to stop,
// "WATCHDOG=1" every half $WATCHDOG_USEC when the unit sets WatchdogSec=; datagrams to the
// unix socket $NOTIFY_SOCKET (a path or an @abstract name).
// Node has no unix datagram socket, so they go through the addon's sdNotify
// (native/sd_notify.c), sent from this process: systemd attributes them to the unit by the
// sender's pid (SCM_CREDENTIALS), which is the unit's main pid, so NotifyAccess=main is
// enough. Without the addon, `systemd-notify --pid=<this pid>` sends them; systemd may then
// fail to map the short-lived sender to the unit (it must be alive when systemd reads the
// datagram, and the unit needs NotifyAccess=all): a fallback, said once in the log.
import { execFile } from "node:child_process";
import { loadAddon, type NativeAddon } from "../io/native.js";

export interface Notifier {
  /** How the messages are sent: "addon" or "systemd-notify (…why)". */
  readonly via: string;
  /** Sends `state` (e.g. "READY=1\nSTATUS=serving"); resolves to the problem when it could not be sent. */
  notify(state: string): Promise<string | undefined>;
  /**
   * Sends WATCHDOG=1 every half $WATCHDOG_USEC while the event loop runs (systemd restarts
   * the unit when they stop); returns the stop function, or undefined when the unit has no
   * watchdog for this process.
   */
  watchdog(onProblem: (problem: string) => void): (() => void) | undefined;
}

export interface NotifierOptions {
  /** The addon, or why it is absent (default: loadAddon()). */
  addon?: NativeAddon | string;
  /** The fallback's command (default systemd-notify). */
  command?: string;
}

/** A notifier for $NOTIFY_SOCKET, or undefined when not started by systemd with Type=notify. */
export function systemdNotifier(env: NodeJS.ProcessEnv = process.env, options: NotifierOptions = {}): Notifier | undefined {
  const socket = env.NOTIFY_SOCKET;
  if (!socket) return undefined;
  const addon = options.addon ?? loadAddon(env);
  const command = options.command ?? "systemd-notify";
  const native = typeof addon === "string" || typeof addon.sdNotify !== "function" ? undefined : addon;
  const send = native
    ? (state: string) => {
        try {
          native.sdNotify(socket, state);
          return Promise.resolve(undefined);
        } catch (e) {
          return Promise.resolve(`sd_notify ${JSON.stringify(state)} to ${socket}: ${(e as Error).message}`);
        }
      }
    : (state: string) =>
        new Promise<string | undefined>((resolve) => {
          // One argument per assignment: systemd-notify joins them with newlines.
          execFile(command, [`--pid=${process.pid}`, ...state.split("\n")], { env, timeout: 5000 }, (err, _out, stderr) =>
            resolve(err ? `${command} ${state}: ${(stderr || err.message).trim()}` : undefined),
          );
        });
  return {
    via: native ? "addon" : `${command} (${typeof addon === "string" ? addon : "the addon has no sdNotify: rebuild it"})`,
    notify: send,
    watchdog(onProblem) {
      const usec = Number(env.WATCHDOG_USEC);
      // WATCHDOG_PID names the process the watchdog is for (sd_watchdog_enabled(3)).
      if (!(usec > 0) || (env.WATCHDOG_PID && Number(env.WATCHDOG_PID) !== process.pid)) return undefined;
      const timer = setInterval(() => void send("WATCHDOG=1").then((p) => p && onProblem(p)), Math.max(1, Math.floor(usec / 2000)));
      timer.unref();
      return () => clearInterval(timer);
    },
  };
}
