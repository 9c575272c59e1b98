// Test plumbing for the AAA side of PCP authentication: one EAP-TTLS authentication run from
// the project's peer through the RADIUS relay, and a UDP proxy between the relay and a
// RADIUS server that can drop or rewrite datagrams (retransmission and tampering cases).
import { createSocket, type RemoteInfo } from "node:dgram";
import type { AaaVerdict, RadiusEapRelay } from "../../src/auth/eap-relay.js";
import { identityRequest } from "../../src/auth/eap.js";
import type { EapTtlsPeer } from "../../src/auth/eap-ttls-peer.js";

export interface AuthenticationRun {
  verdict: AaaVerdict;
  /** Access-Requests the relay sent for it (rounds). */
  rounds: number;
  /** Largest EAP packet the relay carried in either direction. */
  largestEap: number;
}

/** Identity, then every EAP message of `peer` through `relay` until a final verdict (bounded). */
export async function authenticate(relay: RadiusEapRelay, peer: EapTtlsPeer, session: string, maxRounds = 60): Promise<AuthenticationRun> {
  let message: Uint8Array | null = peer.identityResponse(identityRequest(1));
  let largestEap = message.length;
  for (let rounds = 1; rounds <= maxRounds; rounds++) {
    const verdict = await relay.exchange(session, message, { callingStationId: "192.0.2.1" });
    if (verdict.kind === "unreachable") return { verdict, rounds, largestEap };
    if (verdict.eap) largestEap = Math.max(largestEap, verdict.eap.length);
    // The peer sees the final EAP-Success/Failure too: its status must agree with the verdict.
    message = verdict.eap ? await peer.receive(verdict.eap) : null;
    if (verdict.kind !== "challenge") return { verdict, rounds, largestEap };
    if (!message) throw new Error(`the peer stopped (${peer.status}) while the AAA server challenged`);
    largestEap = Math.max(largestEap, message.length);
  }
  throw new Error(`no final verdict within ${maxRounds} rounds`);
}

export interface ProxyHooks {
  /** The n-th request (from 1): "drop" to lose it. */
  onRequest?: (n: number, request: Buffer) => "pass" | "drop";
  /** The n-th reply (from 1) and the request it answers: the datagram to deliver, or null to lose it. */
  onReply?: (n: number, reply: Buffer, request: Buffer | undefined) => Buffer | null;
}

export interface RadiusProxy {
  port: number;
  requests: number;
  replies: number;
  close(): Promise<void>;
}

/** A UDP proxy on 127.0.0.1:`port` to 127.0.0.1:`target` for one client (the relay's socket). */
export async function startRadiusProxy(port: number, target: number, hooks: ProxyHooks = {}): Promise<RadiusProxy> {
  const front = createSocket("udp4");
  const back = createSocket("udp4");
  let client: RemoteInfo | null = null;
  const byId = new Map<number, Buffer>();
  let closed: Promise<void> | null = null;
  const proxy: RadiusProxy = {
    port,
    requests: 0,
    replies: 0,
    close: () => {
      closed ??= Promise.all([new Promise<void>((r) => front.close(() => r())), new Promise<void>((r) => back.close(() => r()))]).then(() => {});
      return closed;
    },
  };
  front.on("message", (msg, rinfo) => {
    client = rinfo;
    proxy.requests++;
    byId.set(msg[1], Buffer.from(msg));
    if ((hooks.onRequest?.(proxy.requests, msg) ?? "pass") === "pass") back.send(msg, target, "127.0.0.1");
  });
  back.on("message", (msg) => {
    proxy.replies++;
    const out = hooks.onReply ? hooks.onReply(proxy.replies, Buffer.from(msg), byId.get(msg[1])) : msg;
    if (out && client) front.send(out, client.port, client.address);
  });
  await Promise.all([new Promise<void>((r) => front.bind(port, "127.0.0.1", () => r())), new Promise<void>((r) => back.bind(0, "127.0.0.1", () => r()))]);
  return proxy;
}
