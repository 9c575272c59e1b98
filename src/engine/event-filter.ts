// A live-event subscription's filter compiled to checks on the raw event records (event
// layout, assembly/abi.ts): kind bit, protocol byte, flags, pool index, internal address
// bytes. Plain data, so it crosses to a shard in a task (the sampled subscriptions of
// src/control/fanout.ts are filtered where the ring is) and is checked on the main thread
// for the full stream, without decoding a record it rejects.
import * as W from "../wire.generated.js";

export interface EventFilter {
  /** Bit per EVENT_* kind code. */
  kinds: number;
  protocol?: number;
  /** 16-byte form of the internal address. */
  internal?: Uint8Array;
  /** The external address as text: compared with the shard's pool names. */
  external?: string;
  kind?: "dynamic" | "static" | "held";
}

/** Mapping kind from the flags byte, as mappingKind (src/shard/tasks.ts) but without a string per call. */
function kindMatches(flags: number, kind: EventFilter["kind"]): boolean {
  if (kind === "static") return (flags & W.MAPF_STATIC) !== 0;
  if (kind === "held") return (flags & W.MAPF_STATIC) === 0 && (flags & W.MAPF_HELD) !== 0;
  return (flags & (W.MAPF_STATIC | W.MAPF_HELD)) === 0;
}

/** Whether the record at `at` passes `f`; `pool` names the shard's pool indexes. */
export function passes(f: EventFilter, view: DataView, bytes: Uint8Array, at: number, pool: string[] | undefined): boolean {
  if ((f.kinds & (1 << view.getUint8(at + W.EV_KIND))) === 0) return false;
  if (f.protocol !== undefined && view.getUint8(at + W.EV_PROTOCOL) !== f.protocol) return false;
  if (f.kind !== undefined && !kindMatches(view.getUint8(at + W.EV_FLAGS), f.kind)) return false;
  if (f.internal) for (let i = 0; i < 16; i++) if (bytes[at + W.EV_INTERNAL_ADDR + i] !== f.internal[i]) return false;
  if (f.external !== undefined) {
    const index = view.getUint16(at + W.EV_POOL_INDEX, true);
    if ((pool?.[index] ?? `pool#${index}`) !== f.external) return false;
  }
  return true;
}

/** Every event kind (a kinds mask). */
export const ALL_KINDS = 0xffffffff;

/**
 * The records of `bytes` whose kind bit is in `kinds` (the same array when all are): what a
 * shard posts when its listeners want some kinds only (the mapping log: no refreshes, the
 * bulk under load, leave the packet thread).
 */
export function keepKinds(bytes: Uint8Array, kinds: number): Uint8Array {
  let n = 0;
  for (let at = 0; at < bytes.length; at += W.EVENT_SIZE) n += (kinds >>> bytes[at + W.EV_KIND]) & 1;
  if (n * W.EVENT_SIZE === bytes.length) return bytes;
  const out = new Uint8Array(n * W.EVENT_SIZE);
  for (let at = 0, o = 0; at < bytes.length; at += W.EVENT_SIZE) {
    if (((kinds >>> bytes[at + W.EV_KIND]) & 1) === 0) continue;
    out.set(bytes.subarray(at, at + W.EVENT_SIZE), o);
    o += W.EVENT_SIZE;
  }
  return out;
}
