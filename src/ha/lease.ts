// A group's lease in JetStream KV (bucket PCPD_<cluster>_leases, key = the group's name,
// value JSON LeaseValue), as one node keeps and watches it.
//
// Lease math (docs/ha.md links here). L = ha.leaseMs, M = ha.safetyMarginMs, every time on
// the node's own monotonic clock (TimeSource), none compared across machines:
// - The holder renews every L/3 with a CAS update (the KV revision it last wrote). A
//   renewal SENT at s and acknowledged makes the lease valid until s + L − M on the
//   holder's clock; that instant is written into every shard gate of the group (the
//   shards drop datagrams once their monotonic clock passes it). Counting from the send,
//   not the acknowledgement, is what makes it safe: the KV stored the revision after s.
// - A standby notes the local time r at which it first saw each new revision. It may
//   take over at r + L + M (the revision was written before r, so the holder's gate,
//   ≤ its send + L − M, has passed by then on any clock whose rate differs by less than
//   2M/L from ours), and only by a CAS on that same revision: a renewal that landed in
//   between makes the CAS fail, so a stale view never steals a live lease.
// - Vacant (no key, deleted, or holder null): nobody can be answering. With `to` (a
//   switchover's target) that node takes it at once, the others after L + M; with a
//   handover and no `to`, any standby at once; never held before, the group's preferred
//   node at once and the others after L (counting from when they started watching).
// - A node not connected to NATS never takes over: it could neither CAS nor fence.
// - A renewal that fails without a refusal (timeout, no responders, disconnected) leaves
//   the lease held by our clock until the gate passes: "degraded". A refusal ("wrong last
//   sequence") means another node moved the lease: lost. A refusal after a renewal whose
//   answer was lost but which was applied is recognised (the KV holds our holder and term)
//   and adopted, not taken for a loss: it extends the gate from the send of the first
//   renewal on that CAS base still unanswered (the one applied was sent no earlier).
// - A renewal still unanswered at the next tick of the renewal timer (every L/3; sent at
//   least half an interval before) does not hold it up: the next renewal goes beside it;
//   and when the connection comes back (reconnected()), one goes at once. The one in
//   flight may have been lost (with the connection, or its answer) and would only time out
//   (ha.nats.timeoutMs), possibly past the gate. They carry the same CAS base, so at most
//   one is applied; the others' refusals are recognised as above, and a timeout of a
//   renewal sent before one that succeeded is not a failure.
// - The term is the KV revision of the write that took the lease: greater than any
//   earlier revision, so terms only grow. The taking write carries term 0; the renewal
//   sent right after it carries the term.
import type { KV, KvEntry } from "@nats-io/kv";
import type { TimeSource } from "../core/clock.js";
import type { HaTakeover } from "./types.js";

export interface LeaseValue {
  /** The node holding the lease (null: vacant). */
  holder: string | null;
  /** The holder's term (KV revision that took the lease); 0 on the taking write itself. */
  term: number;
  /** Vacant: the node that handed it back (a switchover, a failed takeover). */
  from?: string;
  /** Vacant after a switchover: the node asked to take it. */
  to?: string;
  /** Vacant after a switchover: the handover message's stream sequence per shard. */
  handover?: Record<string, number>;
  /** How the holder took the lease (HaStatus lastTakeover, shown by every node). */
  takeover?: HaTakeover;
}

/** The lease as this node last saw it. */
export interface LeaseView {
  /** null: the key does not exist (or was deleted). */
  value: LeaseValue | null;
  revision: number;
  /** Local monotonic ns at which this revision was first seen. */
  seenNs: bigint;
}

export type TakeoverReason = HaTakeover["reason"];

export interface LeaseKeeperOptions {
  kv: KV;
  group: string;
  node: string;
  leaseMs: number;
  safetyMarginMs: number;
  /** Timeout of one KV request (ha.nats.timeoutMs). */
  timeoutMs: number;
  time: TimeSource;
  /** The group's shard gates (ShardHaSpec.gate cells): written after each renewal, zeroed on loss. */
  gates: BigInt64Array[];
  /** Whether the NATS connection is up now. */
  connected(): boolean;
  /** The lease was lost while held: a CAS refused, or the watch showed another holder. Gates are already 0. */
  onLost(reason: string): void;
  /** Each new revision seen, and each renewal outcome that changes the degraded state. */
  onChange(): void;
}

