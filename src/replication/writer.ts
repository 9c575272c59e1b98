// The active shard's side of replication (docs/replication.md): the records of every batch
// (the journal's records) are appended here and published to the shard's subject once per
// group commit (ha.commitIntervalMs), one publish in flight, each expecting the subject's
// last sequence to be the one this writer last had acknowledged. A refusal ("wrong last
// sequence", JetStream API error 10071) means another node published since — a standby
// fenced the subject when it took over — and this writer stops for good (onFenced). Any
// other failure (timeout, no responders while a stream leader is elected, a reconnect)
// keeps the records and retries the same message, with the same de-duplication id, so a
// publish whose ack was lost is recognised instead of being taken for a fence.
//
// Cost: one message per commit interval per shard however many requests it carried (at
// ~100k req/s with coalesced refreshes, a few hundred KiB every 20 ms), headers of six
// short strings, the body one copy of the records.
//
// Compaction: snapshot-begin, the table in snapshot messages taken between batches
// (engine.persistTable, interleaved in order with the records messages), snapshot-end;
// once snapshot-end is acknowledged everything on the subject before snapshot-begin is
// purged — a follower starting from the subject's first message then reads snapshot-begin,
// every chunk and every change since, which is the whole table.
import { JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream";
import type { PacketEngine } from "../engine/packet-engine.js";
import { ErrorCodes, PcpdError } from "../errors.js";
import type { ShardSubject } from "./nats.js";
import { countRecords, encodeBodies, encodeHeaders, type MessageKind, type MessageMeta } from "./messages.js";

/** Record ids visited per snapshot chunk (one persistTable call between batches). */
const SNAPSHOT_STEP = 8192;
/** Snapshot messages waiting for their ack before the next chunk is taken (bounds memory at ~this × a message). */
const SNAPSHOT_WINDOW = 8;
/** Room kept under the server's max_payload for the headers. */
const HEADER_ROOM = 1024;
/** A failed publish is retried after this long at least (doubling up to RETRY_MAX_MS). */
const RETRY_MS = 50;
const RETRY_MAX_MS = 1000;

export interface WriterOptions extends ShardSubject {
  node: string;
  /** The lease term this node holds (written on every message). */
  term: number;
  commitIntervalMs: number;
  /** Timeout of one publish (ha.nats.timeoutMs). */
  timeoutMs: number;
  /** The server's max_payload (bytes): message bodies stay under it. */
  maxPayload: number;
  epoch: () => number;
  wallMs: () => number;
  /** Another node wrote to the subject: this writer stopped; the shard must stop answering. */
  onFenced: (error: string) => void;
  /** A publish failed and will be retried (for the log; not a fence). */
  onRetry?: (error: string) => void;
  /** Where snapshots come from (compaction). */
  source?: { engine: () => PacketEngine; wallOffset: number };
  /** Compaction: at least this often while records are published… */
  snapshotIntervalSeconds?: number;
  /** …and whenever this many record bytes were published since the last snapshot. */
  snapshotBytes?: number;
}

interface Outgoing {
  kind: MessageKind;
  body: Uint8Array;
  /** Records appended up to this message's end (bytes, since the writer started). */
  upTo: number;
  /** performance.now() when its oldest record was appended (the active's lag). */
  since: number;
  acked?: (seq: number) => void;
  /** The writer stopped (fenced or stopped) before this message was acknowledged. */
  failed?: (e: Error) => void;
}

interface Waiter {
  upTo: number;
  resolve: () => void;
  reject: (e: Error) => void;
}

export interface WriterState {
  seq: number;
  records: number;
  lagMs: number;
  pendingBytes: number;
  fenced: boolean;
  error?: string;
}

export class FenceError extends PcpdError {
  constructor(
    message: string,
    /** The subject moved on (another writer) rather than the stream being unreachable. */
    readonly refused: boolean,
    options?: ErrorOptions,
  ) {
    super(ErrorCodes.HA_FENCE_FAILED, message, options);
  }
}

/** Whether a publish failed because the subject's last sequence was not the one expected. */
export function wrongLastSequence(e: unknown): boolean {
  return (e instanceof JetStreamApiError && e.code === JetStreamApiCodes.StreamWrongLastSequence) || /wrong last sequence/i.test(String((e as Error)?.message));
}

let counter = 0;
/** A de-duplication id unique to this publication (node, term, process-unique counter, time). */
const messageId = (node: string, term: number) => `${node}.${term}.${process.pid}.${Date.now().toString(36)}.${(counter++).toString(36)}`;

/**
 * Publishes one message expecting `prev` as the subject's last sequence; resolves with its
 * sequence. A "wrong last sequence" is checked against the subject's last message: if it
 * is this very publication (its ack was lost and a retry found it), that is success.
 */
async function publishAfter(o: WriterOptions, meta: MessageMeta, body: Uint8Array, msgID: string): Promise<number> {
  try {
    const ack = await o.js.publish(o.subject, body, {
      headers: encodeHeaders(meta, msgID),
      msgID,
      expect: { lastSubjectSequence: meta.prev },
      timeout: o.timeoutMs,
    });
    return ack.seq;
  } catch (e) {
    if (!wrongLastSequence(e)) throw e;
    const last = await o.jsm.direct.getMessage(o.stream, { last_by_subj: o.subject });
    if (last && last.header?.get("Nats-Msg-Id") === msgID) return last.seq;
    throw new FenceError(`subject ${o.subject} moved past ${meta.prev}: ${(e as Error).message}`, true, { cause: e });
  }
}

export class StreamWriter {
  /** The subject's last sequence as this writer knows it (acknowledged). */
  private seq: number;
  private current: Uint8Array[] = [];
  private currentBytes = 0;
  private currentSince = 0;
  private appended = 0;
  private acked = 0;
  private records = 0;
  private readonly queue: Outgoing[] = [];
  private inflight = false;
  private waiters: Waiter[] = [];
  private timer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryMs = RETRY_MS;
  private lastSeal = 0;
  private stopped = false;
  private fenced = false;
  private error: string | undefined;
  private snapshotting: Promise<void> | undefined;
  private sinceSnapshot = 0;
  private lastSnapshot = performance.now();
  private readonly maxBody: number;

  /**
   * Fences the subject for a new writer: publishes `takeover` expecting `after` (the
   * follower's last applied sequence). Refused (FenceError.refused): another writer got
   * there first. Rejects with FenceError (not refused) when the stream does not answer.
   */
  static async fence(o: WriterOptions, after: number): Promise<StreamWriter> {
    const meta: MessageMeta = { kind: "takeover", node: o.node, term: o.term, epoch: o.epoch(), wall: o.wallMs(), prev: after };
    let seq: number;
    try {
      seq = await publishAfter(o, meta, new Uint8Array(0), messageId(o.node, o.term));
    } catch (e) {
      if (e instanceof FenceError) throw e;
      throw new FenceError(`stream unreachable: ${(e as Error).message}`, false, { cause: e });
    }
    return new StreamWriter(o, seq);
  }

  private constructor(
    private readonly o: WriterOptions,
    seq: number,
  ) {
    this.seq = seq;
    this.maxBody = Math.max(64 * 1024, o.maxPayload - HEADER_ROOM);
    this.timer = setInterval(() => this.seal(), o.commitIntervalMs);
    this.timer.unref();
  }

  /** Records of one batch (copies: persistPending's parts are the writer's to keep). */
  append(parts: Uint8Array[]): void {
    if (this.stopped) return;
    for (const p of parts) {
      if (p.length === 0) continue;
      if (this.currentBytes === 0) this.currentSince = performance.now();
      this.current.push(p);
      this.currentBytes += p.length;
      this.appended += p.length;
    }
    // A timer delayed by a busy event loop must not stretch the commit interval.
    if (this.currentBytes > 0 && performance.now() - this.lastSeal >= this.o.commitIntervalMs) this.seal();
  }

  /** Resolves when every record appended so far is acknowledged by the stream; rejects if fenced or stopped first. */
  commitNow(): Promise<void> {
    if (this.acked >= this.appended) return Promise.resolve();
    if (this.fenced || this.stopped) return Promise.reject(this.failure());
    const p = new Promise<void>((resolve, reject) => this.waiters.push({ upTo: this.appended, resolve, reject }));
    // With a publish in flight (or retrying through a leader election) the records wait for
    // its ack and go out together: one message per round trip, not one per check-pointed batch.
    if (!this.inflight) this.seal();
    return p;
  }

  private failure(): PcpdError {
    return this.fenced
      ? new PcpdError(ErrorCodes.HA_FENCED, `shard subject ${this.o.subject} fenced by another node: ${this.error}`)
      : new PcpdError(ErrorCodes.HA_WRONG_ROLE, `writer of ${this.o.subject} stopped`);
  }

  /** The current records into messages at the queue's end, then publish. */
  private seal(): void {
    this.lastSeal = performance.now();
    if (this.currentBytes > 0) {
      for (const body of encodeBodies(this.current, this.maxBody)) {
        // Appended to the last records message still waiting (not the one in flight, whose
        // retries must publish the same bytes): while the stream cannot acknowledge, the
        // backlog stays a few large messages instead of one per commit interval.
        const last = this.queue.length > (this.inflight ? 1 : 0) ? this.queue[this.queue.length - 1] : undefined;
        if (last?.kind === "records" && last.body.length + body.length <= this.maxBody) {
          const merged = new Uint8Array(last.body.length + body.length);
          merged.set(last.body);
          merged.set(body, last.body.length);
          last.body = merged;
          last.upTo = this.appended;
        } else this.queue.push({ kind: "records", body, upTo: this.appended, since: this.currentSince });
      }
      this.sinceSnapshot += this.currentBytes;
      this.current = [];
      this.currentBytes = 0;
    }
    this.pump();
  }

  private enqueue(kind: MessageKind, body = new Uint8Array(0)): Promise<number> {
    if (this.fenced || this.stopped) return Promise.reject(this.failure());
    return new Promise((resolve, reject) => this.queue.push({ kind, body, upTo: this.appended, since: performance.now(), acked: resolve, failed: reject }));
  }

  private pump(): void {
    if (this.inflight || this.fenced || this.stopped || this.queue.length === 0) return;
    const m = this.queue[0];
    this.inflight = true;
    const meta: MessageMeta = { kind: m.kind, node: this.o.node, term: this.o.term, epoch: this.o.epoch(), wall: this.o.wallMs(), prev: this.seq };
    const msgID = messageId(this.o.node, this.o.term);
    const attempt = () => {
      publishAfter(this.o, meta, m.body, msgID).then(
        (seq) => {
          this.inflight = false;
          this.retryMs = RETRY_MS;
          this.error = undefined;
          this.seq = seq;
          this.queue.shift();
          if (m.kind === "records") this.records += countRecords(m.body);
          this.acked = m.upTo;
          this.waiters = this.waiters.filter((w) => (w.upTo <= this.acked ? (w.resolve(), false) : true));
          m.acked?.(seq);
          // Records a commitNow is waiting for that were kept back while this publish was out.
          if (this.queue.length === 0 && this.currentBytes > 0 && this.waiters.length > 0) this.seal();
          else this.pump();
        },
        (e: Error) => {
          this.error = e.message;
          if (e instanceof FenceError) {
            this.inflight = false;
            this.fence(e.message);
            return;
          }
          if (this.stopped) {
            this.inflight = false;
            return;
          }
          this.o.onRetry?.(e.message);
          // The same message, de-duplication id and expected sequence: the retry of a publish
          // that landed is either de-duplicated or found as the subject's last message.
          this.retryTimer = setTimeout(attempt, this.retryMs);
          this.retryMs = Math.min(RETRY_MAX_MS, this.retryMs * 2);
        },
      );
    };
    attempt();
  }

  private fence(error: string): void {
    if (this.fenced) return;
    this.fenced = true;
    this.error = error;
    this.halt();
    this.o.onFenced(error);
  }

  private halt(): void {
    clearInterval(this.timer);
    clearTimeout(this.retryTimer);
    const failure = this.failure();
    for (const w of this.waiters) w.reject(failure);
    this.waiters = [];
    for (const m of this.queue) m.failed?.(failure);
  }

  /** Whether compaction is due (the caller starts it between batches). */
  snapshotDue(): boolean {
    if (this.snapshotting || this.stopped || this.fenced || !this.o.source) return false;
    const bytes = this.o.snapshotBytes ?? Infinity;
    const interval = (this.o.snapshotIntervalSeconds ?? Infinity) * 1000;
    return this.sinceSnapshot >= bytes || (this.sinceSnapshot > 0 && performance.now() - this.lastSnapshot >= interval);
  }

  /**
   * Compaction: the table published in chunks between batches, then the subject purged below
   * the snapshot's first message. Resolves when done (or given up: fenced, stopped).
   */
  snapshot(): Promise<void> {
    const source = this.o.source;
    if (!source) return Promise.resolve();
    this.snapshotting ??= (async () => {
      this.sinceSnapshot = 0;
      this.lastSnapshot = performance.now();
      this.seal(); // the records before it go first
      const begin = this.enqueue("snapshot-begin");
      this.pump();
      let from = 1;
      do {
        if (this.stopped || this.fenced) return;
        // Taken now, queued after every record appended before it: a follower applying in order ends with the newest state of each key.
        const part = source.engine().persistTable(from, SNAPSHOT_STEP, source.wallOffset);
        from = part.next;
        if (part.bytes.length > 0) {
          this.seal();
          for (const body of encodeBodies([part.bytes], this.maxBody))
            this.queue.push({ kind: "snapshot", body, upTo: this.appended, since: performance.now() });
          this.pump();
        }
        await new Promise((resolve) => setImmediate(resolve)); // the packet path runs between chunks
        while (this.queue.length > SNAPSHOT_WINDOW && !this.stopped && !this.fenced) await this.settled();
      } while (from !== 0);
      this.seal();
      const end = this.enqueue("snapshot-end");
      this.pump();
      const [beginSeq] = await Promise.all([begin, end]); // reject if the writer stops first
      await this.o.jsm.streams.purge(this.o.stream, { filter: this.o.subject, seq: beginSeq });
    })().finally(() => (this.snapshotting = undefined));
    return this.snapshotting;
  }

  /** Resolves after the next acknowledgement (or a short wait while retrying). */
  private settled(): Promise<void> {
    const acked = this.acked;
    const seq = this.seq;
    return new Promise((resolve) => {
      const check = () => (this.seq !== seq || this.acked !== acked || this.stopped || this.fenced ? resolve() : setTimeout(check, 5));
      check();
    });
  }

  /**
   * Planned switchover: every pending record, then a `handover` message; resolves with its
   * sequence. The writer stops after it (the shard stopped answering before).
   */
  async handover(): Promise<number> {
    if (this.fenced || this.stopped) throw this.failure();
    this.seal();
    const handed = this.enqueue("handover");
    this.pump();
    const seq = await handed;
    this.stop();
    return seq;
  }

  state(): WriterState {
    const oldest = this.queue[0]?.since ?? (this.currentBytes > 0 ? this.currentSince : undefined);
    let pendingBytes = this.currentBytes;
    for (const m of this.queue) if (m.kind === "records") pendingBytes += m.body.length;
    return {
      seq: this.seq,
      records: this.records,
      lagMs: oldest === undefined ? 0 : Math.round(performance.now() - oldest),
      pendingBytes,
      fenced: this.fenced,
      error: this.error,
    };
  }

  /** Stops publishing (what is pending is dropped; commitNow waiters are rejected). */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.halt();
  }
}
