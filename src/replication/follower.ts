// A standby shard's side of replication (docs/replication.md): its subject read from the
// first message on, each body's chunks given to the engine's restore path (a record
// replaces what its external key held, PREC_GONE removes it), the chain of Pcpd-Prev
// headers checked so that nothing between two applied messages went missing.
//
// The consumer is JetStream's ordered consumer (an ephemeral pull consumer the client
// re-creates, from the last stream sequence it delivered, when a server restarts or
// delivery skips; this follower re-creates it too when the server holding it is lost, which
// the client never recovers from): no acks, no durable state on the servers to clean up
// after a standby dies, and the restart point is the follower's own — what the chain check
// needs. A durable pull consumer would survive the same events but leave consumers behind
// and acknowledge work a rebuilt engine has lost. The subject's last sequence comes from the
// stream each second, so the state never claims "caught up" while the consumer is stuck.
//
// A consumer may not come back for a while: nats-server 2.9 places an R1 consumer on any of
// the stream's peers, a dead one included, and its creation then times out (one try in
// three with one node of three down, for as long as that node is down). Behind with no
// consumer delivering for STALL_MS, the follower therefore also reads the subject's next
// messages one by one from the stream's leader (the message get the writer's stream needs
// anyway), at each refresh and at a catch-up, while the consumer is re-created beside it;
// whichever delivers first is applied, the other's copy is skipped by its sequence.
//
// `complete`: every record since the subject's first message (Pcpd-Prev 0), or since a
// snapshot-begin whose snapshot-end was applied (the whole table plus every change
// since). A standby that is complete continues the Epoch when it takes over.
// A hole (a message whose Pcpd-Prev is not the last applied sequence: the writer compacted
// and purged what this follower had not read yet) stops the follower: the caller rebuilds
// the engine and follows again from the subject's (new) first message, a snapshot-begin.
import { randomBytes } from "node:crypto";
import { DeliverPolicy, type Consumer, type ConsumerMessages, type NextMsgRequest, type SeqMsgRequest } from "@nats-io/jetstream";
import type { MsgHdrs } from "@nats-io/transport-node";
import { ErrorCodes, PcpdError } from "../errors.js";
import type { ShardSubject } from "./nats.js";
import { decodeBody, decodeMeta, countRecords } from "./messages.js";

/** Wait before trying again to open the consumer (stream missing, servers unreachable), doubling up to REOPEN_MAX_MS. */
const REOPEN_MS = 250;
const REOPEN_MAX_MS = 5000;
/** The subject's last sequence is read from the stream (its leader) this often. */
const REFRESH_MS = 1000;
/** Behind the stream and nothing delivered by the consumer for this long: it is re-created, and the subject read by sequence. */
const STALL_MS = 3000;
/** Messages the consumer fetches ahead of the engine (catching up, each up to max_payload: 1 MiB by default). */
const CONSUME_MESSAGES = 32;

export interface FollowerOptions extends ShardSubject {
  /** Applies one chunk of records (engine.restore at the caller's time); returns the bytes taken (fewer: malformed). */
  apply: (chunk: Uint8Array) => number;
  /**
   * The chain broke at message `seq`. "restart": the follower stops (the caller rebuilds the
   * engine and follows again); "continue": it applies on, no longer complete (a break that
   * is in the stream itself, met again after a restart, would otherwise loop for ever).
   */
  onHole: (detail: string, seq: number) => "restart" | "continue";
  /** A consumer problem (for the log); the follower keeps trying. */
  onError?: (error: string) => void;
  wallMs: () => number;
  /** Goes on with an engine that an earlier follower (stopped since) brought to this state: the chain continues from its seq. */
  resume?: FollowerState;
}

export interface FollowerState {
  /** Stream sequence of the last message applied (0: none). */
  seq: number;
  /** The subject's last sequence, as last seen. */
  lastSeq: number;
  records: number;
  complete: boolean;
  lagMs: number;
  /** Pcpd-Epoch and Pcpd-Wall of the newest applied message (undefined: none applied). */
  epoch?: number;
  wall?: number;
  /** Writer of the newest applied message. */
  node?: string;
  term?: number;
  error?: string;
}