const MS = 1_000_000n;
const encoder = new TextEncoder();

/** A KV write refused because the key's revision moved (JetStream "wrong last sequence", 10071). */
export function casRefused(e: unknown): boolean {
  const code = (e as { code?: unknown }).code;
  return code === 10071 || /wrong last sequence/i.test(String((e as Error)?.message));
}

function parse(entry: KvEntry | null): LeaseValue | null {
  if (entry?.operation !== "PUT" || entry.length === 0) return null;
  try {
    const v = entry.json<LeaseValue>();
    return typeof v === "object" && v !== null && "holder" in v ? v : null;
  } catch {
    return null; // unreadable: treated as vacant, and replaced by CAS on its revision
  }
}

export class LeaseKeeper {
  private view: LeaseView;
  private synced = false;
  private held = false;
  private heldTerm = 0;
  /** The revision of our last write (held) — the CAS base of the next renewal. */
  private ownRevision = 0;
  private validUntil = 0n;
  private renewalError: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** The latest renewal not yet settled, and when it was sent (renew() sends none beside it for half an interval). */
  private inflight: Promise<void> | undefined;
  private inflightSent = 0n;
  /** Every renewal not yet settled (abandon() waits for them all). */
  private readonly unsettled = new Set<Promise<void>>();
  /** Send time of the first renewal on the current CAS base (ownRevision) still unanswered. */
  private unansweredSince: bigint | undefined;
  /** Send time of the latest acknowledged renewal. */
  private ackedSent = 0n;
  private stopped = false;
  /** Renewals still complete (their revision is needed for a release) but open no gate. */
  private closing = false;
  private watcher: { stop(): void } | undefined;
  private readonly startedNs: bigint;
  /** Written into every renewal while held (how this node took the lease). */
  takeover: HaTakeover | undefined;

  constructor(private readonly o: LeaseKeeperOptions) {
    this.startedNs = o.time.monotonicNs();
    this.view = { value: null, revision: 0, seenNs: this.startedNs };
  }

  private now(): bigint {
    return this.o.time.monotonicNs();
  }

  /** Reads the key once (so a vacant bucket is known), then watches it until stop(). */
  async start(): Promise<void> {
    const entry = await this.o.kv.get(this.o.group);
    this.see(entry);
    this.synced = true;
    void this.watch();
  }

  /**
   * Reads the key now (a standby about to take over: one request, where acting on a stale
   * view would cost a catch-up and a refused CAS). A newer revision than the watch gave
   * means the watch missed it (an ordered consumer stalled by a stream leader change): it
   * is restarted. Resolves with whether the view moved.
   */
  async refresh(): Promise<boolean> {
    const entry = await this.o.kv.get(this.o.group);
    if (!entry || entry.revision <= this.view.revision) return false;
    this.watcher?.stop(); // the loop in watch() opens a new one
    this.see(entry);
    return true;
  }

  private async watch(): Promise<void> {
    while (!this.stopped) {
      try {
        const it = await this.o.kv.watch({ key: this.o.group });
        this.watcher = it;
        if (this.stopped) it.stop();
        for await (const e of it) this.see(e);
      } catch {
        // Not connected, or the bucket's stream moved: try again (the view stays as seen).
      }
      if (!this.stopped) await new Promise((resolve) => setTimeout(resolve, Math.min(250, this.o.leaseMs / 4)));
    }
  }

  private see(entry: KvEntry | null): void {
    if (!entry) return;
    if (entry.revision <= this.view.revision) return; // already seen (a watch restarted)
    const value = parse(entry);
    this.view = { value, revision: entry.revision, seenNs: this.now() };
    if (this.held && entry.revision > this.ownRevision && !(value?.holder === this.o.node && value.term === this.heldTerm)) {
      this.lose(`the lease of ${this.o.group} moved to ${value?.holder ?? "nobody"} (revision ${entry.revision})`);
    }
    this.o.onChange();
  }

  /** The lease as last seen. */
  current(): LeaseView {
    return this.view;
  }

  isHeld(): boolean {
    return this.held;
  }

  term(): number {
    return this.heldTerm;
  }

  /** Held, and the last renewal failed without a refusal: serving only until the gate passes. */
  degraded(): boolean {
    return this.held && this.renewalError !== undefined;
  }

