// The main thread's NATS connection as HA sees it: connected, reconnecting (the client
// retries servers for ever, src/replication/nats.ts) or closed. Followed from the
// connection's status() events; the lease keepers never take over unless connected.
import type { NatsConnection } from "@nats-io/transport-node";
import type { KV } from "@nats-io/kv";
import type { Logger } from "pino";
import type { Config } from "../config/schema.js";
import type { ShardGroup } from "../config/checks.js";
import { connectNats, ensureGroupStream, leaseBucket } from "../replication/nats.js";
import type { HaStatus } from "./types.js";

export class ConnectionState {
  private state: HaStatus["nats"] = "connected";
  private readonly listeners: ((state: HaStatus["nats"]) => void)[] = [];

  /** @param onChange called after each change of state (not for pings and cluster updates). */
  constructor(
    private readonly nc: NatsConnection,
    onChange?: (state: HaStatus["nats"]) => void,
  ) {
    if (onChange) this.listeners.push(onChange);
    void this.follow();
    void nc.closed().then(() => this.set("disconnected"));
  }

  private async follow(): Promise<void> {
    for await (const s of this.nc.status()) {
      if (s.type === "disconnect" || s.type === "reconnecting" || s.type === "staleConnection") this.set("reconnecting");
      else if (s.type === "reconnect") this.set("connected");
      else if (s.type === "close") this.set("disconnected");
    }
  }

  private set(state: HaStatus["nats"]): void {
    if (this.state === "disconnected" || this.state === state) return;
    this.state = state;
    for (const listener of this.listeners) listener(state);
  }

  /** Calls `listener` after each later change of state, as the constructor's `onChange`. */
  listen(listener: (state: HaStatus["nats"]) => void): void {
    this.listeners.push(listener);
  }

  get(): HaStatus["nats"] {
    return this.nc.isClosed() ? "disconnected" : this.state;
  }

  connected(): boolean {
    return this.get() === "connected";
  }

  /** The name of the server the connection is on, while connected. */
  server(): string | undefined {
    return this.connected() ? this.nc.info?.server_name : undefined;
  }
}

/**
 * The main thread's NATS connection with the cluster's objects made (each group's stream,
 * the lease bucket). Retried for up to `patienceMs`: NATS may be starting with this node,
 * or electing a JetStream leader; a node that cannot reach it then fails to start (it
 * could never take a group over).
 */
export async function connectHa(c: Config, groups: ShardGroup[], log: Logger, patienceMs = 30_000): Promise<{ nc: NatsConnection; kv: KV }> {
  const deadline = performance.now() + patienceMs;
  for (let attempt = 1; ; attempt++) {
    let nc: NatsConnection | undefined;
    try {
      nc = await connectNats(c.ha.nats, `${c.ha.node}-main`);
      for (const g of groups) await ensureGroupStream(nc, c.ha.cluster, g.name, c.ha.replicas);
      const kv = await leaseBucket(nc, c.ha.cluster, c.ha.replicas);
      // A bucket just made (the cluster's first start) answers nothing until its stream has
      // elected a leader: read it here, within the patience, or the lease keepers' first
      // read times out and the server fails to start.
      for (const g of groups) await kv.get(g.name);
      return { nc, kv };
    } catch (e) {
      await nc?.close().catch(() => undefined);
      if (performance.now() > deadline) throw e;
      log.warn({ attempt, error: (e as Error).message }, "ha: NATS not ready at start; retrying");
      await new Promise((resolve) => setTimeout(resolve, Math.min(2000, 250 * attempt)));
    }
  }
}
