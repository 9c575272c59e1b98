// The RADIUS transport's bad days, against a real FreeRADIUS: no server (a closed port:
// unreachable after exactly the configured attempts, counted), failover to the second server
// and back to the first after its hold-down, a lost request (retransmitted with the same
// Identifier and Request Authenticator, answered from the server's duplicate cache), and
// tampered replies (Response Authenticator, Message-Authenticator) silently discarded.
import { createHash, createHmac } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RadiusEapRelay } from "../../src/auth/eap-relay.js";
import { EapTtlsPeer } from "../../src/auth/eap-ttls-peer.js";
import { ErrorCodes, PcpdError } from "../../src/errors.js";
import { authenticate, startRadiusProxy } from "../helpers/aaa.js";
import { type FreeRadius, freeRadiusMissing, startFreeRadius } from "../helpers/freeradius.js";

const SECRET = "failover-test-secret";
const USERS = [{ name: "alice", password: "wonderland" }];
/** Ports of this file (authaaa's range 25200–25299); nothing listens on CLOSED. */
const LIVE = 25220;
const CLOSED = 25229;
const COMEBACK = 25228;
const PROXY = 25221;

describe("RadiusEapRelay configuration", () => {
  it("refuses bad RADIUS settings with RADIUS_BAD_CONFIG naming each", () => {
    let error: unknown;
    try {
      new RadiusEapRelay({ servers: [{ host: "radius.example", port: 0, secret: "" }], timeoutMs: 0, retries: -1, nasIdentifier: "" });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(PcpdError);
    expect((error as PcpdError).code).toBe(ErrorCodes.RADIUS_BAD_CONFIG);
    const message = (error as Error).message;
    for (const field of ["servers[0].host", "servers[0].port", "servers[0].secret", "timeoutMs", "retries", "nasIdentifier"]) expect(message).toContain(field);
    expect(() => new RadiusEapRelay({ servers: [], timeoutMs: 100, retries: 0, nasIdentifier: "x" })).toThrow(/at least one RADIUS server/);
  });
});

if (freeRadiusMissing) console.warn(`skipping: ${freeRadiusMissing}`);

describe.skipIf(freeRadiusMissing)("RadiusEapRelay: timeouts, failover, retransmission, tampering (real FreeRADIUS)", () => {
  let radius: FreeRadius;
  const stops: (() => Promise<void>)[] = [];
  const peer = () => new EapTtlsPeer({ identity: "alice", password: "wonderland", ca: radius.caPem, serverName: radius.serverName });
  const relayTo = (ports: number[], o: { timeoutMs?: number; retries?: number; holdDownMs?: number; now?: () => number } = {}) => {
    const relay = new RadiusEapRelay({
      servers: ports.map((port) => ({ host: "127.0.0.1", port, secret: SECRET })),
      timeoutMs: o.timeoutMs ?? 300,
      retries: o.retries ?? 2,
      holdDownMs: o.holdDownMs,
      now: o.now,
      nasIdentifier: "pcpd-failover-test",
    });
    stops.push(() => relay.close());
    return relay;
  };

  beforeAll(async () => {
    radius = await startFreeRadius({ port: LIVE, users: USERS, secret: SECRET });
    stops.push(() => radius.stop());
  });
  afterAll(async () => {
    const results = await Promise.allSettled(stops.reverse().map((stop) => stop()));
    for (const r of results) if (r.status === "rejected") throw r.reason;
  });

  it("answers unreachable after the configured attempts when no server answers, then holds it down", async () => {
    const relay = relayTo([CLOSED], { timeoutMs: 150, retries: 3, holdDownMs: 60_000 });
    const started = performance.now();
    const verdict = await relay.exchange("nobody-home", peer().identityResponse(1));
    const elapsed = performance.now() - started;
    expect(verdict.kind).toBe("unreachable");
    expect((verdict as { reason: string }).reason).toContain(`127.0.0.1:${CLOSED}`);
    expect(elapsed).toBeGreaterThanOrEqual(4 * 150 - 20);
    expect(relay.stats().servers[0]).toMatchObject({ requests: 1, retransmissions: 3, timeouts: 1, holdDowns: 1, skipped: 0, accepts: 0, heldDown: true });
    // Held down: the next request is not even sent.
    const again = await relay.exchange("nobody-home-2", peer().identityResponse(1));
    expect(again).toEqual({ kind: "unreachable", reason: `127.0.0.1:${CLOSED} held down` });
    expect(relay.stats().servers[0]).toMatchObject({ requests: 1, skipped: 1 });
    expect(relay.stats().verdicts.unreachable).toBe(2);
  });

  it("fails over to the second server, skips the first while held down, and returns to it afterwards", async () => {
    // The hold-down runs on a test clock: a slow machine cannot make it lapse early.
    let clock = 0;
    const relay = relayTo([COMEBACK, LIVE], { timeoutMs: 200, retries: 1, holdDownMs: 30_000, now: () => clock });
    const first = await authenticate(relay, peer(), "failover-1");
    expect(first.verdict.kind).toBe("accept");
    let [a, b] = relay.stats().servers;
    expect(a).toMatchObject({ requests: 1, retransmissions: 1, timeouts: 1, holdDowns: 1, heldDown: true });
    expect(b.accepts).toBe(1);
    // The conversation stayed on the server that answered (its State means nothing elsewhere).
    expect(b.requests).toBe(first.rounds);

    const second = await authenticate(relay, peer(), "failover-2");
    expect(second.verdict.kind).toBe("accept");
    [a, b] = relay.stats().servers;
    expect(a).toMatchObject({ requests: 1, skipped: 1 });
    expect(b.accepts).toBe(2);

    // The first server comes back; once its hold-down is over it is the first choice again.
    const back = await startFreeRadius({ port: COMEBACK, users: USERS, secret: SECRET });
    stops.push(() => back.stop());
    clock += 29_999;
    expect(relay.stats().servers[0].heldDown).toBe(true);
    clock += 2;
    expect(relay.stats().servers[0].heldDown).toBe(false);
    const p = new EapTtlsPeer({ identity: "alice", password: "wonderland", ca: back.caPem, serverName: back.serverName });
    const third = await authenticate(relay, p, "failover-3");
    expect(third.verdict.kind).toBe("accept");
    [a, b] = relay.stats().servers;
    expect(a).toMatchObject({ accepts: 1, holdDowns: 1 });
    expect(b.accepts).toBe(2);
    if (third.verdict.kind === "accept") expect(Buffer.from(third.verdict.msk).equals(Buffer.from(p.msk!))).toBe(true);
  });

  it("retransmits a lost request with the same Identifier and authenticator; the server answers it", async () => {
    const seen: Buffer[] = [];
    const proxy = await startRadiusProxy(PROXY, LIVE, {
      onRequest: (n, request) => {
        seen.push(request);
        return n === 3 ? "drop" : "pass";
      },
    });
    stops.push(() => proxy.close());
    // Timeouts long enough that a busy machine's slow answer is not a second retransmission.
    const relay = relayTo([PROXY], { timeoutMs: 1000, retries: 3 });
    const p = peer();
    const run = await authenticate(relay, p, "lossy");
    expect(run.verdict.kind).toBe("accept");
    if (run.verdict.kind === "accept") expect(Buffer.from(run.verdict.msk).equals(Buffer.from(p.msk!))).toBe(true);
    // The retransmission is the lost datagram, byte for byte.
    expect(seen[3].equals(seen[2])).toBe(true);
    expect(relay.stats().servers[0]).toMatchObject({ timeouts: 0, holdDowns: 0 });
    expect(relay.stats().servers[0].retransmissions).toBeGreaterThanOrEqual(1);
    await proxy.close();
  });

  it("discards replies with a bad Response Authenticator or Message-Authenticator, and takes the genuine one", async () => {
    /** RFC 2865 §3: the Response Authenticator recomputed after a change, as only the secret's holder can. */
    const resign = (reply: Buffer, request: Buffer) => {
      const out = Buffer.from(reply);
      request.copy(out, 4, 4, 20);
      createHash("md5").update(out).update(SECRET).digest().copy(out, 4);
      return out;
    };
    const messageAuthenticatorAt = (reply: Buffer) => {
      for (let off = 20; off < reply.length; off += reply[off + 1]) if (reply[off] === 80) return off + 2;
      throw new Error("no Message-Authenticator");
    };
    const proxy = await startRadiusProxy(PROXY, LIVE, {
      onReply: (n, reply, request) => {
        if (n === 1) {
          // A forged answer: its Response Authenticator does not verify.
          const forged = Buffer.from(reply);
          forged[4] ^= 0xff;
          return forged;
        }
        if (n === 3 && request) {
          // A correct Response Authenticator over a wrong Message-Authenticator.
          const bad = Buffer.from(reply);
          const at = messageAuthenticatorAt(bad);
          createHmac("md5", "not-the-secret").update(bad).digest().copy(bad, at);
          return resign(bad, request);
        }
        return reply;
      },
    });
    stops.push(() => proxy.close());
    const relay = relayTo([PROXY], { timeoutMs: 1000, retries: 3 });
    const run = await authenticate(relay, peer(), "tampered");
    expect(run.verdict.kind).toBe("accept");
    expect(relay.stats().servers[0]).toMatchObject({ badAuthenticator: 1, badMessageAuthenticator: 1, timeouts: 0 });
    // Each discarded reply left its request unanswered: it was sent again.
    expect(relay.stats().servers[0].retransmissions).toBeGreaterThanOrEqual(2);
    await proxy.close();
  });
});