  lastRenewalError(): string | undefined {
    return this.renewalError;
  }

  /** ms the lease is still provably ours by our clock (minus the margin); 0 when not held. */
  remainingMs(): number {
    if (!this.held) return 0;
    const left = this.validUntil - this.now();
    return left > 0n ? Number(left / MS) : 0;
  }

  /**
   * Whether this node may take the lease now, and why (undefined: not yet). `preferred`:
   * the group's ha.groups[].preferred.
   */
  mayTakeOver(preferred: string | undefined): TakeoverReason | undefined {
    if (this.held || !this.synced || this.stopped || !this.o.connected()) return undefined;
    const { value, seenNs } = this.view;
    const now = this.now();
    const lease = BigInt(this.o.leaseMs) * MS;
    const margin = BigInt(this.o.safetyMarginMs) * MS;
    if (value !== null && value.holder !== null) return now > seenNs + lease + margin ? "lapsed" : undefined;
    if (value?.to !== undefined) {
      if (value.to === this.o.node) return "switchover";
      return now > seenNs + lease + margin ? "vacant" : undefined;
    }
    if (value?.handover !== undefined) return "switchover";
    if (preferred === undefined || preferred === this.o.node) return "vacant";
    return now > seenNs + lease ? "vacant" : undefined;
  }

  /**
   * Takes the lease by CAS on the revision last seen (create when the key is absent).
   * Resolves with the term, or undefined when another node's write got there first. The
   * gates are open until the taking write's send + L − M; renewals start at once.
   */
  async acquire(basis: LeaseView = this.view): Promise<number | undefined> {
    if (this.held) return this.heldTerm;
    if (this.stopped) return undefined;
    // The CAS is on the revision the decision to take over rested on, never on a newer one
    // the watch delivered meanwhile: that would take a lease another node has just taken.
    const base = basis;
    const body = encoder.encode(JSON.stringify({ holder: this.o.node, term: 0 } satisfies LeaseValue));
    const sent = this.now();
    let revision: number;
    try {
      revision =
        base.value === null && base.revision === 0
          ? await this.o.kv.create(this.o.group, body)
          : await this.o.kv.update(this.o.group, body, base.revision, this.o.timeoutMs);
    } catch (e) {
      if (!casRefused(e) && !/exists/i.test(String((e as Error).message))) throw e;
      // Our view was stale (a watch that missed revisions): read it, so the wait restarts from now.
      await this.refresh().catch(() => false);
      return undefined;
    }
    this.held = true;
    this.closing = false;
    this.heldTerm = revision;
    this.ownRevision = revision;
    this.unansweredSince = undefined;
    this.ackedSent = sent;
    this.renewalError = undefined;
    this.view = { value: { holder: this.o.node, term: 0 }, revision, seenNs: this.now() };
    this.extend(sent);
    this.timer = setInterval(() => void this.renew(), this.intervalMs());
    await this.renew(); // writes the term into the value
    return this.held ? revision : undefined;
  }

  private extend(sent: bigint): void {
    if (this.closing) return;
    const until = sent + BigInt(this.o.leaseMs - this.o.safetyMarginMs) * MS;
    if (until <= this.validUntil) return; // an earlier send answered after a later one
    this.validUntil = until;
    for (const g of this.o.gates) Atomics.store(g, 0, this.validUntil);
  }

  private value(): LeaseValue {
    return { holder: this.o.node, term: this.heldTerm, ...(this.takeover ? { takeover: this.takeover } : {}) };
  }

  private intervalMs(): number {
    return Math.max(1, Math.floor(this.o.leaseMs / 3));
  }

  /**
   * One renewal, unless one sent less than half a renewal interval ago is still in flight
   * (a healthy one is answered in milliseconds; the timer's next tick, an interval later,
   * sends beside one that was not).
   */
  renew(): Promise<void> {
    if (!this.held || this.stopped) return Promise.resolve();
    if (this.inflight && (this.now() - this.inflightSent) * 2n < BigInt(this.intervalMs()) * MS) return this.inflight;
    return this.sendRenewal();
  }

  /**
   * The NATS connection is back: renews at once, even beside a renewal in flight (sent,
   * most likely, on the connection that was lost).
   */
  reconnected(): void {
    if (this.held && !this.stopped) void this.sendRenewal();
  }

