// Prometheus metrics of PCP authentication (RFC 7652, docs/auth.md), from each worker's
// authenticator counters (the authCounters task). Registered on the first update, so a
// server with authentication off exports none. Counters follow the engine counters' rule
// (metrics.ts): the increase since the last scrape, or the whole value when a worker's
// count went down (its thread was replaced).
import { Counter, Gauge, type Registry } from "prom-client";
import type { AuthCounters } from "../auth/pa-types.js";

type Scalar = "successes" | "reauthentications" | "tagFailures" | "replays" | "unknownSessions" | "terminations";

export class AuthMetrics {
  private readonly sessions: Gauge<string>;
  private readonly established: Gauge<string>;
  private readonly counters: [Scalar, Counter<string>][];
  private readonly failures: Counter<string>;
  private readonly last = new Map<string, number>();

  constructor(registry: Registry) {
    const registers = [registry];
    const counter = (name: string, help: string, labelNames = ["shard"]) => new Counter({ name, help, labelNames, registers });
    this.sessions = new Gauge({
      name: "pcpd_auth_sessions",
      help: "PCP security associations held (being authenticated included).",
      labelNames: ["shard"],
      registers,
    });
    this.established = new Gauge({
      name: "pcpd_auth_established_sessions",
      help: "PCP security associations open (or re-authenticating).",
      labelNames: ["shard"],
      registers,
    });
    this.counters = [
      ["successes", counter("pcpd_auth_successes_total", "Authentications that established a session.")],
      ["reauthentications", counter("pcpd_auth_reauthentications_total", "Re-authentications that renewed a session's key.")],
      ["tagFailures", counter("pcpd_auth_tag_failures_total", "Tagged messages dropped: bad MAC, wrong key or wrong client.")],
      ["replays", counter("pcpd_auth_replays_total", "Tagged requests dropped for a sequence number below the last one accepted.")],
      ["unknownSessions", counter("pcpd_auth_unknown_sessions_total", "Messages naming a session this server does not hold (UNKNOWN_SESSION_ID).")],
      ["terminations", counter("pcpd_auth_terminations_total", "Sessions terminated (client, operator or expiry).")],
    ];
    this.failures = counter(
      "pcpd_auth_failures_total",
      "Failed or abandoned authentications by reason (reject, unreachable, timeout, downgrade, algorithm, capacity, client, expired).",
      ["shard", "reason"],
    );
  }

  private add(c: Counter<string>, labels: Record<string, string>, key: string, value: number): void {
    const before = this.last.get(key) ?? 0;
    c.inc(labels, value >= before ? value - before : value);
    this.last.set(key, value);
  }

  update(perShard: (AuthCounters | null)[]): void {
    perShard.forEach((a, i) => {
      if (!a) return;
      const shard = String(i);
      this.sessions.set({ shard }, a.sessions);
      this.established.set({ shard }, a.established);
      for (const [key, c] of this.counters) this.add(c, { shard }, `${shard}:${key}`, a[key]);
      for (const [reason, n] of Object.entries(a.failures)) this.add(this.failures, { shard, reason }, `${shard}:failure:${reason}`, n);
    });
  }
}