interface Waiter {
  target: number;
  resolve: () => void;
  reject: (e: Error) => void;
}

export class StreamFollower {
  private readonly s: FollowerState = { seq: 0, lastSeq: 0, records: 0, complete: false, lagMs: 0 };
  private started = false;
  /** Began at a snapshot-begin: complete once its snapshot-end is applied. */
  private fromSnapshot = false;
  /** Something was not applied (a body that could not be read, or the chain began mid-way): never complete. */
  private damaged = false;
  private messages: ConsumerMessages | undefined;
  private stopped = false;
  private waiters: Waiter[] = [];
  /** Messages of the subject after the last one delivered, as the consumer last said. */
  private pending = 0;
  private readonly running: Promise<void>;
  private readonly refresher: NodeJS.Timeout;
  /** performance.now() of the consumer's last delivery (or its opening); reads by sequence leave it. */
  private delivered = performance.now();
  private reopenMs = REOPEN_MS;
  /** Ends the wait before the next attempt (stop). */
  private wake: (() => void) | undefined;
  /** A refresh (and the reads by sequence it may run) is under way: the next tick skips. */
  private refreshing = false;

  constructor(private readonly o: FollowerOptions) {
    if (o.resume && o.resume.seq > 0) {
      Object.assign(this.s, o.resume, { error: undefined });
      this.damaged = !o.resume.complete;
      this.started = true;
    }
    this.running = this.run();
    this.refresher = setInterval(() => void this.refresh(), REFRESH_MS);
    this.refresher.unref();
  }

  /**
   * The subject's last sequence from the stream, each second: `lastSeq`, the lag and
   * catch-up never believe a consumer that stopped delivering. Behind with nothing
   * delivered for STALL_MS: the consumer is re-created from the last applied sequence, and
   * meanwhile the messages up to the last sequence are read by sequence.
   */
  private async refresh(): Promise<void> {
    if (this.refreshing) return;
    this.refreshing = true;
    try {
      const last = await this.lastSubjectSequence();
      if (this.s.seq < last && performance.now() - this.delivered >= STALL_MS) {
        this.reopen(`stalled at ${this.s.seq} of ${last}`);
        await this.readNext(last);
      }
    } catch {
      // a leader election: the last known value stands, the next tick tries again
    } finally {
      this.refreshing = false;
    }
  }

  /**
   * Reads the subject's messages after the last one applied, one request each, from the
   * stream's leader, up to `last` (the consumer's copies of them are skipped).
   */
  private async readNext(last: number): Promise<void> {
    for (let from = this.s.seq + 1; from <= last && !this.stopped; ) {
      // The leader's message get takes next_by_subj (nats-server 2.9 on); the client types it for the direct get only.
      const next: SeqMsgRequest & NextMsgRequest = { seq: Math.max(from, this.s.seq + 1), next_by_subj: this.o.subject };
      const m = await this.o.jsm.streams.getMessage(this.o.stream, next);
      if (!m || this.stopped) return; // nothing after it any more (purged): the consumer's turn
      this.onMessage(m.seq, m.header, m.data);
      from = m.seq + 1;
    }
  }

  /**
   * Re-creates the consumer from the last applied sequence + 1 (the run loop, after its
   * backoff): the ordered consumer does not come back by itself when the server holding it
   * is lost — it reports missed heartbeats for ever (seen on 2.9.10 with the library 3.4).
   * The Pcpd-Prev chain still guards against anything skipped.
   */
  private reopen(why: string): void {
    const messages = this.messages;
    if (!messages || this.stopped) return;
    this.messages = undefined;
    this.s.error = `consumer re-created (${why})`;
    this.o.onError?.(this.s.error);
    void messages.close().catch(() => undefined);
  }

