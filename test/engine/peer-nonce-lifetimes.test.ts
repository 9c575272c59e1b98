// Issue #17 item 3, engine side: CANNOT_PROVIDE_EXTERNAL's error lifetime by cause (a port
// in use for now is a short error, a suggestion that can never be honoured a long one
// [RFC 6887 §7.4, §15]); `noncePolicy: relaxed` for PEER as for MAP (one-shot clients make a
// new nonce per run); the PEER remote peer in lookups and events.
import { describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import type { PacketEngine } from "../../src/engine/packet-engine.js";
import type { Config } from "../../src/config/schema.js";
import { engineConfig, engineFrom, merge, type DeepPartial } from "../helpers/engine-config.js";
import { CLIENT, assigned, mapRequest, nonceOf, peerRequest, preferFailure, serveOne, u32 } from "../helpers/packets.js";

const T0 = 1000;
const POOL = ["203.0.113.1", "203.0.113.2"];
const SHORT = 30;
const LONG = 1800;
function engineWith(over: DeepPartial<Config> = {}): PacketEngine {
  return engineFrom(
    engineConfig(merge<DeepPartial<Config>>({ pool: { addresses: POOL }, pcp: { shortErrorLifetime: SHORT, longErrorLifetime: LONG } }, over)),
    T0,
    { seed: 7n },
  );
}
const OTHER = "192.0.2.2";
const lifetimeOf = (o: { response: Uint8Array }) => u32(o.response, 4);

describe("CANNOT_PROVIDE_EXTERNAL: the error lifetime fits its cause", () => {
  it("PREFER_FAILURE for a port another subscriber holds: short", () => {
    const e = engineWith();
    const a = assigned(serveOne(e, mapRequest({ client: OTHER, internalPort: 1 }), T0, { source: OTHER }));
    const o = serveOne(e, mapRequest({ externalPort: a.port, externalAddress: a.address }, [preferFailure()]), T0);
    expect(o.result).toBe(W.RESULT_CANNOT_PROVIDE_EXTERNAL);
    expect(lifetimeOf(o)).toBe(SHORT);
  });

  it("PREFER_FAILURE naming an address outside the pool, or a reserved port: long", () => {
    const e = engineWith();
    const notPool = serveOne(e, mapRequest({ externalPort: 40000, externalAddress: "198.51.100.200" }, [preferFailure()]), T0);
    expect(notPool.result).toBe(W.RESULT_CANNOT_PROVIDE_EXTERNAL);
    expect(lifetimeOf(notPool)).toBe(LONG);
    const reserved = serveOne(e, mapRequest({ externalPort: 80, externalAddress: POOL[0] }, [preferFailure()]), T0); // below portMin
    expect(reserved.result).toBe(W.RESULT_CANNOT_PROVIDE_EXTERNAL);
    expect(lifetimeOf(reserved)).toBe(LONG);
    // The cause is per request: a busy port right after still gets the short lifetime.
    const a = assigned(serveOne(e, mapRequest({ client: OTHER, internalPort: 1 }), T0, { source: OTHER }));
    const busy = serveOne(e, mapRequest({ externalPort: a.port, externalAddress: a.address }, [preferFailure()]), T0);
    expect(lifetimeOf(busy)).toBe(SHORT);
  });

  it("PREFER_FAILURE against a static mapping's other port: long; against its own dynamic mapping's: short", () => {
    const e = engineWith();
    expect(e.addStatic(CLIENT, 6, 2000, POOL[0], 30000)).toBe(W.RESULT_SUCCESS);
    const stat = serveOne(e, mapRequest({ internalPort: 2000, externalPort: 30001, externalAddress: POOL[0] }, [preferFailure()]), T0);
    expect(stat.result).toBe(W.RESULT_CANNOT_PROVIDE_EXTERNAL);
    expect(lifetimeOf(stat)).toBe(LONG);
    const mine = assigned(serveOne(e, mapRequest({ internalPort: 3000 }), T0));
    const other = serveOne(e, mapRequest({ internalPort: 3000, externalPort: mine.port + 1, externalAddress: mine.address }, [preferFailure()]), T0);
    expect(other.result).toBe(W.RESULT_CANNOT_PROVIDE_EXTERNAL);
    expect(lifetimeOf(other)).toBe(SHORT);
  });

  it("PEER for a new 5-tuple suggesting a port in use: short", () => {
    const e = engineWith();
    const a = assigned(serveOne(e, mapRequest({ client: OTHER, internalPort: 1 }), T0, { source: OTHER }));
    const o = serveOne(e, peerRequest({ externalPort: a.port, externalAddress: a.address }), T0);
    expect(o.result).toBe(W.RESULT_CANNOT_PROVIDE_EXTERNAL);
    expect(lifetimeOf(o)).toBe(SHORT);
  });
});

describe("noncePolicy covers PEER", () => {
  it("strict: another nonce on a live PEER → NOT_AUTHORIZED with the remaining lifetime", () => {
    const e = engineWith({ noncePolicy: "strict" });
    expect(serveOne(e, peerRequest({ lifetime: 600 }), T0).result).toBe(0);
    const o = serveOne(e, peerRequest({ lifetime: 600, nonce: nonceOf(4) }), T0 + 100);
    expect(o.result).toBe(W.RESULT_NOT_AUTHORIZED);
    expect(lifetimeOf(o)).toBe(500);
  });

  it("relaxed: a one-shot client's new nonce refreshes its PEER (same external), and then that nonce is the one that counts", () => {
    const e = engineWith({ noncePolicy: "relaxed" });
    const first = serveOne(e, peerRequest({ lifetime: 600 }), T0);
    expect(first.result).toBe(0);
    const again = serveOne(e, peerRequest({ lifetime: 1000, nonce: nonceOf(4) }), T0 + 100);
    expect(again.result).toBe(0);
    expect(assigned(again)).toEqual(assigned(first));
    expect(lifetimeOf(again)).toBe(1000);
    expect(e.lookup(CLIENT, 17, 8080)?.outExpiry).toBe(T0 + 1100);
    // A PEER never shortens a lifetime [6887 §12.1]: lifetime 0 with the new nonce answers the remaining one.
    const query = serveOne(e, peerRequest({ lifetime: 0, nonce: nonceOf(5) }), T0 + 200);
    expect(query.result).toBe(0);
    expect(lifetimeOf(query)).toBe(900);
  });
});

describe("the PEER remote peer leaves the engine", () => {
  it("in lookups (the latest remote, and how many) and in each event (the remote it is about)", () => {
    const e = engineWith();
    e.drainEvents();
    serveOne(e, peerRequest({ remoteAddress: "198.51.100.7", remotePort: 443 }), T0);
    serveOne(e, peerRequest({ remoteAddress: "2001:db8::9", remotePort: 8443 }), T0);
    serveOne(e, peerRequest({ remoteAddress: "198.51.100.7", remotePort: 443 }), T0 + 10); // a refresh of the first
    const events = e.drainEvents().map((v) => [v.kind, v.peerAddress, v.peerPort, v.peerCount]);
    expect(events).toEqual([
      ["create", "198.51.100.7", 443, 1],
      ["refresh", "2001:db8::9", 8443, 2],
      ["refresh", "198.51.100.7", 443, 2],
    ]);
    const m = e.lookup(CLIENT, 17, 8080)!;
    expect([m.peerAddress, m.peerPort, m.peerCount]).toEqual(["2001:db8::9", 8443, 2]); // the latest added
    // A MAP-only mapping has none.
    serveOne(e, mapRequest({ internalPort: 9000 }), T0);
    const map = e.lookup(CLIENT, 6, 9000)!;
    expect([map.peerPort, map.peerCount]).toEqual([0, 0]);
  });
});
