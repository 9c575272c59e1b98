// A NATS KV as seen over a connection that is lost under the next update(): "unsent" never
// reaches the server, "unanswered" is applied but its answer is lost. Either way the caller
// sees a timeout after its timeoutMs, as the NATS client reports a request that was in
// flight on a lost connection (it does not reject requests at a disconnect).
import type { KV } from "@nats-io/kv";
import { systemTime } from "../../src/core/clock.js";

export interface LostUpdate {
  /** When the caller called update() (after its own send time). */
  at: bigint;
  /** Settles when the KV has applied it ("unanswered"), at once for "unsent". */
  applied: Promise<unknown>;
  /** The caller has seen its timeout (and its handler has run). */
  settled: boolean;
}

export interface LossyKv {
  kv: KV;
  /** What happens to the next update(); back to "none" once it has. */
  next: { mode: "none" | "unsent" | "unanswered" };
  lost: LostUpdate[];
}

export function lossyKv(kv: KV): LossyKv {
  const next: LossyKv["next"] = { mode: "none" };
  const lost: LostUpdate[] = [];
  const update: KV["update"] = (key, data, version, timeout) => {
    const mode = next.mode;
    if (mode === "none") return kv.update(key, data, version, timeout);
    next.mode = "none";
    const entry: LostUpdate = {
      at: systemTime.monotonicNs(),
      applied: mode === "unanswered" ? kv.update(key, data, version, timeout) : Promise.resolve(),
      settled: false,
    };
    lost.push(entry);
    return new Promise((_, reject) =>
      setTimeout(() => {
        reject(new Error("TIMEOUT"));
        setImmediate(() => (entry.settled = true));
      }, timeout),
    );
  };
  return { kv: Object.assign(Object.create(kv) as KV, { update }), next, lost };
}
