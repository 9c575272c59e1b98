// Conformance checklist §3.4–§3.9 and §3.12: the mapping engine's items, one test per
// item named by number. Items that need packets through a real NAT are the dataplane's
// (issue #6); their engine part is tested here and named as such.
import { describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import { decodeRecords, type PacketEngine } from "../../src/engine/packet-engine.js";
import type { Config } from "../../src/config/schema.js";
import { engineConfig, engineFrom, merge, type DeepPartial } from "../helpers/engine-config.js";
import { CLIENT, assigned, filter, mapRequest, natPmpMap, nonceOf, peerRequest, preferFailure, serveOne, thirdParty, u16, u32 } from "../helpers/packets.js";

const T0 = 1000;
const POOL = ["203.0.113.1", "203.0.113.2"];
function engineWith(over: DeepPartial<Config> = {}): PacketEngine {
  return engineFrom(engineConfig(merge<DeepPartial<Config>>({ pool: { addresses: POOL } }, over)), T0, { seed: 7n });
}
const TP = W.INGRESS_SUBSCRIBER | W.INGRESS_THIRD_PARTY;
/** Activity tracking on (an event-stream dataplane answers), MAP lifetimes down to 2 s. */
const TRACKING: DeepPartial<Config> = { lifetimes: { min: 2 }, dataplane: { backend: "events", activity: { enabled: true } } };
/** The activity queries the engine queued (decoded event-layout records). */
const queries = (e: PacketEngine) => {
  const bytes = e.takeActivityQueries();
  return bytes ? decodeRecords({ bytes }) : [];
};

describe("§3.4 MAP", () => {
  it("item 47: MAP TCP 8080 → SUCCESS, nonce/protocol/port echoed, external port and v4 address from the pool", () => {
    const e = engineWith();
    const req = mapRequest({ protocol: 6, internalPort: 8080, lifetime: 3600 });
    const o = serveOne(e, req, T0);
    expect(o).toMatchObject({ verdict: "reply", result: 0 });
    expect(o.response.subarray(24, 40)).toEqual(req.subarray(24, 40).map((b, i) => (i >= 13 ? 0 : b)));
    expect(u16(o.response, 40)).toBe(8080);
    const a = assigned(o);
    expect(a.port).toBeGreaterThanOrEqual(1024);
    expect(POOL).toContain(a.address);
    expect(u32(o.response, 4)).toBe(3600);
  });

  it("item 48: lifetime 10 → configured minimum 120; 10^6 → configured maximum 86400", () => {
    const e = engineWith();
    expect(u32(serveOne(e, mapRequest({ internalPort: 1, lifetime: 10 }), T0).response, 4)).toBe(120);
    expect(u32(serveOne(e, mapRequest({ internalPort: 2, lifetime: 1_000_000 }), T0).response, 4)).toBe(86400);
  });

  it("item 50: MAP protocol 132 (SCTP) on a NAT without SCTP → UNSUPP_PROTOCOL", () => {
    expect(serveOne(engineWith(), mapRequest({ protocol: 132 }), T0).result).toBe(W.RESULT_UNSUPP_PROTOCOL);
  });

  it("item 51: MAP protocol 17, internal port 0 (all ports) → UNSUPP_PROTOCOL", () => {
    expect(serveOne(engineWith(), mapRequest({ protocol: 17, internalPort: 0 }), T0).result).toBe(W.RESULT_UNSUPP_PROTOCOL);
  });

  it("item 52: MAP protocol 0, port 0 (DMZ) → UNSUPP_PROTOCOL", () => {
    expect(serveOne(engineWith(), mapRequest({ protocol: 0, internalPort: 0 }), T0).result).toBe(W.RESULT_UNSUPP_PROTOCOL);
  });

  it("item 53: a free suggested port in the subscriber's block is granted", () => {
    const e = engineWith();
    const first = assigned(serveOne(e, mapRequest({ internalPort: 1 }), T0));
    const wanted = first.port % 2 ? first.port - 1 : first.port + 1; // same block (blocks are 512-aligned from 1024)
    const o = serveOne(e, mapRequest({ internalPort: 2, externalPort: wanted, externalAddress: first.address }), T0);
    expect(assigned(o)).toEqual({ port: wanted, address: first.address });
  });

  it("item 54: a suggestion owned by another subscriber → SUCCESS on a different port", () => {
    const e = engineWith();
    const a = assigned(serveOne(e, mapRequest({ internalPort: 1 }), T0));
    const o = serveOne(e, mapRequest({ client: "192.0.2.2", internalPort: 1, externalPort: a.port, externalAddress: a.address }), T0, { source: "192.0.2.2" });
    expect(o.result).toBe(0);
    expect(assigned(o)).not.toEqual(a);
  });

  it("item 55: a suggested external address the NAT does not own → SUCCESS on an owned address", () => {
    const o = serveOne(engineWith(), mapRequest({ externalAddress: "198.51.100.1", externalPort: 3000 }), T0);
    expect(o.result).toBe(0);
    expect(POOL).toContain(assigned(o).address);
  });

  it("item 56: UDP 5350/5351 are never granted, even when suggested", () => {
    const e = engineWith({ pool: { portMin: 5120, blockSize: 256 } });
    for (const port of [5350, 5351]) {
      const o = serveOne(e, mapRequest({ protocol: 17, internalPort: port, externalPort: port, externalAddress: POOL[0] }), T0);
      expect(o.result).toBe(0);
      expect(assigned(o).port).not.toBe(port);
    }
  });

  it("item 57: a suggested 127.0.0.1 or multicast address is not honoured", () => {
    const e = engineWith();
    for (const bad of ["127.0.0.1", "224.0.0.1"]) {
      const o = serveOne(e, mapRequest({ internalPort: bad.length, externalAddress: bad, externalPort: 4000 }), T0);
      expect(o.result).toBe(0);
      expect(POOL).toContain(assigned(o).address);
    }
  });

  it("item 58: refresh with the same nonce and another suggestion → same external, lifetime updated", () => {
    const e = engineWith();
    const a = serveOne(e, mapRequest({ lifetime: 600 }), T0);
    const b = serveOne(e, mapRequest({ lifetime: 900, externalPort: 9999 }), T0 + 100);
    expect(assigned(b)).toEqual(assigned(a));
    expect(u32(b.response, 4)).toBe(900);
    expect(e.lookup(CLIENT, 6, 8080)?.mapExpiry).toBe(T0 + 100 + 900);
  });

  it("item 59: same endpoint, different nonce → NOT_AUTHORIZED with the remaining lifetime, mapping untouched", () => {
    const e = engineWith();
    const a = serveOne(e, mapRequest({ lifetime: 600 }), T0);
    const o = serveOne(e, mapRequest({ lifetime: 600, nonce: nonceOf(9) }), T0 + 250);
    expect(o.result).toBe(W.RESULT_NOT_AUTHORIZED);
    expect(u32(o.response, 4)).toBe(350);
    expect(e.lookup(CLIENT, 6, 8080)).toMatchObject({ externalPort: assigned(a).port, mapExpiry: T0 + 600 });
  });

  it("item 59 (relaxed nonce policy): a new nonce replaces the old one for the same endpoint only", () => {
    const e = engineWith({ noncePolicy: "relaxed" });
    const a = serveOne(e, mapRequest({ lifetime: 600 }), T0);
    const b = serveOne(e, mapRequest({ lifetime: 600, nonce: nonceOf(9) }), T0 + 10);
    expect(b.result).toBe(0);
    expect(assigned(b)).toEqual(assigned(a));
  });

  it("item 60: a static mapping answers with its external, lifetime 0xFFFFFFFF, nonce echoed not stored", () => {
    const e = engineWith();
    expect(e.addStatic(CLIENT, 6, 8080, POOL[1], 4443)).toBe(0);
    for (const n of [1, 2]) {
      const o = serveOne(e, mapRequest({ nonce: nonceOf(n) }), T0);
      expect(o.result).toBe(0);
      expect(assigned(o)).toEqual({ port: 4443, address: POOL[1] });
      expect(u32(o.response, 4)).toBe(0xffffffff);
      expect(Array.from(o.response.subarray(24, 36))).toEqual(nonceOf(n));
    }
  });

  it("item 61: MAP on an endpoint with a PEER-created mapping reuses its external address:port", () => {
    const e = engineWith();
    const p = serveOne(e, peerRequest({ protocol: 6, internalPort: 8080 }), T0);
    const m = serveOne(e, mapRequest({ protocol: 6, internalPort: 8080 }), T0);
    expect(m.result).toBe(0);
    expect(assigned(m)).toEqual(assigned(p));
  });

  it("item 62 (engine part; forwarding is the dataplane's, issue #6): a TCP MAP creates no UDP mapping", () => {
    const e = engineWith();
    serveOne(e, mapRequest({ protocol: 6 }), T0);
    expect(e.lookup(CLIENT, 6, 8080)).toBeDefined();
    expect(e.lookup(CLIENT, 17, 8080)).toBeUndefined();
  });

  it("item 63: MAP N+1 for a subscriber with quota N → USER_EX_QUOTA with the short lifetime", () => {
    const e = engineWith({ quotas: { mappingsPerSubscriber: 3 } });
    for (let i = 1; i <= 3; i++) expect(serveOne(e, mapRequest({ internalPort: i }), T0).result).toBe(0);
    const o = serveOne(e, mapRequest({ internalPort: 4 }), T0);
    expect(o.result).toBe(W.RESULT_USER_EX_QUOTA);
    expect(u32(o.response, 4)).toBe(30);
  });

  // Item 64 (inbound ICMP errors reach the internal host) is proven with real traffic through
  // the nftables dataplane: test/integration/nftables.test.ts.
  it.todo("item 65: SCTP through a non-port-rewriting NAT (SCTP is not offered: item 50 covers the refusal)");

  it("item 66: after deletion the port is held: others cannot get it, the same client (port + nonce) reclaims it", () => {
    const e = engineWith({ pool: { blockSize: 64, maxBlocksPerSubscriber: 1 } });
    const a = assigned(serveOne(e, mapRequest({ internalPort: 1 }), T0));
    expect(serveOne(e, mapRequest({ internalPort: 1, lifetime: 0 }), T0 + 1).result).toBe(0);
    // Another internal port of the same subscriber suggesting it: not the same client.
    expect(assigned(serveOne(e, mapRequest({ internalPort: 2, nonce: nonceOf(5), externalPort: a.port, externalAddress: a.address }), T0 + 2))).not.toEqual(a);
    // The same client (internal port 1, same nonce) takes it back.
    expect(assigned(serveOne(e, mapRequest({ internalPort: 1, externalPort: a.port, externalAddress: a.address }), T0 + 3))).toEqual(a);
    expect(e.engineStats().held).toBe(0n);
  });

  it("item 66: the hold ends after holdDown seconds and the port returns to the pool", () => {
    const e = engineWith({ lifetimes: { holdDown: 120 } });
    const a = assigned(serveOne(e, mapRequest({ lifetime: 200 }), T0));
    e.expire(T0 + 200);
    expect(e.engineStats()).toMatchObject({ mappings: 0n, held: 1n, expired: 1n });
    e.expire(T0 + 319);
    expect(e.engineStats().held).toBe(1n);
    e.expire(T0 + 320);
    expect(e.engineStats()).toMatchObject({ held: 0n, released: 1n, blocks: 0n, subscribers: 0n });
    expect(e.drainEvents().map((v) => v.kind)).toEqual(["create", "expire", "release"]);
    expect(a.port).toBeGreaterThan(0);
  });

  it("item 67 (decision): a MAP asking for an IPv6 external address on an IPv4-only pool → UNSUPP_PROTOCOL", () => {
    expect(serveOne(engineWith(), mapRequest({ externalAddress: "::" }), T0).result).toBe(W.RESULT_UNSUPP_PROTOCOL);
  });

  it("item 67: with an IPv6 pool address, `::` selects the IPv6 external family", () => {
    const e = engineWith({ pool: { addresses: ["203.0.113.1", "2001:db8::1"] } });
    const o = serveOne(e, mapRequest({ externalAddress: "::" }), T0);
    expect(o.result).toBe(0);
    expect(assigned(o).address).toBe("2001:db8::1");
  });
});

describe("§3.5 deletion and lifetimes", () => {
  it("item 69: lifetime 0 for the client's own mapping → SUCCESS, lifetime 0, mapping gone", () => {
    const e = engineWith();
    serveOne(e, mapRequest(), T0);
    const o = serveOne(e, mapRequest({ lifetime: 0 }), T0 + 5);
    expect(o.result).toBe(0);
    expect(u32(o.response, 4)).toBe(0);
    expect(e.lookup(CLIENT, 6, 8080)).toBeUndefined();
    expect(e.engineStats()).toMatchObject({ mappings: 0n, held: 1n, deleted: 1n });
  });

  it("item 70: deleting a mapping that does not exist → SUCCESS, lifetime 0", () => {
    const o = serveOne(engineWith(), mapRequest({ lifetime: 0 }), T0);
    expect(o.result).toBe(0);
    expect(u32(o.response, 4)).toBe(0);
  });

  it("item 71: delete of a static mapping → NOT_AUTHORIZED", () => {
    const e = engineWith();
    e.addStatic(CLIENT, 6, 8080, POOL[0], 2000);
    expect(serveOne(e, mapRequest({ lifetime: 0 }), T0).result).toBe(W.RESULT_NOT_AUTHORIZED);
  });

  it("item 72: delete of a PEER-created mapping → NOT_AUTHORIZED", () => {
    const e = engineWith();
    serveOne(e, peerRequest({ protocol: 6, internalPort: 8080 }), T0);
    expect(serveOne(e, mapRequest({ lifetime: 0 }), T0).result).toBe(W.RESULT_NOT_AUTHORIZED);
  });

  it("item 73: delete with another nonce → NOT_AUTHORIZED, mapping kept", () => {
    const e = engineWith();
    serveOne(e, mapRequest(), T0);
    expect(serveOne(e, mapRequest({ lifetime: 0, nonce: nonceOf(3) }), T0).result).toBe(W.RESULT_NOT_AUTHORIZED);
    expect(e.lookup(CLIENT, 6, 8080)?.flags).toBe(W.MAPF_INBOUND);
  });

  it("item 75: the delete reply keeps the suggested address/port fields as sent", () => {
    const e = engineWith();
    serveOne(e, mapRequest(), T0);
    const o = serveOne(e, mapRequest({ lifetime: 0 }), T0);
    expect(assigned(o)).toEqual({ port: 0, address: "0.0.0.0" });
  });

  it("item 76: delete with `::` removes only the IPv6-external mapping of the endpoint", () => {
    const e = engineWith({ pool: { addresses: ["203.0.113.1", "2001:db8::1"] } });
    serveOne(e, mapRequest(), T0);
    serveOne(e, mapRequest({ externalAddress: "::" }), T0);
    expect(serveOne(e, mapRequest({ lifetime: 0, externalAddress: "::" }), T0).result).toBe(0);
    expect(e.lookup(CLIENT, 6, 8080, 4)?.flags).toBe(W.MAPF_INBOUND);
    expect(e.lookup(CLIENT, 6, 8080, 6)).toBeUndefined();
  });

  // Items 77, 78, 91: the engine's part of traffic-driven lifetimes (assembly/activity.ts);
  // test/integration/nftables-activity.test.ts proves them with real traffic through nftables.
  it("item 77: delete while the host sent traffic 10 s ago → SUCCESS with the remaining idle time, mapping kept until then", () => {
    const e = engineWith(TRACKING);
    serveOne(e, mapRequest({ lifetime: 600 }), T0);
    expect(serveOne(e, mapRequest({ lifetime: 0 }), T0 + 100).verdict).toBe("wait"); // the dataplane is asked first
    const [q] = queries(e);
    expect(q).toMatchObject({ protocol: 6, internalPort: 8080 });
    expect(e.activityAnswer(T0 + 100, q.mapping, q.protocol, q.externalPort, 110)).toBe(true); // idle timeout 120, last packet 10 s ago
    const o = serveOne(e, mapRequest({ lifetime: 0 }), T0 + 100); // the same request, served again
    expect(o).toMatchObject({ verdict: "reply", result: 0 });
    expect(u32(o.response, 4)).toBe(110);
    expect(e.lookup(CLIENT, 6, 8080)?.flags).toBe(W.MAPF_INBOUND);
    e.expire(T0 + 209);
    expect(e.engineStats().mappings).toBe(1n);
    e.expire(T0 + 210); // its idle end: asked again; idle now → ended
    const [again] = queries(e);
    expect(e.engineStats().mappings).toBe(1n);
    e.activityAnswer(T0 + 210, again.mapping, again.protocol, again.externalPort, 0);
    expect(e.engineStats().mappings).toBe(0n);
  });

  it("item 77 (idle host): the delete ends the mapping at once, lifetime 0", () => {
    const e = engineWith(TRACKING);
    serveOne(e, mapRequest({ lifetime: 600 }), T0);
    expect(serveOne(e, mapRequest({ lifetime: 0 }), T0 + 100).verdict).toBe("wait");
    const [q] = queries(e);
    e.activityAnswer(T0 + 100, q.mapping, q.protocol, q.externalPort, 0);
    const o = serveOne(e, mapRequest({ lifetime: 0 }), T0 + 101);
    expect(u32(o.response, 4)).toBe(0);
    expect(e.lookup(CLIENT, 6, 8080)).toBeUndefined();
  });

  it("item 78: a renewal asking less than the natural (traffic) remaining time gets that time; more is honoured", () => {
    const e = engineWith(TRACKING); // TCP idle timeout 7440 s
    serveOne(e, mapRequest({ lifetime: 600 }), T0);
    expect(serveOne(e, mapRequest({ lifetime: 300 }), T0 + 10).verdict).toBe("wait");
    const [q] = queries(e);
    e.activityAnswer(T0 + 10, q.mapping, q.protocol, q.externalPort, 7000);
    expect(u32(serveOne(e, mapRequest({ lifetime: 300 }), T0 + 10).response, 4)).toBe(7000);
    // A renewal at least as long as the idle timeout never needs to ask.
    expect(u32(serveOne(e, mapRequest({ lifetime: 7440 }), T0 + 20).response, 4)).toBe(7440);
    expect(queries(e)).toEqual([]);
    // Traffic that ends sooner than the request: the request's lifetime.
    expect(serveOne(e, mapRequest({ lifetime: 300 }), T0 + 30).verdict).toBe("wait");
    const [r] = queries(e);
    e.activityAnswer(T0 + 30, r.mapping, r.protocol, r.externalPort, 50);
    expect(u32(serveOne(e, mapRequest({ lifetime: 300 }), T0 + 30).response, 4)).toBe(300);
  });

  it("items 77/78 without activity tracking: decided at once, as before", () => {
    const e = engineWith();
    serveOne(e, mapRequest({ lifetime: 600 }), T0);
    expect(u32(serveOne(e, mapRequest({ lifetime: 300 }), T0 + 10).response, 4)).toBe(300);
    expect(u32(serveOne(e, mapRequest({ lifetime: 0 }), T0 + 20).response, 4)).toBe(0);
    expect(queries(e)).toEqual([]);
  });
  // Item 79 (TCP FIN/RST does not end a MAP mapping): the engine never sees TCP state, and
  // test/integration/nftables.test.ts connects again after a closed connection.

  it("item 82: a mapping not renewed is removed at expiry (engine part; traffic drop is issue #6)", () => {
    const e = engineWith();
    serveOne(e, mapRequest({ lifetime: 300 }), T0);
    e.expire(T0 + 299);
    expect(e.engineStats().mappings).toBe(1n);
    e.expire(T0 + 300);
    expect(e.engineStats()).toMatchObject({ mappings: 0n, expired: 1n });
  });
});

describe("§3.6 PEER", () => {
  it("item 83: PEER UDP for a new 5-tuple → SUCCESS, mapping created, fields echoed", () => {
    const e = engineWith();
    const req = peerRequest({ protocol: 17, internalPort: 5000, remotePort: 3478, remoteAddress: "198.51.100.9" });
    const o = serveOne(e, req, T0);
    expect(o.result).toBe(0);
    expect(Array.from(o.response.subarray(24, 37))).toEqual(Array.from(req.subarray(24, 37)));
    expect(Array.from(o.response.subarray(60, 62))).toEqual(Array.from(req.subarray(60, 62)));
    expect(Array.from(o.response.subarray(64, 80))).toEqual(Array.from(req.subarray(64, 80)));
    expect(e.lookup(CLIENT, 17, 5000)?.flags).toBe(W.MAPF_OUTBOUND);
  });

  it("item 84: PEER lifetime is at least the configured implicit minimum", () => {
    const e = engineWith({ lifetimes: { peerMin: 240 } });
    expect(u32(serveOne(e, peerRequest({ lifetime: 30 }), T0).response, 4)).toBe(240);
  });

  it("item 85: PEER on an existing mapping → its external returned whatever the suggestion", () => {
    const e = engineWith();
    const m = assigned(serveOne(e, mapRequest({ protocol: 17, internalPort: 5000 }), T0));
    const o = serveOne(e, peerRequest({ protocol: 17, internalPort: 5000, externalPort: 9999, externalAddress: POOL[1] }), T0);
    expect(o.result).toBe(0);
    expect(assigned(o)).toEqual(m);
  });

  it("item 86: a second PEER on that flow with another nonce → NOT_AUTHORIZED with the remaining lifetime", () => {
    const e = engineWith();
    serveOne(e, peerRequest({ lifetime: 600 }), T0);
    const o = serveOne(e, peerRequest({ lifetime: 600, nonce: nonceOf(4) }), T0 + 100);
    expect(o.result).toBe(W.RESULT_NOT_AUTHORIZED);
    expect(u32(o.response, 4)).toBe(500);
  });

  it("item 87: PEER for a new 5-tuple suggesting a port in use → CANNOT_PROVIDE_EXTERNAL, nothing created", () => {
    const e = engineWith();
    const a = assigned(serveOne(e, mapRequest({ client: "192.0.2.2", internalPort: 1 }), T0, { source: "192.0.2.2" }));
    const o = serveOne(e, peerRequest({ externalPort: a.port, externalAddress: a.address }), T0);
    expect(o.result).toBe(W.RESULT_CANNOT_PROVIDE_EXTERNAL);
    expect(e.lookup(CLIENT, 17, 8080)).toBeUndefined();
  });

  it("item 90: PEER with lifetime 0 does not delete; it returns the remaining lifetime", () => {
    const e = engineWith();
    serveOne(e, peerRequest({ lifetime: 600 }), T0);
    const o = serveOne(e, peerRequest({ lifetime: 0 }), T0 + 100);
    expect(o.result).toBe(0);
    expect(u32(o.response, 4)).toBe(500);
    expect(e.lookup(CLIENT, 17, 8080)?.flags).toBe(W.MAPF_OUTBOUND);
  });

  it("item 91: a PEER mapping left unrenewed but carrying traffic survives like an implicit mapping; idle, it ends", () => {
    const e = engineWith(TRACKING);
    serveOne(e, peerRequest({ protocol: 17, internalPort: 5000, lifetime: 120 }), T0);
    e.expire(T0 + 120); // its lifetime is over: the dataplane is asked, the mapping waits for the answer
    const [q] = queries(e);
    expect(q).toMatchObject({ protocol: 17, internalPort: 5000 });
    expect(e.engineStats().mappings).toBe(1n);
    e.activityAnswer(T0 + 120, q.mapping, q.protocol, q.externalPort, 100); // a packet 20 s ago (UDP idle 120)
    expect(e.lookup(CLIENT, 17, 5000)?.flags).toBe(W.MAPF_OUTBOUND);
    e.expire(T0 + 219);
    expect(e.engineStats().mappings).toBe(1n);
    e.expire(T0 + 220); // the traffic's idle end: asked again
    const [again] = queries(e);
    e.activityAnswer(T0 + 220, again.mapping, again.protocol, again.externalPort, 0);
    expect(e.engineStats()).toMatchObject({ mappings: 0n, expired: 1n });
  });

  it("item 91 (the dataplane does not answer): the mapping ends once the wait is over", () => {
    const e = engineWith(TRACKING);
    serveOne(e, peerRequest({ protocol: 17, internalPort: 5000, lifetime: 120 }), T0);
    e.expire(T0 + 120);
    expect(queries(e)).toHaveLength(1);
    e.expire(T0 + 121);
    expect(e.engineStats().mappings).toBe(1n);
    e.expire(T0 + 122); // activity.waitSeconds 2
    expect(e.engineStats()).toMatchObject({ mappings: 0n, expired: 1n });
  });

  it("item 92: a PEER with an IPv6 remote peer from a NAT64 client gets a v4 external address", () => {
    const e = engineWith();
    const src = "2001:db8:aa::5";
    const o = serveOne(e, peerRequest({ client: src, remoteAddress: "64:ff9b::c633:6407" }), T0, { source: src });
    expect(o.result).toBe(0);
    expect(POOL).toContain(assigned(o).address);
  });
});

describe("§3.7 THIRD_PARTY", () => {
  it("item 96: an authorised THIRD_PARTY MAP maps the third party's host; THIRD_PARTY echoed", () => {
    const e = engineWith();
    const o = serveOne(e, mapRequest({}, [thirdParty("10.1.2.3")]), T0, { ingress: TP });
    expect(o.result).toBe(0);
    expect(o.response.length).toBe(80);
    expect(o.response[60]).toBe(W.OPTION_THIRD_PARTY);
    expect(e.lookup("10.1.2.3", 6, 8080)?.flags).toBe(W.MAPF_INBOUND | W.MAPF_THIRD_PARTY);
    expect(e.lookup(CLIENT, 6, 8080)).toBeUndefined();
  });

  it("item 98: a THIRD_PARTY lifetime-0 MAP from the authorised client deletes H's mapping", () => {
    const e = engineWith();
    serveOne(e, mapRequest({}, [thirdParty("10.1.2.3")]), T0, { ingress: TP });
    expect(serveOne(e, mapRequest({ lifetime: 0 }, [thirdParty("10.1.2.3")]), T0, { ingress: TP }).result).toBe(0);
    expect(e.lookup("10.1.2.3", 6, 8080)).toBeUndefined();
    expect(e.engineStats().deleted).toBe(1n);
  });
});

describe("§3.8 PREFER_FAILURE", () => {
  it("item 100: PREFER_FAILURE for a taken port → CANNOT_PROVIDE_EXTERNAL, no mapping", () => {
    const e = engineWith();
    const a = assigned(serveOne(e, mapRequest({ client: "192.0.2.2" }), T0, { source: "192.0.2.2" }));
    const o = serveOne(e, mapRequest({ externalPort: a.port, externalAddress: a.address }, [preferFailure()]), T0);
    expect(o.result).toBe(W.RESULT_CANNOT_PROVIDE_EXTERNAL);
    expect(e.lookup(CLIENT, 6, 8080)).toBeUndefined();
  });

  it("item 101: PREFER_FAILURE for a free port → exactly that port and address", () => {
    const o = serveOne(engineWith(), mapRequest({ externalPort: 33333, externalAddress: POOL[1] }, [preferFailure()]), T0);
    expect(o.result).toBe(0);
    expect(assigned(o)).toEqual({ port: 33333, address: POOL[1] });
    expect(o.response[60]).toBe(W.OPTION_PREFER_FAILURE);
  });

  it("item 102: PREFER_FAILURE on an existing mapping with another external port → CANNOT_PROVIDE_EXTERNAL", () => {
    const e = engineWith();
    const a = assigned(serveOne(e, mapRequest(), T0));
    const o = serveOne(e, mapRequest({ externalPort: a.port === 60000 ? 60001 : 60000, externalAddress: a.address }, [preferFailure()]), T0);
    expect(o.result).toBe(W.RESULT_CANNOT_PROVIDE_EXTERNAL);
  });

  // item 103 (PREFER_FAILURE probes rate limited): test/server/rate-limit.test.ts, end to end.
});

describe("§3.9 FILTER", () => {
  const filterCount = (e: PacketEngine) => Number(e.engineStats().filters);

  it("item 107 (engine part; enforcement is the dataplane's, issue #6): the filter is stored with the mapping", () => {
    const e = engineWith();
    const o = serveOne(e, mapRequest({}, [filter(120, "198.51.100.0")]), T0);
    expect(o.result).toBe(0);
    expect(o.response.length).toBe(84);
    expect(filterCount(e)).toBe(1);
  });

  it("item 108: a refresh with another FILTER → both active", () => {
    const e = engineWith();
    serveOne(e, mapRequest({}, [filter(120, "198.51.100.0")]), T0);
    serveOne(e, mapRequest({}, [filter(128, "203.0.113.200")]), T0);
    expect(filterCount(e)).toBe(2);
  });

  it("item 109 / item 45: FILTER prefix 0 removes all; prefix 0 then X leaves only X", () => {
    const e = engineWith();
    serveOne(e, mapRequest({}, [filter(120, "198.51.100.0"), filter(128, "203.0.113.200")]), T0);
    serveOne(e, mapRequest({}, [filter(0, "::")]), T0);
    expect(filterCount(e)).toBe(0);
    serveOne(e, mapRequest({}, [filter(120, "198.51.100.0")]), T0);
    serveOne(e, mapRequest({}, [filter(0, "::"), filter(104, "192.0.2.0")]), T0);
    expect(filterCount(e)).toBe(1);
  });

  it("item 110: more FILTERs than the limit → EXCESSIVE_REMOTE_PEERS, previous set unchanged", () => {
    const e = engineWith({ quotas: { filtersPerMapping: 2 } });
    serveOne(e, mapRequest({}, [filter(120, "198.51.100.0")]), T0);
    const o = serveOne(e, mapRequest({}, [filter(128, "203.0.113.1"), filter(128, "203.0.113.2")]), T0);
    expect(o.result).toBe(W.RESULT_EXCESSIVE_REMOTE_PEERS);
    expect(filterCount(e)).toBe(1);
  });

  it("item 111: one FILTER per mapping is always accepted", () => {
    const e = engineWith({ quotas: { filtersPerMapping: 1 } });
    expect(serveOne(e, mapRequest({}, [filter(120, "198.51.100.0")]), T0).result).toBe(0);
  });

  it("item 112: no request without FILTER yields EXCESSIVE_REMOTE_PEERS", () => {
    const e = engineWith({ quotas: { filtersPerMapping: 1 } });
    serveOne(e, mapRequest({}, [filter(120, "198.51.100.0")]), T0);
    expect(serveOne(e, mapRequest(), T0).result).toBe(0);
  });
});

describe("§3.12 NAT-PMP (engine)", () => {
  const natpmp = (e: PacketEngine, p: Uint8Array, now = T0) => serveOne(e, p, now);

  it("item 129: the address reply carries the subscriber's paired external IPv4 address", () => {
    const e = engineWith();
    const a = assigned(serveOne(e, mapRequest({ protocol: 17, internalPort: 7 }), T0));
    const r = natpmp(e, Uint8Array.of(0, 0)).response;
    expect(r.length).toBe(12);
    expect(`${r[8]}.${r[9]}.${r[10]}.${r[11]}`).toBe(a.address);
  });

  it("item 133: map failure (quota) → result 4, internal port echoed, external port 0, lifetime 0", () => {
    const e = engineWith({ quotas: { mappingsPerSubscriber: 1 } });
    natpmp(e, natPmpMap(2, 80, 0, 3600));
    const r = natpmp(e, natPmpMap(2, 81, 0, 3600)).response;
    expect(Buffer.from(r).toString("hex")).toBe("0082" + "0004" + "11223344" + "0051" + "0000" + "00000000");
  });

  it("item 134: delete → result 0, internal port echoed, external port 0, lifetime 0; same when repeated", () => {
    const e = engineWith();
    natpmp(e, natPmpMap(1, 5000, 0, 3600));
    for (let i = 0; i < 2; i++) {
      expect(Buffer.from(natpmp(e, natPmpMap(1, 5000, 0, 0)).response).toString("hex")).toBe("0081000011223344" + "1388" + "0000" + "00000000");
    }
    expect(e.lookup(CLIENT, 17, 5000)).toBeUndefined();
  });

  it("item 135: delete-all (internal port 0, lifetime 0) for TCP removes all the client's TCP mappings", () => {
    const e = engineWith();
    natpmp(e, natPmpMap(2, 80, 0, 3600));
    natpmp(e, natPmpMap(2, 81, 0, 3600));
    natpmp(e, natPmpMap(1, 80, 0, 3600));
    const r = natpmp(e, natPmpMap(2, 0, 0, 0)).response;
    expect(u16(r, 2)).toBe(0);
    expect(u16(r, 8)).toBe(0);
    expect(e.subscriberUsage(CLIENT).mappings).toBe(1);
    expect(e.lookup(CLIENT, 17, 80)?.flags).toBe(W.MAPF_INBOUND | W.MAPF_NATPMP);
  });

  it("item 136: deleting a static mapping → result 2", () => {
    const e = engineWith();
    e.addStatic(CLIENT, 6, 80, POOL[0], 8080);
    expect(u16(natpmp(e, natPmpMap(2, 80, 0, 0)).response, 2)).toBe(2);
  });

  it("item 137: requested lifetime 7200 → granted ≤ 7200", () => {
    expect(u32(natpmp(engineWith(), natPmpMap(1, 5000, 0, 7200)).response, 12)).toBeLessThanOrEqual(7200);
  });

  it("item 138: a repeated map for the same internal port with another suggestion → the assigned port", () => {
    const e = engineWith();
    const first = u16(natpmp(e, natPmpMap(2, 8080, 0, 3600)).response, 10);
    expect(u16(natpmp(e, natPmpMap(2, 8080, 40000, 3600)).response, 10)).toBe(first);
  });

  it("item 139: client B cannot obtain UDP P while A holds TCP P; A's UDP P is not auto-created", () => {
    const e = engineWith();
    natpmp(e, natPmpMap(2, 8080, 0, 3600));
    const a = e.lookup(CLIENT, 6, 8080)!;
    const b = serveOne(e, natPmpMap(1, 8080, a.externalPort, 3600), T0, { source: "192.0.2.2" });
    expect(u16(b.response, 2)).toBe(0);
    const mb = e.lookup("192.0.2.2", 17, 8080)!;
    expect(`${mb.externalAddress}:${mb.externalPort}`).not.toBe(`${a.externalAddress}:${a.externalPort}`);
    expect(e.lookup(CLIENT, 17, 8080)).toBeUndefined();
  });

  it("item 142: the external-address announcement is the 12-byte address response with the current SSSoE (schedule: test/integration/announce.test.ts)", () => {
    const e = engineWith();
    expect(Array.from(e.announceNatPmp(0x01020304, "203.0.113.7"))).toEqual([0, 0x80, 0, 0, 1, 2, 3, 4, 203, 0, 113, 7]);
  });
});

describe("§3.2 with the engine", () => {
  it("item 32: the same MAP twice back-to-back → byte-identical responses", () => {
    const e = engineWith();
    const req = mapRequest({}, [filter(120, "198.51.100.0")]);
    const a = serveOne(e, req, T0).response;
    const b = serveOne(e, req, T0).response;
    expect(Buffer.from(b).toString("hex")).toBe(Buffer.from(a).toString("hex"));
  });

  it("item 29: THIRD_PARTY + malformed FILTER → error and no mapping for the third party", () => {
    const e = engineWith();
    const o = serveOne(e, mapRequest({}, [thirdParty("10.9.9.9"), filter(64, "198.51.100.0")]), T0, { ingress: TP });
    expect(o.result).toBe(W.RESULT_MALFORMED_OPTION);
    expect(e.lookup("10.9.9.9", 6, 8080)).toBeUndefined();
    expect(e.engineStats().subscribers).toBe(0n);
  });

  it("item 30: unknown mandatory option and quota exceeded → the option error (no state touched)", () => {
    const e = engineWith({ quotas: { mappingsPerSubscriber: 1 } });
    serveOne(e, mapRequest({ internalPort: 1 }), T0);
    expect(serveOne(e, mapRequest({ internalPort: 2 }, [{ code: 50 }]), T0).result).toBe(W.RESULT_UNSUPP_OPTION);
    expect(serveOne(e, mapRequest({ internalPort: 2 }), T0).result).toBe(W.RESULT_USER_EX_QUOTA);
  });
});
