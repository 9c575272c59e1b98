// The shard's event stream to the main thread (./shard.ts): the mapping event records of
// the kinds the main thread's listeners want (src/engine/event-filter.ts), with the
// THIRD_PARTY_IDs of their realms and the pool's names, gathered and posted in batches.
import type { PacketEngine, MappingRecords } from "../engine/packet-engine.js";
import { ALL_KINDS, keepKinds } from "../engine/event-filter.js";
import * as W from "../wire.generated.js";
import type { EventsMessage } from "./tasks.js";

/** Event records are gathered for at most this long before one post to the main thread… */
const EVENTS_POST_MS = 10;
/** …or until this many bytes (1365 events) are waiting. */
const EVENTS_POST_BYTES = 64 * 1024;

export class EventOutbox {
  /** Whether the main thread wants events (a listener, or logging). */
  on = false;
  /** EVENT_* kinds the main thread's listeners want (a bit each): the others are not copied. */
  private kinds = ALL_KINDS;
  /** Pool entries the main thread has been told about (with the events). */
  private poolPosted = 0;
  /**
   * Event records waiting to be posted: batches are gathered for up to EVENTS_POST_MS (or
   * EVENTS_POST_BYTES) and posted as one message, so that a subscriber costs the packet
   * thread one post per interval, not one per UDP batch.
   */
  private chunks: Uint8Array[] = [];
  private bytes = 0;
  /** THIRD_PARTY_IDs of the gathered records in a realm, by record index. */
  private ids: Record<number, string> | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly shard: number,
    /** The shard's engine (an HA standby's is replaced). */
    private readonly engine: () => PacketEngine,
    private readonly post: (m: EventsMessage) => void,
  ) {}

  /** Streams events of `kinds` (on), or none: what was gathered is then dropped (the main thread would drop it too). */
  set(on: boolean, kinds: number): void {
    this.on = on;
    this.kinds = kinds;
    if (!on) {
      this.stop();
      this.chunks = [];
      this.bytes = 0;
      this.ids = undefined;
    }
  }

  /** A batch's records, kept when wanted: posted once enough waits, or after EVENTS_POST_MS. */
  gather(events: MappingRecords): void {
    if (!this.on) return;
    const engine = this.engine();
    const bytes = keepKinds(events.bytes, this.kinds);
    if (bytes.length === 0) return;
    // The THIRD_PARTY_ID of the records in a realm, looked up now (the realm may be gone by
    // the post): the log names the subscriber by it (src/logging/).
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const first = this.bytes / W.EVENT_SIZE;
    for (let i = 0, at = 0; at + W.EVENT_SIZE <= bytes.length; i++, at += W.EVENT_SIZE) {
      const realm = view.getUint32(at + W.EV_REALM, true);
      const id = realm === 0 ? undefined : engine.realmIdentifier(realm);
      if (id !== undefined) (this.ids ??= {})[first + i] = id;
    }
    this.chunks.push(bytes);
    this.bytes += bytes.length;
    if (this.bytes >= EVENTS_POST_BYTES) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), EVENTS_POST_MS);
  }

  /** The gathered event records as one message (with the pool's names when they changed). */
  flush(): void {
    this.stop();
    if (this.bytes === 0) return;
    const bytes = this.chunks.length === 1 ? this.chunks[0] : new Uint8Array(this.bytes);
    if (this.chunks.length > 1) {
      let at = 0;
      for (const c of this.chunks) {
        bytes.set(c, at);
        at += c.length;
      }
    }
    this.chunks = [];
    this.bytes = 0;
    const events: MappingRecords = { bytes };
    if (this.ids) events.thirdPartyIds = this.ids;
    this.ids = undefined;
    const pool = this.engine().poolList();
    if (pool.length !== this.poolPosted) {
      events.pool = pool;
      this.poolPosted = pool.length;
    }
    this.post({ pcpdEvents: true, shard: this.shard, events } satisfies EventsMessage);
  }

  /** No post pending (what is gathered stays). */
  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
