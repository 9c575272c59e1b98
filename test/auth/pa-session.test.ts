// The PCP side of RFC 7652 against a small in-test EAP method (helpers/toy-eap.ts): the
// security association's life (client- and server-initiated sessions, key agreement,
// re-authentication, expiry, termination) over real UDP on loopback, with PaServer and the
// client library face to face. The codec and the listener are covered by the end-to-end tests.
import dgram from "node:dgram";
import { afterEach, describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import { PaServer } from "../../src/auth/pa-server.js";
import { PaFailure, PcpAuthClient } from "../../src/auth/pa-client.js";
import { commonTag, withoutCommonTag } from "../../src/auth/pa-wire.js";
import { mapRequest, nonceOf } from "../helpers/packets.js";
import { waitFor } from "../helpers/wait.js";
import { ToyPeer, ToyRelay } from "./helpers/toy-eap.js";

const USERS = { alice: "correct horse", bob: "battery staple" };
let port = 25100;

interface Harness {
  server: PaServer;
  relay: ToyRelay;
  socket: dgram.Socket;
  port: number;
  client(user?: string, password?: string): Promise<PcpAuthClient>;
  close(): Promise<void>;
}

const open: Harness[] = [];
afterEach(async () => {
  for (const h of open.splice(0)) await h.close();
});

/** PaServer on a UDP socket; MAP requests answered as the listener does (success, tagged). */
async function harness(
  o: {
    lifetimeS?: number;
    sessionTimeoutS?: number;
    required?: boolean;
    reauthAt?: number;
    /** Long EAP messages both ways (the toy method's Name fields). */
    nameLength?: number;
    /** Loses datagrams: true = not delivered (to the server / to the client). */
    loseToServer?: (m: Buffer) => boolean;
    loseToClient?: (m: Buffer) => boolean;
  } = {},
): Promise<Harness> {
  const relay = new ToyRelay(USERS, o.sessionTimeoutS, o.nameLength);
  const socket = dgram.createSocket("udp4");
  const p = port++;
  const clients: PcpAuthClient[] = [];
  const server = new PaServer({
    relay,
    epoch: () => 1234,
    maxSessions: 8,
    sessionsPerClient: 4,
    sessionLifetimeS: o.lifetimeS ?? 3600,
    reauthAt: o.reauthAt ?? 0.5,
    send: (s, msg, to, address) => {
      if (!o.loseToClient?.(msg)) (s as dgram.Socket).send(msg, to, address);
    },
    retransmitMs: 300,
  });
  socket.on("message", (m, r) => {
    if (o.loseToServer?.(m)) return;
    if ((m[1] & 0x7f) === W.OP_AUTHENTICATION) return server.onMessage(m, r.address, r.port, socket);
    const check = server.checkCommon(m, r.address);
    const reply = Buffer.from(m);
    reply[1] |= 0x80;
    if (check.status === "drop") return;
    if (check.status === "unknown") {
      reply[3] = W.RESULT_UNKNOWN_SESSION_ID;
      return socket.send(withoutCommonTag(reply), r.port, r.address);
    }
    if (check.status === "none" && o.required) {
      reply[3] = W.RESULT_AUTHENTICATION_REQUIRED;
      socket.send(reply, r.port, r.address);
      return server.startFor(r.address, r.port, socket);
    }
    const out = check.status === "ok" ? server.tagReply(reply, check.sa) : reply;
    if (out) socket.send(out, r.port, r.address);
  });
  await new Promise<void>((resolve) => socket.bind(p, "127.0.0.1", () => resolve()));
  const h: Harness = {
    server,
    relay,
    socket,
    port: p,
    async client(user = "alice", password = USERS.alice) {
      const c = new PcpAuthClient({
        server: { address: "127.0.0.1", port: p },
        newPeer: () => new ToyPeer(user, password, o.nameLength),
        timeoutMs: 5000,
        retransmitMs: 300,
      });
      await c.open();
      clients.push(c);
      return c;
    },
    async close() {
      for (const c of clients) c.close();
      server.close();
      await new Promise<void>((resolve) => socket.close(() => resolve()));
    },
  };
  open.push(h);
  return h;
}

const map = (n: number) => mapRequest({ client: "127.0.0.1", nonce: nonceOf(n) });

describe("PCP security associations (RFC 7652) with an in-test EAP method", () => {
  it("client-initiated: agrees on a key, tags requests and replies", async () => {
    const h = await harness();
    const c = await h.client();
    await c.authenticate();
    expect(c.established).toBe(true);
    // The client's confirmation is its last message: the server opens the SA on receipt.
    const sa = await waitFor(() => h.server.list().find((s) => s.state === "open"));
    expect(sa).toMatchObject({ sessionId: c.sessionId, state: "open", identity: "alice", prf: W.PRF_HMAC_SHA2_256, mac: W.AUTH_HMAC_SHA2_256_128, keyId: 1 });
    const r = await c.request(map(1));
    expect(r).toMatchObject({ tagged: true, result: 0 });
    expect(commonTag(r!.reply)).toMatchObject({ sessionId: c.sessionId, sequence: 0, keyId: 1 });
    expect(h.server.counters()).toMatchObject({ successes: 1, sessions: 1, established: 1 });
  });

  it("wrong password: AUTHENTICATION_FAILED, no SA left", async () => {
    const h = await harness();
    const c = await h.client("alice", "wrong");
    await expect(c.authenticate()).rejects.toMatchObject({ result: W.RESULT_AUTHENTICATION_FAILED });
    expect(h.server.list()).toEqual([]);
    expect(h.server.counters().failures).toEqual({ reject: 1 });
  });

  it("AAA unreachable: NETWORK_FAILURE, no SA left", async () => {
    const h = await harness();
    h.relay.unreachable = true;
    const c = await h.client();
    const e = await c.authenticate().catch((x: unknown) => x);
    expect(e).toBeInstanceOf(PaFailure);
    expect((e as PaFailure).result).toBe(W.RESULT_NETWORK_FAILURE);
    expect(h.server.list()).toEqual([]);
    expect(h.server.counters().failures).toEqual({ unreachable: 1 });
  });

  it("drops replayed, tampered and wrongly keyed requests; an unknown session gets UNKNOWN_SESSION_ID", async () => {
    const h = await harness();
    const c = await h.client();
    await c.authenticate();
    const first = c.sign(map(1));
    const second = c.sign(map(2));
    expect((await c.send(second))?.tagged).toBe(true);
    expect(await c.send(first, 600)).toBeUndefined(); // sequence below the last one seen [7652 §6.5]
    expect(h.server.counters().replays).toBeGreaterThanOrEqual(1);
    const tampered = c.sign(map(3));
    tampered[W.MP_INTERNAL_PORT + 1] ^= 1;
    expect(await c.send(tampered, 600)).toBeUndefined();
    expect(h.server.counters().tagFailures).toBeGreaterThanOrEqual(1);
    // The latest request again is a retransmission: answered [7652 §6.5].
    expect((await c.send(second))?.tagged).toBe(true);
    const foreign = Buffer.from(c.sign(map(4)));
    const t = commonTag(foreign)!;
    foreign.writeUInt32BE((c.sessionId ^ 0x5a5a5a5a) >>> 0, t.dataAt - 12);
    expect((await c.send(foreign))?.result).toBe(W.RESULT_UNKNOWN_SESSION_ID);
  });

  it("re-authenticates before the lifetime ends, new key, sequence numbers restarted", async () => {
    const h = await harness({ lifetimeS: 4 });
    const c = await h.client();
    await c.authenticate();
    expect(c.lifetimeS).toBe(4);
    await waitFor(() => c.authentications >= 2, { timeout: 6000 });
    expect(c.keyId).toBe(2);
    const r = await c.request(map(5));
    expect(r).toMatchObject({ tagged: true });
    expect(commonTag(r!.reply)).toMatchObject({ keyId: 2, sequence: 0 });
    expect(h.server.counters().reauthentications).toBe(1);
  });

  it("the AAA server's Session-Timeout shortens the lifetime; an expired session is terminated", async () => {
    const h = await harness({ sessionTimeoutS: 2, reauthAt: 0.95 });
    const c = await h.client();
    await c.authenticate();
    expect(c.lifetimeS).toBe(2);
    h.relay.unreachable = true; // the re-authentication cannot succeed
    await waitFor(() => c.terminatedByServer, { timeout: 6000 });
    // The server drops the SA once the client has answered the termination (it is "closing"
    // until then; under load the answer may not have arrived yet).
    await waitFor(() => h.server.list().length === 0, { timeout: 6000 });
    expect(() => c.sign(map(6))).toThrow(/no PCP security association/);
  });

  it("termination, server- and client-initiated", async () => {
    const h = await harness();
    const a = await h.client();
    await a.authenticate();
    expect(h.server.terminate(a.sessionId)).toBe(true);
    await waitFor(() => a.terminatedByServer);
    await waitFor(() => h.server.list().length === 0);
    const b = await h.client("bob", USERS.bob);
    await b.authenticate();
    await b.terminate();
    expect(h.server.list()).toEqual([]);
    expect(h.server.counters().terminations).toBe(2);
  });

  it("server-initiated: AUTHENTICATION_REQUIRED, then an unsolicited PA-Server message starts the session", async () => {
    const h = await harness({ required: true });
    const c = await h.client();
    const authenticated = c.whenAuthenticated();
    expect((await c.send(map(7)))?.result).toBe(W.RESULT_AUTHENTICATION_REQUIRED);
    await authenticated;
    expect((await c.request(map(7)))?.tagged).toBe(true);
  });

  it("EAP messages longer than a PA message go in sections, each acknowledged; a lost acknowledgement brings the section again [7652 §6.6, §6.3]", async () => {
    const isAck = (m: Buffer) => (m[1] & 0x7f) === W.OP_AUTHENTICATION && m[3] === 0 && m.includes(Buffer.from([W.OPTION_RECEIVED_PAK, 0, 0, 4]));
    const lost = { toServer: 0, toClient: 0 };
    // The first acknowledgement each way is lost; the sender's retransmission timer recovers.
    const h = await harness({
      nameLength: 2500,
      loseToServer: (m) => isAck(m) && lost.toServer++ === 0,
      loseToClient: (m) => isAck(m) && lost.toClient++ === 0,
    });
    const c = await h.client();
    await c.authenticate();
    expect(c.established).toBe(true);
    // 2 522-octet EAP messages each way: three sections each (at most 1100 octets a message).
    expect(c.sections).toEqual({ sent: 3, received: 3 });
    expect(lost.toServer).toBeGreaterThan(1);
    expect(lost.toClient).toBeGreaterThan(1);
    const r = await c.request(map(9));
    expect(r).toMatchObject({ tagged: true, result: W.RESULT_SUCCESS });
    // The re-authentication, whose messages carry a PA_AUTHENTICATION_TAG, is sectioned as well.
    await c.reauthenticate();
    expect(c.sections).toEqual({ sent: 6, received: 6 });
    expect((await c.request(map(10)))?.tagged).toBe(true);
  });

  it("detects an algorithm downgrade", async () => {
    const h = await harness();
    const c = new PcpAuthClient({
      server: { address: "127.0.0.1", port: h.port },
      newPeer: () => new ToyPeer("alice", USERS.alice),
      echoAlgorithms: () => ({ prfs: [], macs: [W.AUTH_HMAC_SHA2_256_128] }),
      timeoutMs: 3000,
      retransmitMs: 300,
    });
    await c.open();
    try {
      await c.authenticate(); // our side believes it succeeded…
      await waitFor(() => h.server.counters().failures.downgrade === 1);
      expect(h.server.list()).toEqual([]);
    } finally {
      c.close();
    }
  });
});
