// The main thread's NATS connection as HA sees it: connected, reconnecting (the client
// retries servers for ever, src/replication/nats.ts) or closed. Followed from the
// connection's status() events; the lease keepers never take over unless connected.
import type { NatsConnection } from "@nats-io/transport-node";
import type { HaStatus } from "./types.js";

export class ConnectionState {
  private state: HaStatus["nats"] = "connected";

  /** @param onChange called after each change of state (not for pings and cluster updates). */
  constructor(
    private readonly nc: NatsConnection,
    private readonly onChange: (state: HaStatus["nats"]) => void = () => undefined,
  ) {
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
    this.onChange(state);
  }

  get(): HaStatus["nats"] {
    return this.nc.isClosed() ? "disconnected" : this.state;
  }

  connected(): boolean {
    return this.get() === "connected";
  }
}
