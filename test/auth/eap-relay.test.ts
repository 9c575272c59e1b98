// EAP-TTLS from the project's peer through RadiusEapRelay to a real FreeRADIUS: the verdicts,
// the MSK both ends derive (the relay from the Accept's MS-MPPE keys, RFC 2548; the peer from
// the TLS exporter, RFC 5281 §8), fragmentation both ways, EAP-Message split over 253 octets.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RadiusEapRelay } from "../../src/auth/eap-relay.js";
import { EapCode, encodeEap, EapType, parseEap } from "../../src/auth/eap.js";
import { EapTtlsPeer } from "../../src/auth/eap-ttls-peer.js";
import { authenticate } from "../helpers/aaa.js";
import { type FreeRadius, freeRadiusMissing, startFreeRadius } from "../helpers/freeradius.js";

if (freeRadiusMissing) console.warn(`skipping: ${freeRadiusMissing}`);

describe.skipIf(freeRadiusMissing)("RadiusEapRelay with a real FreeRADIUS (EAP-TTLS/PAP)", () => {
  let radius: FreeRadius;
  let relay: RadiusEapRelay;
  const peer = (password: string, o: { name?: string; fragmentSize?: number } = {}) =>
    new EapTtlsPeer({ identity: o.name ?? "alice", password, ca: radius.caPem, serverName: radius.serverName, fragmentSize: o.fragmentSize });

  beforeAll(async () => {
    radius = await startFreeRadius({
      port: 25210,
      users: [
        { name: "alice", password: "wonderland", sessionTimeoutS: 3600 },
        { name: "bob", password: "builder" },
      ],
      secret: "relay-test-secret",
    });
    relay = new RadiusEapRelay({
      servers: [{ host: radius.host, port: radius.port, secret: radius.secret }],
      timeoutMs: 2000,
      retries: 2,
      nasIdentifier: "pcpd-test",
    });
  });
  afterAll(async () => {
    await relay?.close();
    await radius?.stop();
  });

  it("accepts the right password; the relay's MSK (MS-MPPE keys) equals the peer's (TLS exporter)", async () => {
    const p = peer("wonderland");
    const run = await authenticate(relay, p, "alice-1");
    expect(run.verdict.kind, radius.output().slice(-3000)).toBe("accept");
    if (run.verdict.kind !== "accept") return;
    expect(p.status).toBe("success");
    expect(run.verdict.msk).toHaveLength(64);
    expect(Buffer.from(run.verdict.msk).equals(Buffer.from(p.msk!))).toBe(true);
    expect(p.emsk).toHaveLength(64);
    expect(Buffer.from(p.emsk!).equals(Buffer.from(p.msk!))).toBe(false);
    expect(run.verdict.sessionTimeoutS).toBe(3600);
    expect(parseEap(run.verdict.eap!)?.code).toBe(EapCode.SUCCESS);
    // The server's certificate flight went in 1000-octet EAP packets (fragment_size), and the
    // peer's in up to 1010: several EAP-Message attributes each way (RFC 3579 §3.1).
    expect(run.largestEap).toBeGreaterThanOrEqual(1000);
    expect(relay.stats().sessions).toBe(0);
  });

  it("fragments the peer's TLS flight (L/M flags, the server's acknowledgements) and still agrees on the MSK", async () => {
    const p = peer("wonderland", { fragmentSize: 64 });
    const run = await authenticate(relay, p, "alice-small-fragments");
    expect(run.verdict.kind).toBe("accept");
    if (run.verdict.kind === "accept") expect(Buffer.from(run.verdict.msk).equals(Buffer.from(p.msk!))).toBe(true);
    expect(p.status).toBe("success");
  });

  it("asks the server for smaller EAP packets with Framed-MTU (RFC 3579 §2.4)", async () => {
    const small = new RadiusEapRelay({
      servers: [{ host: radius.host, port: radius.port, secret: radius.secret }],
      timeoutMs: 2000,
      retries: 1,
      nasIdentifier: "pcpd-test",
      framedMtu: 400,
    });
    try {
      const p = peer("wonderland", { fragmentSize: 300 });
      const run = await authenticate(small, p, "alice-mtu");
      expect(run.verdict.kind).toBe("accept");
      // FreeRADIUS 3.2 takes Framed-MTU as the TLS data per packet: EAP packets of up to 400 + 10.
      expect(run.largestEap).toBeLessThanOrEqual(410);
    } finally {
      await small.close();
    }
  });

  it("rejects a wrong password and an unknown user with EAP-Failure; the peer fails too", async () => {
    for (const [name, password] of [
      ["alice", "not-wonderland"],
      ["mallory", "wonderland"],
    ]) {
      const p = peer(password, { name });
      const run = await authenticate(relay, p, `${name}-bad`);
      expect(run.verdict.kind).toBe("reject");
      if (run.verdict.kind === "reject") expect(parseEap(run.verdict.eap!)?.code).toBe(EapCode.FAILURE);
      expect(p.status).toBe("failure");
    }
  });

  it("runs concurrent sessions apart (State per session), each with its own MSK", async () => {
    const peers = [peer("wonderland"), peer("builder", { name: "bob" }), peer("wonderland"), peer("builder", { name: "bob" })];
    const runs = await Promise.all(peers.map((p, i) => authenticate(relay, p, `concurrent-${i}`)));
    expect(runs.map((r) => r.verdict.kind)).toEqual(["accept", "accept", "accept", "accept"]);
    const msks = runs.map((r) => (r.verdict.kind === "accept" ? Buffer.from(r.verdict.msk).toString("hex") : ""));
    expect(new Set(msks).size).toBe(4);
    runs.forEach((r, i) => {
      expect(r.verdict.kind === "accept" && Buffer.from(r.verdict.msk).equals(Buffer.from(peers[i].msk!))).toBe(true);
    });
  });

  it("refuses what is not an EAP-Response without asking the AAA server", async () => {
    const before = relay.stats().servers[0].requests;
    const verdict = await relay.exchange("not-a-response", encodeEap(EapCode.REQUEST, 1, EapType.IDENTITY));
    expect(verdict).toEqual({ kind: "reject", eap: null, reason: "not an EAP-Response" });
    expect(await relay.exchange("garbage", Uint8Array.of(2, 1, 0))).toMatchObject({ kind: "reject", eap: null });
    expect(relay.stats().servers[0].requests).toBe(before);
    expect(relay.stats().refusedInput).toBe(2);
  });

  it("a forgotten session starts over", async () => {
    const p = peer("wonderland");
    expect((await relay.exchange("forgotten", p.identityResponse(1))).kind).toBe("challenge");
    expect(relay.stats().sessions).toBe(1);
    relay.forget("forgotten");
    expect(relay.stats().sessions).toBe(0);
    const again = peer("wonderland");
    expect((await authenticate(relay, again, "forgotten")).verdict.kind).toBe("accept");
  });
});
