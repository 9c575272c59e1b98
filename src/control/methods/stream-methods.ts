// Subscriptions: live mapping events (fan-out with backpressure, fanout.ts) and the
// dataplane operations an external dataplane applies (dataplane.backend "events").
import { RpcError } from "../../errors.js";
import { RpcErrors } from "../protocol.js";
import type { Handlers, MethodContext } from "./context.js";

type StreamMethods = Pick<Handlers, "events.subscribe" | "events.unsubscribe" | "dataplane.subscribe" | "dataplane.unsubscribe" | "dataplane.activityAnswer">;

export function streamMethods(ctx: MethodContext): StreamMethods {
  const { server } = ctx;
  return {
    "events.subscribe": async (p, session) => {
      await ctx.events.subscribe(session, p.filter, p.kinds, p.latest);
      return { subscribed: true as const };
    },
    "events.unsubscribe": async (_p, session) => {
      await ctx.events.unsubscribe(session);
      return { subscribed: false as const };
    },
    "dataplane.subscribe": async (_p, session) => {
      const stream = server.dataplaneStream;
      if (!stream) throw new RpcError(RpcErrors.NOT_ENABLED, `dataplane.backend is "${server.config().dataplane.backend}", not "events"`);
      if (!session.dataplane) {
        // A consumer that cannot take a transaction would miss it: it is disconnected, and
        // starts again from a reset when it subscribes again.
        session.dataplane = {
          send: (method, params) => {
            if (session.link.bufferedAmount() <= ctx.eventBufferBytes && session.link.send({ jsonrpc: "2.0", method, params })) return true;
            if (session.open) session.link.end(1013, "dataplane consumer too slow: subscribe again for a reset");
            return false;
          },
        };
        stream.add(session.dataplane);
      }
      return { subscribed: true as const };
    },
    "dataplane.activityAnswer": async (p) => {
      const stream = server.dataplaneStream;
      if (!stream) throw new RpcError(RpcErrors.NOT_ENABLED, `dataplane.backend is "${server.config().dataplane.backend}", not "events"`);
      const accepted = stream.answerActivity(p.id, p.remaining);
      if (accepted === "count") throw new RpcError(RpcErrors.INVALID_PARAMS, `remaining: one number per query of dataplane.activity ${p.id}`);
      return { accepted };
    },
    "dataplane.unsubscribe": async (_p, session) => {
      if (session.dataplane) server.dataplaneStream?.remove(session.dataplane);
      session.dataplane = undefined;
      return { subscribed: false as const };
    },
  };
}
