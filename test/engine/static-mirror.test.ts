// Static mirrors (issue #12 item 12, engine side): another shard's static mapping answered
// here without being a mapping here — no lease, no event, no listing — and kept out of the
// dynamic path (MAP, PORT_SET, PEER, NAT-PMP); ended with its address, its subscriber, or
// removeStatic; a re-synchronisation ends a dynamic mapping of the endpoint.
import { describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import type { PacketEngine } from "../../src/engine/packet-engine.js";
import { engineConfig, engineFrom } from "../helpers/engine-config.js";
import { assigned, mapRequest, natPmpMap, nonceOf, peerRequest, portSet, serveOne, u16, u32 } from "../helpers/packets.js";

const C = "192.0.2.1";
const EXT = "203.0.113.1";
const EXT2 = "203.0.113.2";
const T0 = 100;

function engine(): PacketEngine {
  return engineFrom(engineConfig({ pcp: { portSet: { enabled: true, maxSize: 16 } }, pool: { addresses: [EXT, EXT2] } }), T0);
}
const map = (e: PacketEngine, port: number, lifetime = 600, options = [] as ReturnType<typeof portSet>[]) =>
  serveOne(e, mapRequest({ client: C, internalPort: port, lifetime, nonce: nonceOf(port) }, options), T0, { source: C });

describe("static mirrors in the engine", () => {
  it("answers MAP, PEER and NAT-PMP from the mirror; nothing leased, emitted or listed", () => {
    const e = engine();
    expect(e.addMirror(C, W.PROTO_TCP, 22, EXT, 2222)).toBe(W.RESULT_SUCCESS);
    expect(e.mirrorCount()).toBe(1);
    const m = map(e, 22);
    expect([m.result, u32(m.response, W.HDR_LIFETIME), assigned(m).port, assigned(m).address]).toEqual([W.RESULT_SUCCESS, 0xffffffff, 2222, EXT]);
    expect(map(e, 22, 0).result).toBe(W.RESULT_NOT_AUTHORIZED);
    const peer = serveOne(e, peerRequest({ client: C, protocol: W.PROTO_TCP, internalPort: 22, lifetime: 300 }), T0, { source: C });
    expect([peer.result, assigned(peer).port, u32(peer.response, W.HDR_LIFETIME)]).toEqual([W.RESULT_SUCCESS, 2222, 300]);
    const pmp = serveOne(e, natPmpMap(W.NATPMP_OP_MAP_TCP, 22, 0, 60), T0, { source: C });
    expect([u16(pmp.response, 2), u16(pmp.response, 10), u32(pmp.response, 12)]).toEqual([0, 2222, 0xffffffff]);
    expect(e.engineStats().mappings).toBe(0n);
    expect(e.engineStats().blocks).toBe(0n);
    expect(e.drainEvents()).toEqual([]);
    expect(e.listRecords(1, 100, 1000, {}, T0).records.bytes.length).toBe(0);
    // The owner of the same endpoint cannot be this shard too.
    expect(e.addStatic(C, W.PROTO_TCP, 22, EXT, 3000)).toBe(W.RESULT_CANNOT_PROVIDE_EXTERNAL);
  });

  it("a PORT_SET stops before a mirrored internal port; a PORT_SET starting on one is answered as the static", () => {
    const e = engine();
    e.addMirror(C, W.PROTO_TCP, 5003, EXT, 2222);
    const set = map(e, 5000, 600, [portSet(8, 5000)]);
    expect(set.result).toBe(W.RESULT_SUCCESS);
    expect(e.engineStats().mappings).toBe(3n); // 5000..5002
    const on = map(e, 5003, 600, [portSet(4, 5003)]);
    expect([on.result, assigned(on).port, u32(on.response, W.HDR_LIFETIME)]).toEqual([W.RESULT_SUCCESS, 2222, 0xffffffff]);
    expect(map(e, 5003, 0, [portSet(4, 5003)]).result).toBe(W.RESULT_NOT_AUTHORIZED);
    // The owner answers the same for its static.
    const owner = engine();
    expect(owner.addStatic(C, W.PROTO_TCP, 5003, EXT, 2222)).toBe(W.RESULT_SUCCESS);
    const own = map(owner, 5003, 600, [portSet(4, 5003)]);
    expect([own.result, assigned(own).port, u32(own.response, W.HDR_LIFETIME), own.response.length]).toEqual([
      W.RESULT_SUCCESS,
      2222,
      0xffffffff,
      on.response.length,
    ]);
    expect(map(owner, 5003, 0, [portSet(4, 5003)]).result).toBe(W.RESULT_NOT_AUTHORIZED);
  });

  it("a live mapping refuses a mirror; a re-synchronisation (replace) ends it", () => {
    const e = engine();
    expect(map(e, 80).result).toBe(W.RESULT_SUCCESS);
    expect(e.addMirror(C, W.PROTO_TCP, 80, EXT, 2222)).toBe(W.RESULT_CANNOT_PROVIDE_EXTERNAL);
    expect(e.mirrorCount()).toBe(0);
    expect(e.addMirror(C, W.PROTO_TCP, 80, EXT, 2222, true)).toBe(W.RESULT_SUCCESS);
    expect(e.engineStats().mappings).toBe(0n);
    expect(assigned(map(e, 80)).port).toBe(2222);
  });

  it("ends with removeStatic, with its subscriber's deletion, and with its external address", () => {
    const e = engine();
    e.addMirror(C, W.PROTO_TCP, 1, EXT, 2001);
    e.addMirror(C, W.PROTO_TCP, 2, EXT2, 2002);
    e.addMirror("192.0.2.9", W.PROTO_TCP, 3, EXT2, 2003);
    expect(e.removeStatic(C, W.PROTO_TCP, 1)).toBe(W.RESULT_SUCCESS);
    expect(e.removeStatic(C, W.PROTO_TCP, 1)).toBe(W.RESULT_NOT_AUTHORIZED);
    e.deleteSubscriber(C);
    expect(e.mirrorCount()).toBe(1);
    e.retirePoolAddress(EXT2, T0);
    expect(e.mirrorCount()).toBe(0);
    expect(u32(map(e, 3).response, W.HDR_LIFETIME)).toBe(600); // mapped dynamically now (C's own port 3)
    e.addMirror(C, W.PROTO_TCP, 4, EXT, 2004);
    e.clearMirrors();
    expect(e.mirrorCount()).toBe(0);
  });
});
