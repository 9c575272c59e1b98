// Live mapping events to the subscribed connections, with per-subscriber backpressure.
// Events are decoded only while someone subscribes (the shards stream them only then).
// A subscriber whose unsent bytes exceed eventBufferBytes loses events, counted; once it
// has drained below half of that it gets one events.dropped notice with the count, then
// events again. Memory per subscriber is so bounded by the buffer limit.
import { BLOCK_KINDS, decodeRecords } from "../engine/packet-engine.js";
import type { RunningServer } from "../server/server.js";
import { selects } from "../shard/tasks.js";
import { NOTIFY_DROPPED, NOTIFY_EVENTS, type MappingFilter } from "./protocol.js";
import type { Session } from "./session.js";
import { toNotice } from "./views.js";

export class EventFanout {
  private readonly subscribers = new Set<Session>();
  /** Per shard, the pool addresses as its event messages last named them. */
  private readonly poolNames: string[][] = [];

  constructor(
    private readonly server: Pick<RunningServer, "onEvents" | "setEvents">,
    private readonly bufferBytes: number,
  ) {
    server.onEvents((m) => {
      if (m.events.pool) this.poolNames[m.shard] = m.events.pool;
      if (this.subscribers.size === 0) return;
      const events = decodeRecords(m.events, this.poolNames[m.shard]);
      for (const s of this.subscribers) {
        const sub = s.subscription!;
        // Port-block records (src/logging/) are not mapping events: subscribers never see them.
        const list = events.filter((e) => (sub.kinds ? sub.kinds.has(e.kind) : !BLOCK_KINDS.has(e.kind)) && selects(sub.filter, e));
        // Checked per event: one batch (a mass expiry, a renumbering chunk) can be large.
        for (let i = 0; i < list.length; i++) {
          if (s.link.bufferedAmount() > bufferBytes || !s.link.send({ jsonrpc: "2.0", method: NOTIFY_EVENTS, params: toNotice(m.shard, list[i]) })) {
            s.dropped += list.length - i; // told in one events.dropped notice once it drains
            break;
          }
        }
      }
    });
  }

  /** Subscribes `s` (again: the filter is replaced; events queued under the old one may still arrive). */
  async subscribe(s: Session, filter: MappingFilter, kinds?: string[]): Promise<void> {
    s.subscription = { filter, kinds: kinds ? new Set(kinds) : undefined };
    this.subscribers.add(s);
    await this.stream();
  }

  async unsubscribe(s: Session): Promise<void> {
    s.subscription = undefined;
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
  }

  /** The shards stream their events while anyone subscribes. */
  private stream(): Promise<void> {
    return this.server.setEvents(this.subscribers.size > 0);
  }
}
