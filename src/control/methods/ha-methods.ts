// High availability (docs/ha.md): ha.status shows this node's view of every shard group
// (role, lease holder and term, lease left, replication lag per shard, last takeover);
// ha.switchover hands a group this node is active for to a standby, planned (no request
// lost: the shards stop answering and publish every pending record before the lease is
// released). Both read the server's HaController (src/ha/types.ts); without ha.enabled
// there is none and they answer NOT_ENABLED. The controller's own failures are HaErrors,
// mapped to JSON-RPC codes by the dispatcher (rpcCodeOf).
import { RpcError } from "../../errors.js";
import type { HaController, HaStatus } from "../../ha/types.js";
import type { RunningServer } from "../../server/server.js";
import { RpcErrors, type HaHealth } from "../protocol.js";
import type { Handlers, MethodContext } from "./context.js";

type HaMethods = Pick<Handlers, "ha.status" | "ha.switchover">;

function controller(server: RunningServer): HaController {
  if (!server.ha) throw new RpcError(RpcErrors.NOT_ENABLED, "ha.enabled is false: this node runs alone (no shard groups)");
  return server.ha;
}

export function haMethods({ server }: MethodContext): HaMethods {
  return {
    "ha.status": async () => controller(server).status(),
    "ha.switchover": async (p) => {
      const ha = controller(server);
      // Every node has the same groups (docs/ha.md): a name not among them is the caller's
      // mistake, answered before anything is asked of the cluster.
      const { groups, node } = server.config().ha;
      if (!groups.some((g) => g.name === p.group))
        throw new RpcError(RpcErrors.INVALID_PARAMS, `group: no group ${JSON.stringify(p.group)} (ha.groups: ${groups.map((g) => g.name).join(", ")})`);
      if (p.to === node) throw new RpcError(RpcErrors.INVALID_PARAMS, `to: ${JSON.stringify(p.to)} is this node; name a standby (or none)`);
      return ha.switchover(p.group, p.to);
    },
  };
}

/**
 * The HA part of the health. A group is a problem when it is degraded (its lease cannot be
 * renewed: it serves only until its own view of the lease runs out, then stops), or when
 * NATS is lost while this node serves a group (the next renewal will fail). A standby
 * that lost NATS is reported too: it can neither follow the stream nor take over.
 */
export function haHealth(status: HaStatus): HaHealth {
  const problems: string[] = [];
  const serving = status.groups.filter((g) => g.role === "active" || g.role === "degraded" || g.role === "taking-over");
  for (const g of status.groups) {
    if (g.role === "degraded") problems.push(`ha group ${g.name} degraded: lease not renewed, serving for ${g.leaseRemainingMs} ms more at most`);
  }
  if (status.nats !== "connected") {
    if (serving.length > 0) problems.push(`ha: NATS ${status.nats} while active for ${serving.map((g) => g.name).join(", ")}`);
    else if (status.groups.length > 0)
      problems.push(`ha: NATS ${status.nats}: the standby groups (${status.groups.map((g) => g.name).join(", ")}) cannot follow or take over`);
  }
  return { nats: status.nats, groups: status.groups.map((g) => ({ name: g.name, role: g.role, holder: g.holder })), problems };
}

/** The HA health of a server (null without HA); a controller that cannot say is itself a problem. */
export async function serverHaHealth(server: RunningServer): Promise<HaHealth | null> {
  if (!server.ha) return null;
  try {
    return haHealth(await server.ha.status());
  } catch (e) {
    return { nats: "unknown", groups: [], problems: [`ha: status unavailable: ${(e as Error).message}`] };
  }
}

/** /healthz's HA lines after the verdict: the NATS link, then each group's role here and its lease holder. */
export function haHealthLines(h: HaHealth): string {
  const lines = [`ha: nats ${h.nats}`, ...h.groups.map((g) => `ha group ${g.name}: ${g.role}, lease holder ${g.holder ?? "none"}`)];
  return lines.map((l) => `${l}\n`).join("");
}
