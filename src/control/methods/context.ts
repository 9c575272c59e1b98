// What every method handler may use, and the handler type: validated params in (the
// method's schema output), its result out; failures are thrown as typed errors
// (src/errors.ts) and turned into JSON-RPC errors by the dispatcher.
import type { RunningServer } from "../../server/server.js";
import type { EventFanout } from "../fanout.js";
import type { Method, ParamsOf, Results } from "../protocol.js";
import type { RateSampler } from "../rates.js";
import type { Session } from "../session.js";

export interface MethodContext {
  server: RunningServer;
  version: string;
  startedAt: Date;
  rates: RateSampler;
  events: EventFanout;
  /** Unsent bytes above which a dataplane consumer is disconnected (control.eventBufferBytes). */
  eventBufferBytes: number;
  /** Re-reads the configuration source and applies it (the CLI's SIGHUP path). */
  reloadConfig: () => Promise<string[]>;
}

export type Handler<M extends Method> = (params: ParamsOf<M>, session: Session) => Promise<Results[M]>;
export type Handlers = { [M in Method]: Handler<M> };
