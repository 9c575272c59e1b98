// PCP authentication (RFC 7652, docs/auth.md): auth.list shows every worker's security
// associations and the counters; auth.terminate ends one (the server sends
// SESSION_TERMINATED to its client). Without authentication on for any source: NOT_ENABLED.
import { RpcError } from "../../errors.js";
import { authOn } from "../../auth/pa-setup.js";
import { zeroCounters, type AuthCounters } from "../../auth/pa-types.js";
import type { RunningServer } from "../../server/server.js";
import { RpcErrors } from "../protocol.js";
import type { Handlers, MethodContext } from "./context.js";

type AuthMethods = Pick<Handlers, "auth.list" | "auth.terminate">;

function enabled(server: RunningServer): void {
  if (!authOn(server.config())) throw new RpcError(RpcErrors.NOT_ENABLED, "authentication is off for every source (auth.*)");
}

/** Every worker's counters summed. */
export function sumCounters(all: (AuthCounters | null)[]): AuthCounters {
  const sum = zeroCounters();
  for (const a of all) {
    if (!a) continue;
    for (const k of ["sessions", "established", "successes", "reauthentications", "tagFailures", "replays", "unknownSessions", "terminations"] as const)
      sum[k] += a[k];
    for (const [r, n] of Object.entries(a.failures)) sum.failures[r] = (sum.failures[r] ?? 0) + n;
  }
  return sum;
}

export function authMethods({ server }: MethodContext): AuthMethods {
  return {
    "auth.list": async () => {
      enabled(server);
      const lists = await server.everyShard({ kind: "authList" });
      const counters = await server.everyShard({ kind: "authCounters" });
      return { sessions: lists.flatMap((l, shard) => l.map((s) => ({ shard, ...s }))), counters: sumCounters(counters) };
    },
    "auth.terminate": async ({ sessionId }) => {
      enabled(server);
      const results = await server.everyShard({ kind: "authTerminate", sessionId });
      return { terminated: results.some(Boolean) };
    },
  };
}
