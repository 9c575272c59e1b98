// Event-stream backend: an external dataplane (VPP, a hardware NAT, an SDN controller)
// takes the operations from the control channel (method dataplane.subscribe) instead of
// pcpd programming one itself. A reset is `dataplane.reset`, a transaction one
// `dataplane.ops` notification with a sequence number. The dataplane is up while at least
// one consumer is connected; a consumer that cannot keep up is disconnected (it would
// miss operations) and gets a full reset when it subscribes again. With no consumer, a
// transaction fails, so the shards answer NETWORK_FAILURE [RFC 6887 §7.4].
import type { DataplaneBackend } from "./manager.js";
import type { DataplaneOp } from "./ops.js";
import { ErrorCodes, PcpdError } from "../errors.js";

export interface DataplaneConsumer {
  /** false: this consumer could not take the message (it is dropped by the sink). */
  send(method: "dataplane.reset" | "dataplane.ops", params: unknown): boolean;
}

export class EventStreamBackend implements DataplaneBackend {
  readonly name = "events";
  private readonly consumers = new Set<DataplaneConsumer>();
  private seq = 0;
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

  private publish(method: "dataplane.reset" | "dataplane.ops", params: unknown): void {
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

  async close(): Promise<void> {
    this.consumers.clear();
  }
}
