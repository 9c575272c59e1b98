// The claim and release hooks (ha.hooks): commands that move a group's service addresses
// to this node and away from it (`ip addr add` in the tests; keepalived, a routing daemon
// or the router's API in production). Run as argv with execFile, never through a shell: a
// placeholder's value can hold nothing a shell would interpret. Placeholders: {address},
// {prefix} (the address as a host prefix, /32 or /128), {group}, {node}.
import { execFile } from "node:child_process";
import { isIPv6 } from "node:net";
import { HaHookError } from "../errors.js";

export interface HookContext {
  address: string;
  group: string;
  node: string;
}

/** `argv` with every placeholder replaced (anywhere in an argument, as often as it occurs). */
export function hookArgv(argv: string[], c: HookContext): string[] {
  const values: Record<string, string> = {
    address: c.address,
    prefix: `${c.address}/${isIPv6(c.address) ? 128 : 32}`,
    group: c.group,
    node: c.node,
  };
  return argv.map((a) => a.replace(/\{(address|prefix|group|node)\}/g, (_, k: string) => values[k]));
}

/**
 * Runs one hook for one address; resolves when it exits 0. An empty argv runs nothing.
 * Rejects with HaHookError (its stderr, exit status or signal) when it fails, cannot be
 * started, or is still running after `timeoutMs` (then it is killed).
 */
export function runHook(argv: string[], c: HookContext, timeoutMs: number): Promise<void> {
  if (argv.length === 0) return Promise.resolve();
  const full = hookArgv(argv, c);
  return new Promise((resolve, reject) => {
    execFile(full[0], full.slice(1), { timeout: timeoutMs, killSignal: "SIGKILL", maxBuffer: 64 * 1024 }, (error, _stdout, stderr) => {
      if (!error) return resolve();
      const e = error as NodeJS.ErrnoException & { killed?: boolean; signal?: NodeJS.Signals | null; code?: number | string };
      const why =
        e.killed && e.signal === "SIGKILL"
          ? `did not exit within ${timeoutMs} ms`
          : typeof e.code === "number"
            ? `exited ${e.code}`
            : e.signal
              ? `ended by ${e.signal}`
              : `could not be run (${e.code ?? e.message})`;
      const err = String(stderr).trim();
      reject(new HaHookError(full, err, `hook ${full.join(" ")} ${why}${err ? `: ${err}` : ""}`, { cause: error }));
    });
  });
}

/**
 * Runs a hook for each address in turn (claim order = the group's order). With `all`
 * every address is tried even after a failure (a release must not leave any address
 * behind); the first failure is rethrown at the end.
 */
export async function runHookEach(argv: string[], contexts: HookContext[], timeoutMs: number, all: boolean): Promise<void> {
  let first: unknown;
  for (const c of contexts) {
    try {
      await runHook(argv, c, timeoutMs);
    } catch (e) {
      if (!all) throw e;
      first ??= e;
    }
  }
  if (first !== undefined) throw first;
}