  private async run(): Promise<void> {
    const id = randomBytes(6).toString("hex");
    for (let attempt = 1; !this.stopped; attempt++) {
      // Named by this follower, so that a creation that timed out can be deleted too.
      const name_prefix = `pcpd_${id}_${attempt}`;
      let consumer: Consumer | undefined;
      try {
        const from = this.s.seq + 1; // where the last attempt stopped (the consumer keeps its place within one attempt)
        consumer = await this.o.js.consumers.get(this.o.stream, {
          name_prefix,
          filter_subjects: this.o.subject,
          ...(from > 1 ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: from } : { deliver_policy: DeliverPolicy.All }),
        });
        if (this.stopped) return;
        // Bounded in messages, not bytes: with max_bytes the ordered consumer stalled for good
        // after a nats-server restart here (2.9.10; tested). At most CONSUME_MESSAGES × max_payload ahead.
        const messages = await consumer.consume({ max_messages: CONSUME_MESSAGES });
        this.messages = messages;
        // A stop() while consume() was answered did not close these: closed now. The close is
        // queued in the iterator, so it takes effect only while the loop below iterates
        // (awaiting it here without iterating waited for ever).
        if (this.stopped) void messages.close();
        this.delivered = performance.now();
        void this.watch(messages);
        for await (const m of messages) {
          if (this.stopped) break;
          this.onMessage(m.seq, m.headers, m.data, m.info.pending);
        }
      } catch (e) {
        if (this.stopped) return;
        this.s.error = (e as Error).message;
        this.o.onError?.(this.s.error);
      } finally {
        // Deleted now, not after its 5 min of inactivity: a consumer abandoned on a dead peer
        // would otherwise come back with that peer. Best effort (NATS may be out of reach).
        void (consumer ? consumer.delete() : this.o.jsm.consumers.delete(this.o.stream, `${name_prefix}_1`)).catch(() => undefined);
      }
      if (this.stopped) return;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.reopenMs);
        this.wake = () => (clearTimeout(timer), resolve());
      });
      this.wake = undefined;
      this.reopenMs = Math.min(REOPEN_MAX_MS, this.reopenMs * 2); // back to REOPEN_MS at the next delivery
    }
  }

  /** Consumer notifications: a lost consumer is re-created here; the rest is reported. */
  private async watch(messages: ConsumerMessages): Promise<void> {
    for await (const n of messages.status()) {
      if (n.type === "heartbeats_missed" || n.type === "consumer_deleted" || n.type === "consumer_not_found") {
        if (this.messages === messages) this.reopen(`consumer: ${n.type}`);
      } else if (n.type === "no_responders" || n.type === "stream_not_found") {
        this.s.error = `consumer: ${n.type}`;
        this.o.onError?.(this.s.error);
      }
    }
  }

  /**
   * One message of the subject: from the consumer with `pending` (what it said follows), or
   * read by sequence without.
   */
  private onMessage(seq: number, headers: MsgHdrs | undefined, data: Uint8Array, pending?: number): void {
    if (pending !== undefined) {
      this.delivered = performance.now(); // the consumer is alive, even while it delivers copies
      this.reopenMs = REOPEN_MS;
    }
    if (seq <= this.s.seq) return; // applied already (read by sequence while the consumer was away)
    const meta = decodeMeta(headers);
    // Sequences are stream-wide (other shards' subjects share the stream): `pending` counts
    // this subject's messages still to come, not sequences. A read by sequence went up to the
    // last sequence read.
    this.pending = pending ?? 0;
    this.s.lastSeq = Math.max(this.s.lastSeq, seq);
    if (!meta) {
      // Not ours (another program on the subject): it is not part of the chain either.
      this.s.error = `message ${seq} without replication headers ignored`;
      return;
    }
    if (meta.prev !== this.s.seq) {
      if (this.started) {
        const detail = `hole on ${this.o.subject}: message ${seq} follows ${meta.prev}, last applied ${this.s.seq}`;
        this.s.error = detail;
        if (this.o.onHole(detail, seq) === "restart") {
          void this.stop(detail);
          return;
        }
        this.damaged = true;
      } else if (meta.kind === "snapshot-begin") this.fromSnapshot = true;
      // The subject's first message follows one purged by a compaction: a whole snapshot starts here.
      else this.damaged = true;
    } else if (!this.started) {
      this.s.complete = !this.damaged; // from the subject's very beginning
    }
    this.started = true;
    try {
      for (const chunk of decodeBody(data)) {
        if (this.o.apply(chunk) !== chunk.length) {
          this.damaged = true;
          this.s.error = `message ${seq}: records not taken back whole`;
        }
      }
      this.s.records += countRecords(data);
    } catch (e) {
      this.damaged = true;
      this.s.error = `message ${seq}: ${(e as Error).message}`;
    }
    if (meta.kind === "snapshot-end" && this.fromSnapshot) this.s.complete = true;
    if (this.damaged) this.s.complete = false;
    this.s.seq = seq;
    this.s.epoch = meta.epoch;
    this.s.wall = meta.wall;
    this.s.node = meta.node;
    this.s.term = meta.term;
    this.waiters = this.waiters.filter((w) => (w.target <= seq ? (w.resolve(), false) : true));
  }

  /**
   * The subject's last sequence now (0: nothing on it), from the stream leader's
   * last-by-subject lookup (not a direct get: a replica that is behind would answer that).
   */
  async lastSubjectSequence(): Promise<number> {
    const last = await this.o.jsm.streams.getMessage(this.o.stream, { last_by_subj: this.o.subject });
    const seq = last?.seq ?? 0;
    this.s.lastSeq = Math.max(this.s.lastSeq, seq);
    return seq;
  }

  /** The subject's last sequence, asked again while the stream has no leader (an election), until `deadline`. */
  private async streamLast(deadline: number): Promise<number> {
    for (;;) {
      try {
        return await this.lastSubjectSequence();
      } catch (e) {
        if (this.stopped || performance.now() + REOPEN_MS >= deadline)
          throw new PcpdError(ErrorCodes.HA_CATCH_UP_TIMEOUT, `${this.o.subject}: the stream's last sequence not read: ${(e as Error).message}`, { cause: e });
        await new Promise((resolve) => setTimeout(resolve, REOPEN_MS));
      }
    }
  }

  /**
   * Resolves once every message up to the subject's last sequence as of this call is
   * applied; rejects after `timeoutMs` (HA_CATCH_UP_TIMEOUT), on a hole, or when stopped.
   */
  async catchUp(timeoutMs: number): Promise<FollowerState> {
    const deadline = performance.now() + timeoutMs;
    const target = await this.streamLast(deadline);
    if (this.s.seq >= target) return this.state();
    if (this.stopped) throw new PcpdError(ErrorCodes.HA_CATCH_UP_TIMEOUT, `follower of ${this.o.subject} stopped`);
    void this.refresh(); // a stalled consumer: read by sequence now, not at the next tick
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve, reject) => {
      const w: Waiter = { target, resolve, reject };
      this.waiters.push(w);
      timer = setTimeout(
        () => {
          this.waiters = this.waiters.filter((x) => x !== w);
          reject(new PcpdError(ErrorCodes.HA_CATCH_UP_TIMEOUT, `applied ${this.s.seq} of ${target} on ${this.o.subject} within ${timeoutMs} ms`));
        },
        Math.max(0, deadline - performance.now()),
      );
    }).finally(() => clearTimeout(timer));
    return this.state();
  }

  state(): FollowerState {
    const behind = this.pending > 0 || this.s.seq < this.s.lastSeq;
    return { ...this.s, lagMs: behind && this.s.wall !== undefined ? Math.max(0, this.o.wallMs() - this.s.wall) : 0 };
  }

  /** Stops consuming (the engine keeps what was applied); resolves when the consumer is closed. */
  async stop(why = `follower of ${this.o.subject} stopped`): Promise<void> {
    if (!this.stopped) {
      this.stopped = true;
      clearInterval(this.refresher);
      this.wake?.();
      const messages = this.messages;
      for (const w of this.waiters) w.reject(new PcpdError(ErrorCodes.HA_CATCH_UP_TIMEOUT, why));
      this.waiters = [];
      await messages?.close();
    }
    await this.running;
  }
}