  private sendRenewal(): Promise<void> {
    const renewal: Promise<void> = this.renewOnce().finally(() => {
      this.unsettled.delete(renewal);
      if (this.inflight === renewal) this.inflight = undefined;
    });
    this.unsettled.add(renewal);
    this.inflight = renewal;
    this.inflightSent = this.now();
    return renewal;
  }

  private async renewOnce(): Promise<void> {
    const sent = this.now();
    const term = this.heldTerm;
    this.unansweredSince ??= sent;
    try {
      const revision = await this.o.kv.update(this.o.group, encoder.encode(JSON.stringify(this.value())), this.ownRevision, this.o.timeoutMs);
      if (!this.held || this.heldTerm !== term) return; // released or lost meanwhile
      this.acknowledged(revision, sent);
    } catch (e) {
      if (!this.held || this.heldTerm !== term) return;
      if (casRefused(e)) {
        // Another renewal of ours on this base may have been applied with its answer lost
        // (or not yet read): then the KV holds our holder and term.
        const entry = await this.o.kv.get(this.o.group).catch(() => null);
        const v = parse(entry);
        if (entry && v?.holder === this.o.node && v.term === term && this.held) {
          if (entry.revision > this.ownRevision) this.acknowledged(entry.revision, this.unansweredSince ?? sent);
          return;
        }
        this.lose(`renewal of ${this.o.group} refused: ${(e as Error).message}`);
        return;
      }
      if (this.ackedSent >= sent) return; // a renewal sent after this one succeeded
      const first = this.renewalError === undefined;
      this.renewalError = (e as Error).message;
      if (first) this.o.onChange();
    }
  }

  /** Our renewal sent at `sent` is the key's revision `revision`: the next CAS base, and the gate moves. */
  private acknowledged(revision: number, sent: bigint): void {
    if (revision <= this.ownRevision) return; // a later revision of ours is already the base
    this.ownRevision = revision;
    this.unansweredSince = undefined;
    if (sent > this.ackedSent) this.ackedSent = sent;
    if (revision > this.view.revision) this.view = { value: this.value(), revision, seenNs: this.now() };
    this.extend(sent);
    if (this.renewalError !== undefined) {
      this.renewalError = undefined;
      this.o.onChange();
    }
  }

  /** Closes the gates and forgets the lease (it lapses unless released). */
  private drop(): void {
    this.held = false;
    clearInterval(this.timer);
    this.timer = undefined;
    this.validUntil = 0n;
    for (const g of this.o.gates) Atomics.store(g, 0, 0n);
  }

  private lose(reason: string): void {
    if (!this.held) return;
    this.drop();
    this.o.onLost(reason);
  }

  /**
   * Closes the gates for good while the lease stays held (renewals go on but open nothing):
   * a switchover's handover first, so a renewal landing meanwhile cannot reopen a shard
   * that is closing its sockets.
   */
  closeGates(): void {
    this.closing = true;
    for (const g of this.o.gates) Atomics.store(g, 0, 0n);
  }

  /**
   * Stops renewing and closes the gates (a demotion, a failed takeover, the server's
   * stop); the lease lapses after L by the others' clocks. Waits for a renewal in flight.
   */
  async abandon(): Promise<void> {
    this.closing = true;
    clearInterval(this.timer);
    this.timer = undefined;
    for (const g of this.o.gates) Atomics.store(g, 0, 0n);
    await Promise.allSettled([...this.unsettled]);
    this.drop();
  }

  /**
   * Hands the lease back by CAS: `value` (holder null) replaces ours. Renewals stop and
   * the gates close first. Resolves with the new revision; rejects when the CAS is
   * refused (the lease had already moved) or fails.
   */
  async release(value: LeaseValue): Promise<number> {
    if (!this.held) throw new Error(`lease of ${this.o.group} not held`);
    await this.abandon(); // after the renewal in flight: its revision is the CAS base
    const revision = await this.o.kv.update(this.o.group, encoder.encode(JSON.stringify(value)), this.ownRevision, this.o.timeoutMs);
    if (revision > this.view.revision) this.view = { value, revision, seenNs: this.now() };
    return revision;
  }

  /** Stops watching and renewing; the gates close. The lease itself is left to lapse. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.watcher?.stop();
    await this.abandon();
  }
}
