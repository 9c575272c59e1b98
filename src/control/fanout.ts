// Live mapping events to the subscribed connections, with per-subscriber backpressure
// (pcpd-control/2: several events per frame, `events.mappings`).
// Events are decoded only while someone subscribes (the shards stream them only then).
// The cost of a subscriber on the main thread is kept per batch, not per event: each
// subscriber's filter is checked on the raw records (kind byte, protocol byte, flags,
// pool index, internal address bytes), a record is turned into its JSON text once however
// many subscribers select it, and a subscriber gets one frame per FRAME_EVENTS events (or
// per flush, FLUSH_MS after the first event waiting), not one frame per event.
// A subscriber whose unsent bytes exceed eventBufferBytes loses events, counted; once it
// has drained below half of that it gets one events.dropped notice with the count, then
// events again. Memory per subscriber is so bounded by the buffer limit (plus one frame).
import * as W from "../wire.generated.js";
import { readEvent, type MappingRecords } from "../engine/packet-engine.js";
import { toAddress16 } from "../net/address.js";
import type { RunningServer } from "../server/server.js";
import { NOTIFY_DROPPED, NOTIFY_EVENTS, type MappingFilter } from "./protocol.js";
import type { Session } from "./session.js";
import { noticeJson } from "./views.js";

/** Events per frame at most; a frame is sent as soon as it holds this many. */
export const FRAME_EVENTS = 256;
/** How long an event may wait for others to share its frame. */
export const FLUSH_MS = 20;

const KIND_CODES: Record<string, number> = {
  create: W.EVENT_CREATE,
  refresh: W.EVENT_REFRESH,
  delete: W.EVENT_DELETE,
  expire: W.EVENT_EXPIRE,
  release: W.EVENT_RELEASE,
  update: W.EVENT_UPDATE,
};
/** Every mapping event kind (the default: no port-block records). */
const MAPPING_KINDS = Object.values(KIND_CODES).reduce((bits, k) => bits | (1 << k), 0);
const FRAME_HEAD = `{"jsonrpc":"2.0","method":"${NOTIFY_EVENTS}","params":{"events":[`;
const FRAME_TAIL = "]}}";

/** A subscription compiled to checks on the raw event records. */
interface RawFilter {
  /** Bit per EVENT_* kind code; all set when no kinds were given. */
  kinds: number;
  protocol?: number;
  /** 16-byte form of the internal address. */
  internal?: Uint8Array;
  /** The external address as text: compared with the shard's pool names. */
  external?: string;
  kind?: "dynamic" | "static" | "held";
}

interface Subscriber {
  filter: RawFilter;
  /** JSON texts of events waiting for this subscriber's next frame. */
  pending: string[];
}

function compile(filter: MappingFilter, kinds?: string[]): RawFilter {
  return {
    // Port-block records (src/logging/) are not mapping events: subscribers never see them.
    kinds: kinds ? kinds.reduce((bits, k) => bits | (1 << KIND_CODES[k]), 0) : MAPPING_KINDS,
    protocol: filter.protocol,
    internal: filter.internalAddress === undefined ? undefined : toAddress16(filter.internalAddress),
    external: filter.externalAddress === undefined ? undefined : filter.externalAddress,
    kind: filter.kind,
  };
}

/** Mapping kind from the flags byte, as mappingKind (src/shard/tasks.ts) but without a string per call. */
function kindMatches(flags: number, kind: RawFilter["kind"]): boolean {
  if (kind === "static") return (flags & W.MAPF_STATIC) !== 0;
  if (kind === "held") return (flags & W.MAPF_STATIC) === 0 && (flags & W.MAPF_HELD) !== 0;
  return (flags & (W.MAPF_STATIC | W.MAPF_HELD)) === 0;
}

/** Whether the record at `at` passes `f`; `pool` names the shard's pool indexes. */
function passes(f: RawFilter, view: DataView, bytes: Uint8Array, at: number, pool: string[] | undefined): boolean {
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

export class EventFanout {
  private readonly subscribers = new Map<Session, Subscriber>();
  /** Per shard, the pool addresses as its event messages last named them. */
  private readonly poolNames: string[][] = [];
  private flushTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly server: Pick<RunningServer, "onEvents" | "setEvents">,
    private readonly bufferBytes: number,
  ) {
    server.onEvents((m) => {
      if (m.events.pool) this.poolNames[m.shard] = m.events.pool;
      if (this.subscribers.size > 0) this.take(m.shard, m.events);
    });
  }

  /** One shard message: every record checked per subscriber on its bytes, encoded at most once. */
  private take(shard: number, records: MappingRecords): void {
    const { bytes } = records;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const pool = this.poolNames[shard];
    const name = (i: number) => pool?.[i] ?? `pool#${i}`;
    for (let at = 0; at + W.EVENT_SIZE <= bytes.length; at += W.EVENT_SIZE) {
      let json: string | undefined;
      for (const [session, sub] of this.subscribers) {
        if (!passes(sub.filter, view, bytes, at, pool)) continue;
        json ??= noticeJson(shard, readEvent(view, bytes, at, name));
        sub.pending.push(json);
        if (sub.pending.length >= FRAME_EVENTS) this.send(session, sub);
      }
    }
    this.flushTimer ??= setTimeout(() => this.flush(), FLUSH_MS);
  }

  /** Sends every subscriber's waiting events. */
  private flush(): void {
    this.flushTimer = undefined;
    for (const [session, sub] of this.subscribers) if (sub.pending.length > 0) this.send(session, sub);
  }

  /** One frame of `sub`'s waiting events, or all of them counted as dropped when its buffer is full. */
  private send(s: Session, sub: Subscriber): void {
    const n = sub.pending.length;
    const frame = FRAME_HEAD + sub.pending.join(",") + FRAME_TAIL;
    sub.pending = [];
    if (s.link.bufferedAmount() > this.bufferBytes || !s.link.sendText(frame)) s.dropped += n; // told in one events.dropped notice once it drains
  }

  /** Subscribes `s` (again: the filter is replaced; events queued under the old one may still arrive). */
  async subscribe(s: Session, filter: MappingFilter, kinds?: string[]): Promise<void> {
    const previous = this.subscribers.get(s);
    this.subscribers.set(s, { filter: compile(filter, kinds), pending: previous?.pending ?? [] });
    await this.stream();
  }

  async unsubscribe(s: Session): Promise<void> {
    this.subscribers.delete(s);
    await this.stream();
  }

  /** uWS's drain: the socket's queue shrank; a subscriber that lost events is told how many. */
  drained(s: Session): void {
    if (s.dropped > 0 && s.link.bufferedAmount() < this.bufferBytes / 2) {
      if (s.link.send({ jsonrpc: "2.0", method: NOTIFY_DROPPED, params: { dropped: s.dropped } })) s.dropped = 0;
    }
  }

  closed(s: Session): void {
    if (this.subscribers.delete(s)) void this.stream().catch(() => undefined);
  }

  clear(): void {
    this.subscribers.clear();
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
  }

  /** The shards stream their events while anyone subscribes. */
  private stream(): Promise<void> {
    return this.server.setEvents(this.subscribers.size > 0);
  }
}
