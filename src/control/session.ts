// One control connection's state, kept as the uWS socket's user data. Handlers and the
// event fan-out write through `link`, not the uWS socket, so they stay independent of the
// transport (and testable without one).
import type { DataplaneConsumer } from "../dataplane/event-stream.js";
import type { Role, RpcFailure, RpcNotification, RpcSuccess } from "./protocol.js";

/** The connection's outgoing side. */
export interface Link {
  /** Queues one JSON message; false if it was dropped (over uWS's maxBackpressure) or the socket is gone. */
  send(message: RpcSuccess | RpcFailure | RpcNotification): boolean;
  /** Queues one frame already in JSON text (an event batch); false as for send. */
  sendText(text: string): boolean;
  /** Bytes queued and not yet sent. */
  bufferedAmount(): number;
  end(code: number, reason: string): void;
}

export interface Session {
  readonly role: Role;
  open: boolean;
  /** Request budget: refilled at requestsPerSecond, at most twice that (a token bucket). */
  tokens: number;
  last: number;
  /** Events dropped since the subscriber last caught up. */
  dropped: number;
  /** This connection consumes dataplane operations (dataplane.backend "events"). */
  dataplane?: DataplaneConsumer;
  /** Set when the socket opens. */
  link: Link;
}

const NOT_OPEN: Link = { send: () => false, sendText: () => false, bufferedAmount: () => 0, end: () => undefined };

export function newSession(role: Role, requestsPerSecond: number, now: number): Session {
  return { role, open: true, tokens: requestsPerSecond * 2, last: now, dropped: 0, link: NOT_OPEN };
}

/** Takes one request from the session's budget; false: over its rate. */
export function admit(s: Session, requestsPerSecond: number, now: number): boolean {
  s.tokens = Math.min(requestsPerSecond * 2, s.tokens + ((now - s.last) / 1000) * requestsPerSecond);
  s.last = now;
  if (s.tokens < 1) return false;
  s.tokens -= 1;
  return true;
}

/** A reply that could not be queued: the client reads too slowly to be answered, so it is closed. */
export function reply(s: Session, message: RpcSuccess | RpcFailure): void {
  if (!s.link.send(message) && s.open) s.link.end(1013, "client too slow: reply dropped");
}
