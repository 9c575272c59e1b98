// Live mapping events to the subscribed connections, with per-subscriber backpressure
// (pcpd-control/2: several events per frame, `events.mappings`). Two modes:
// - The full stream (events.subscribe without `latest`: `pcpctl events`, an SDK client):
//   every event. The shards stream them only while such a subscriber exists, copying the
//   records of every batch and posting them here.
// - Sampled (`latest: { count, intervalMs }`: the dashboard): every intervalMs this module
//   pulls the newest `count` matching records of each shard's event ring (a task that
//   reads the ring in place, PacketEngine.latestRecords) and sends them in one frame with
//   the interval's total. Nothing is copied per batch for it and the shards do not stream:
//   its cost is one bounded scan per shard and interval, whatever the mapping churn.
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
import { passes, type EventFilter } from "../engine/event-filter.js";
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

/** A sampled subscription's parameters (events.subscribe `latest`). */
export interface Latest {
  count: number;
  intervalMs: number;
}

interface Subscriber {
  filter: EventFilter;
  /** JSON texts of events waiting for this subscriber's next frame. */
  pending: string[];
}

interface Sampled {
  filter: EventFilter;
  latest: Latest;
  /** Per shard, the ring counter pulled up to (null: not yet known). */
  since: (number | null)[];
  timer: NodeJS.Timeout;
  /** A pull is under way (a slow shard: the next tick is skipped, not stacked). */
  pulling: boolean;
}

function compile(filter: MappingFilter, kinds?: string[]): EventFilter {
  return {
    // Port-block records (src/logging/) are not mapping events: subscribers never see them.
    kinds: kinds ? kinds.reduce((bits, k) => bits | (1 << KIND_CODES[k]), 0) : MAPPING_KINDS,
    protocol: filter.protocol,
    internal: filter.internalAddress === undefined ? undefined : toAddress16(filter.internalAddress),
    external: filter.externalAddress === undefined ? undefined : filter.externalAddress,
    kind: filter.kind,
  };
}

export class EventFanout {
  private readonly subscribers = new Map<Session, Subscriber>();
  private readonly sampled = new Map<Session, Sampled>();
  /** Per shard, the pool addresses as its event messages last named them. */
  private readonly poolNames: string[][] = [];
  private flushTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly server: Pick<RunningServer, "onEvents" | "setEvents" | "task" | "threads">,
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

  /**
   * Subscribes `s` (again: the subscription is replaced; events queued under the old one
   * may still arrive), to every event or, with `latest`, to a sample of them.
   */
  async subscribe(s: Session, filter: MappingFilter, kinds?: string[], latest?: Latest): Promise<void> {
    const compiled = compile(filter, kinds);
    this.stopSampling(s);
    if (latest) {
      const wasStreaming = this.subscribers.delete(s);
      const sampled: Sampled = { filter: compiled, latest, since: [], timer: setInterval(() => void this.pull(s, sampled), latest.intervalMs), pulling: false };
      this.sampled.set(s, sampled);
      await this.pull(s, sampled); // the counters to start from: the events after the answer
      if (wasStreaming) await this.stream();
      return;
    }
    const previous = this.subscribers.get(s);
    this.subscribers.set(s, { filter: compiled, pending: previous?.pending ?? [] });
    await this.stream();
  }

  /**
   * One pull of a sampled subscription: each shard's newest matching records since the last
   * pull, decoded (at most `count` in all, by engine time) and sent as one frame with the
   * interval's total. A frame its buffer cannot take is dropped and counted (the next one
   * carries newer events anyway).
   */
  private async pull(s: Session, sub: Sampled): Promise<void> {
    if (sub.pulling) return;
    sub.pulling = true;
    try {
      const shards = this.server.threads().length;
      const answers = await Promise.allSettled(
        Array.from({ length: shards }, (_, shard) =>
          this.server.task(shard, { kind: "latestEvents", since: sub.since[shard] ?? null, max: sub.latest.count, filter: sub.filter }),
        ),
      );
      if (this.sampled.get(s) !== sub) return; // unsubscribed meanwhile
      let total = 0;
      const events: { time: number; json: string }[] = [];
      answers.forEach((a, shard) => {
        if (a.status !== "fulfilled") return; // restarting: its counter is asked again next time
        const first = sub.since[shard] === undefined || sub.since[shard] === null;
        sub.since[shard] = a.value.head;
        if (first) return;
        total += a.value.total;
        const { bytes, pool } = a.value.records;
        const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        const name = (i: number) => pool?.[i] ?? `pool#${i}`;
        for (let at = 0; at + W.EVENT_SIZE <= bytes.length; at += W.EVENT_SIZE) {
          const e = readEvent(view, bytes, at, name);
          events.push({ time: e.time, json: noticeJson(shard, e) });
        }
      });
      if (total === 0) return;
      const kept = events.length > sub.latest.count ? events.sort((a, b) => a.time - b.time).slice(-sub.latest.count) : events;
      const frame = `${FRAME_HEAD}${kept.map((e) => e.json).join(",")}],"total":${total}}}`;
      if (s.link.bufferedAmount() > this.bufferBytes || !s.link.sendText(frame)) s.dropped += kept.length;
    } finally {
      sub.pulling = false;
    }
  }

  private stopSampling(s: Session): boolean {
    const sub = this.sampled.get(s);
    if (!sub) return false;
    clearInterval(sub.timer);
    return this.sampled.delete(s);
  }

  async unsubscribe(s: Session): Promise<void> {
    this.stopSampling(s);
    if (this.subscribers.delete(s)) await this.stream();
  }

  /** uWS's drain: the socket's queue shrank; a subscriber that lost events is told how many. */
  drained(s: Session): void {
    if (s.dropped > 0 && s.link.bufferedAmount() < this.bufferBytes / 2) {
      if (s.link.send({ jsonrpc: "2.0", method: NOTIFY_DROPPED, params: { dropped: s.dropped } })) s.dropped = 0;
    }
  }

  closed(s: Session): void {
    this.stopSampling(s);
    if (this.subscribers.delete(s)) void this.stream().catch(() => undefined);
  }

  clear(): void {
    this.subscribers.clear();
    for (const s of [...this.sampled.keys()]) this.stopSampling(s);
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
  }

  /** The shards stream their events while anyone subscribes to the full stream: those of the kinds some subscriber wants. */
  private stream(): Promise<void> {
    let kinds = 0;
    for (const sub of this.subscribers.values()) kinds = (kinds | sub.filter.kinds) >>> 0;
    return this.server.setEvents(this.subscribers.size > 0, kinds);
  }
}
