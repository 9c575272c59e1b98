// Failures found by the model-based property test, kept as named regressions.
import { describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import type { PacketEngine } from "../../src/engine/packet-engine.js";
import { engineConfig, engineFrom } from "../helpers/engine-config.js";
import { assigned, mapRequest, natPmpMap, nonceOf, peerRequest, serveOne, u16, u32 } from "../helpers/packets.js";

function engine(holdDown = 0): PacketEngine {
  const e = engineFrom(
    engineConfig({ lifetimes: { holdDown, min: 10, peerMin: 20, max: 100 }, pool: { addresses: ["198.18.0.1", "198.18.0.2"], portMin: 65472, blockSize: 16 } }),
    0,
    { seed: 5n },
  );
  return e;
}

describe("regressions from the model-based test", () => {
  it("MAP delete with another nonce → NOT_AUTHORIZED carrying the remaining lifetime", () => {
    const e = engine();
    serveOne(e, mapRequest({ lifetime: 100 }), 0);
    const o = serveOne(e, mapRequest({ lifetime: 0, nonce: nonceOf(2) }), 30);
    expect(o.result).toBe(W.RESULT_NOT_AUTHORIZED);
    expect(u32(o.response, 4)).toBe(70);
  });

  it("an inbound part added by NAT-PMP to a PEER mapping has no nonce: a PCP delete with the PEER's nonce is refused", () => {
    const e = engine();
    serveOne(e, peerRequest({ protocol: 6, internalPort: 2, nonce: nonceOf(1) }), 0);
    serveOne(e, natPmpMap(2, 2, 0, 50), 0);
    expect(serveOne(e, mapRequest({ internalPort: 2, lifetime: 0, nonce: nonceOf(1) }), 0).result).toBe(W.RESULT_NOT_AUTHORIZED);
  });

  it("removing the MAP part re-files the mapping: it ends when its PEER part does", () => {
    const e = engine();
    serveOne(e, natPmpMap(2, 2, 0, 100), 0);
    serveOne(e, peerRequest({ protocol: 6, internalPort: 2, lifetime: 0 }), 0); // PEER part: clamp(0) = 20 s
    expect(u16(serveOne(e, natPmpMap(2, 0, 0, 0), 0).response, 2)).toBe(0); // delete-all: MAP part gone
    e.expire(20);
    expect(e.engineStats().mappings).toBe(0n);
  });

  it("an any-address suggestion is honoured on another pool address when the least used one cannot", () => {
    const e = engine();
    const a = assigned(
      serveOne(e, peerRequest({ client: "10.0.0.2", protocol: 6, internalPort: 1, externalPort: 65520, externalAddress: "0.0.0.0" }), 0, {
        source: "10.0.0.2",
      }),
    );
    const b = assigned(
      serveOne(e, mapRequest({ client: "10.0.0.3", internalPort: 1, externalPort: 65520, externalAddress: "0.0.0.0" }), 0, { source: "10.0.0.3" }),
    );
    expect(b.port).toBe(65520);
    expect(b.address).not.toBe(a.address);
  });
});
