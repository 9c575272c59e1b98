// Configurations of the engines the tests build. They go through the schema, so every
// value a test does not name is the schema's default (the one home of defaults), over a
// small base that keeps the engine tests' long-standing setting: one pool address, only
// the core options processed (THIRD_PARTY, PREFER_FAILURE, FILTER), persistence off (no
// CHECKPOINT_REQUIRED; refreshes coalesced, as without a journal) and description and
// requester tables of 10,000 (a fixture, not a default: half the schema's, which keeps
// the hundreds of engines the property tests build as quick to set up as before).
import type { z } from "zod";
import { parseConfig, type Config, type ConfigSchema } from "../../src/config/schema.js";
import type { HostValues } from "../../src/config/region.js";
import { PacketEngine, type Build } from "../../src/engine/packet-engine.js";

/** Objects optional down to the leaves; arrays and scalars are replaced whole. */
export type DeepPartial<T> = T extends readonly unknown[] ? T : T extends object ? { [K in keyof T]?: DeepPartial<T[K]> } : T;

/** What a test may say: the document's input type, every object optional down to the leaves. */
export type ConfigInput = DeepPartial<z.input<typeof ConfigSchema>>;

export const TEST_BASE: ConfigInput = {
  pool: { addresses: ["203.0.113.1"] },
  pcp: { description: false, portSet: { enabled: false }, checkpointRequired: false },
  persistence: { enabled: false },
  capacity: { descriptions: 10_000, requesters: 10_000 },
};

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** `over` merged into `base`: objects key by key, everything else replaced. */
export function merge<T>(base: T, over: DeepPartial<T> | undefined): T {
  if (!isObject(base) || !isObject(over)) return (over === undefined ? base : over) as T;
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) if (v !== undefined) out[k] = merge(out[k], v as never);
  return out as T;
}

/** The base with `over`, validated by the schema (defaults filled in). */
export function engineConfig(over: ConfigInput = {}): Config {
  return parseConfig(merge(TEST_BASE, over));
}

/** `c` with `over`, NOT validated: for the engine's own checks of values the schema refuses. */
export function unchecked(c: Config, over: ConfigInput): Config {
  return merge<Config>(c, over as DeepPartial<Config>);
}

/** An engine with its tables: built with `c` and initialised at `now`. */
export function engineFrom(c: Config, now: number, host: Omit<HostValues, "start"> = {}, build: Build = "debug"): PacketEngine {
  const e = new PacketEngine(build, c);
  e.initEngine(c, now, host);
  return e;
}

/** A codec-only engine (no tables) with the base configuration and `over`. */
export function codecEngine(over: ConfigInput = {}, build: Build = "debug"): PacketEngine {
  return new PacketEngine(build, engineConfig(over));
}
