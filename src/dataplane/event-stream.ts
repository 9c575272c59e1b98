// Event-stream backend: an external dataplane (VPP, a hardware NAT, an SDN controller)
// takes the operations from the control channel (method dataplane.subscribe) instead of
// pcpd programming one itself. A reset is `dataplane.reset`, a transaction one
// `dataplane.ops` notification with a sequence number. The dataplane is up while at least
// one consumer is connected; a consumer that cannot keep up is disconnected (it would
// miss operations) and gets a full reset when it subscribes again. With no consumer, a
// transaction fails, so the shards answer NETWORK_FAILURE [RFC 6887 §7.4].
// Traffic-driven lifetimes: a `dataplane.activity` notification { id, queries } asks how
// long the traffic each consumer has seen keeps those mappings; the method
// `dataplane.activityAnswer` { id, remaining } answers (src/dataplane/activity.ts).
import type { DataplaneBackend } from "./manager.js";
import type { DataplaneOp } from "./ops.js";
import type { ActivityQuery } from "./activity.js";
import { ErrorCodes, PcpdError } from "../errors.js";

export interface DataplaneConsumer {
  /** false: this consumer could not take the message (it is dropped by the sink). */
  send(method: "dataplane.reset" | "dataplane.ops" | "dataplane.activity", params: unknown): boolean;
}

/** `dataplane.activity`: the mappings a decision waits on (answered by dataplane.activityAnswer, same id, in order). */
export interface ActivityNotice {
  id: number;
  queries: Omit<ActivityQuery, "mapping">[];
}

export class EventStreamBackend implements DataplaneBackend {
  readonly name = "events";
  private readonly consumers = new Set<DataplaneConsumer>();
  private seq = 0;
  private activitySeq = 0;
  private readonly waiting = new Map<number, { count: number; resolve: (r: number[]) => void; timer: NodeJS.Timeout }>();

  /** @param activityTimeoutMs how long an activity query waits for a consumer's answer. */
  constructor(private readonly activityTimeoutMs = 500) {}
  /** Called when a consumer joins: the manager reconciles so that it starts from a reset. */
  onJoin: () => void = () => undefined;

  add(c: DataplaneConsumer): void {
    this.consumers.add(c);
    this.onJoin();
  }

  remove(c: DataplaneConsumer): void {
    this.consumers.delete(c);
  }

  get size(): number {
    return this.consumers.size;
  }

  private publish(method: "dataplane.reset" | "dataplane.ops" | "dataplane.activity", params: unknown): void {
    if (this.consumers.size === 0) throw new PcpdError(ErrorCodes.DATAPLANE_NO_CONSUMER, "no dataplane consumer is subscribed");
    for (const c of [...this.consumers]) if (!c.send(method, params)) this.consumers.delete(c);
    if (this.consumers.size === 0) throw new PcpdError(ErrorCodes.DATAPLANE_NO_CONSUMER, "every dataplane consumer fell behind");
  }

  async reset(): Promise<void> {
    this.publish("dataplane.reset", { seq: ++this.seq });
  }

  async apply(ops: DataplaneOp[]): Promise<void> {
    if (ops.length > 0) this.publish("dataplane.ops", { seq: ++this.seq, ops });
  }

  /**
   * Asks the consumers how long the traffic they saw keeps each mapping (a hardware CGN's
   * "last packet seen" against its idle timeout); the first answer counts. Rejects without
   * a consumer, or when none answers within the timeout.
   */
  activity(queries: ActivityQuery[]): Promise<number[]> {
    const id = ++this.activitySeq;
    const notice: ActivityNotice = { id, queries: queries.map(({ protocol, family, internal, external }) => ({ protocol, family, internal, external })) };
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new PcpdError(ErrorCodes.DATAPLANE_NO_ANSWER, `no dataplane consumer answered activity query ${id} within ${this.activityTimeoutMs} ms`));
      }, this.activityTimeoutMs);
      this.waiting.set(id, { count: queries.length, resolve, timer });
      try {
        this.publish("dataplane.activity", notice);
      } catch (e) {
        clearTimeout(timer);
        this.waiting.delete(id);
        reject(e);
      }
    });
  }

  /** A consumer's answer: true when it was awaited, false when not (late, or answered already), "count" when it does not fit the query. */
  answerActivity(id: number, remaining: number[]): boolean | "count" {
    const w = this.waiting.get(id);
    if (!w) return false;
    if (remaining.length !== w.count) return "count";
    clearTimeout(w.timer);
    this.waiting.delete(id);
    w.resolve(remaining);
    return true;
  }

  async close(): Promise<void> {
    this.consumers.clear();
    for (const w of this.waiting.values()) clearTimeout(w.timer);
    this.waiting.clear();
  }
}
