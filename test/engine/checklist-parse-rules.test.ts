// Checklist items of §3.4–§3.10 and §3.13 that are decided while parsing, before any
// mapping state is consulted. Their stateful siblings belong to the engine (issue #3).
import { beforeEach, describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import type { PacketEngine } from "../../src/engine/packet-engine.js";
import { codecEngine, engineConfig } from "../helpers/engine-config.js";
import { announceRequest, filter, mapRequest, option, peerRequest, preferFailure, run, thirdParty, thirdPartyId, u32 } from "../helpers/packets.js";

let engine: PacketEngine;
beforeEach(() => {
  engine = codecEngine();
});
const TP = W.INGRESS_SUBSCRIBER | W.INGRESS_THIRD_PARTY;

describe("§3.4–§3.9 rules enforced by the codec", () => {
  it("item 49: MAP protocol 0 with internal port 80 and lifetime > 0 → MALFORMED_REQUEST", () => {
    expect(run(engine, mapRequest({ protocol: 0, internalPort: 80 })).result).toBe(W.RESULT_MALFORMED_REQUEST);
    expect(run(engine, mapRequest({ protocol: 0, internalPort: 0 })).verdict).toBe("parsed");
  });

  it("item 74: MAP lifetime 0, protocol 0, port 7 → MALFORMED_REQUEST", () => {
    expect(run(engine, mapRequest({ lifetime: 0, protocol: 0, internalPort: 7 })).result).toBe(W.RESULT_MALFORMED_REQUEST);
  });

  it("item 80: MAP lifetime 0 with FILTER → MALFORMED_OPTION", () => {
    expect(run(engine, mapRequest({ lifetime: 0 }, [filter(128, "198.51.100.1")])).result).toBe(W.RESULT_MALFORMED_OPTION);
  });

  it("item 81: MAP lifetime 0 with PREFER_FAILURE → MALFORMED_OPTION", () => {
    expect(run(engine, mapRequest({ lifetime: 0, externalPort: 5000 }, [preferFailure()])).result).toBe(W.RESULT_MALFORMED_OPTION);
  });

  it("item 88: PEER with protocol 0, internal port 0 or remote peer port 0 → MALFORMED_REQUEST", () => {
    for (const f of [{ protocol: 0 }, { internalPort: 0 }, { remotePort: 0 }]) {
      expect(run(engine, peerRequest(f)).result).toBe(W.RESULT_MALFORMED_REQUEST);
    }
  });

  it("item 89: PEER to 127.0.0.1 (or ::1, ::, multicast) → MALFORMED_REQUEST", () => {
    for (const remoteAddress of ["127.0.0.1", "127.9.9.9", "::1", "::", "0.0.0.0", "224.0.0.1", "ff02::1"]) {
      expect(run(engine, peerRequest({ remoteAddress })).result, remoteAddress).toBe(W.RESULT_MALFORMED_REQUEST);
    }
    expect(run(engine, peerRequest({ remoteAddress: "2001:db8::1" })).verdict).toBe("parsed");
  });

  it("item 93: THIRD_PARTY while disabled → UNSUPP_OPTION", () => {
    engine.reconfigure(engineConfig({ pcp: { thirdParty: false } })); // OPTBIT_CORE without THIRD_PARTY
    expect(run(engine, mapRequest({}, [thirdParty("10.0.0.5")]), { ingress: TP }).result).toBe(W.RESULT_UNSUPP_OPTION);
  });

  it("item 94: THIRD_PARTY from a host not on the authorised list → UNSUPP_OPTION", () => {
    expect(run(engine, mapRequest({}, [thirdParty("10.0.0.5")])).result).toBe(W.RESULT_UNSUPP_OPTION);
  });

  it("item 95: THIRD_PARTY equal to the packet source → MALFORMED_REQUEST", () => {
    expect(run(engine, mapRequest({}, [thirdParty("192.0.2.1")]), { ingress: TP }).result).toBe(W.RESULT_MALFORMED_REQUEST);
  });

  it("item 96 (codec part): authorised THIRD_PARTY is recorded for the engine", () => {
    const o = run(engine, mapRequest({}, [thirdParty("10.0.0.5")]), { ingress: TP });
    expect(o).toMatchObject({ verdict: "parsed", options: W.OPTBIT_THIRD_PARTY });
    expect(engine.slotField16(0, W.SLOT_THIRD_PARTY)).toBe(64);
  });

  it("item 97: authorised THIRD_PARTY still fails with ADDRESS_MISMATCH when the client field ≠ source", () => {
    expect(run(engine, mapRequest({ client: "192.0.2.2" }, [thirdParty("10.0.0.5")]), { ingress: TP }).result).toBe(W.RESULT_ADDRESS_MISMATCH);
  });

  it("item 99: PREFER_FAILURE with suggested external port 0 → MALFORMED_OPTION", () => {
    expect(run(engine, mapRequest({ externalPort: 0 }, [preferFailure()])).result).toBe(W.RESULT_MALFORMED_OPTION);
    expect(run(engine, mapRequest({ externalPort: 7000 }, [preferFailure()])).options).toBe(W.OPTBIT_PREFER_FAILURE);
  });

  it("item 104: PREFER_FAILURE on a server that does not implement it → UNSUPP_OPTION", () => {
    engine.reconfigure(engineConfig({ pcp: { preferFailure: false } })); // OPTBIT_CORE without PREFER_FAILURE
    expect(run(engine, mapRequest({ externalPort: 7000 }, [preferFailure()])).result).toBe(W.RESULT_UNSUPP_OPTION);
  });

  it("item 105: FILTER with a v4-mapped address and prefix length 64 → MALFORMED_OPTION", () => {
    expect(run(engine, mapRequest({}, [filter(64, "198.51.100.0")])).result).toBe(W.RESULT_MALFORMED_OPTION);
    expect(run(engine, mapRequest({}, [filter(64, "2001:db8::")])).verdict).toBe("parsed");
  });

  it("item 106: FILTER with prefix length 129 → MALFORMED_OPTION", () => {
    expect(run(engine, mapRequest({}, [filter(129, "2001:db8::")])).result).toBe(W.RESULT_MALFORMED_OPTION);
  });
});

describe("§3.10 ANNOUNCE (answered by the codec)", () => {
  it("item 113: ANNOUNCE → SUCCESS, lifetime 0, 24 bytes, current epoch", () => {
    const o = run(engine, announceRequest(), { epoch: 777 });
    expect(o).toMatchObject({ verdict: "reply", result: 0 });
    expect(o.response.length).toBe(24);
    expect(u32(o.response, 4)).toBe(0);
    expect(u32(o.response, 8)).toBe(777);
  });

  it("item 114: ANNOUNCE with requested lifetime 600 → lifetime 0", () => {
    expect(u32(run(engine, announceRequest({ lifetime: 600 })).response, 4)).toBe(0);
  });

  it("item 115: ANNOUNCE with a wrong client IP → ADDRESS_MISMATCH", () => {
    expect(run(engine, announceRequest({ client: "192.0.2.200" })).result).toBe(W.RESULT_ADDRESS_MISMATCH);
  });

  it("item 116: ANNOUNCE carrying an unknown optional option → SUCCESS", () => {
    const o = run(engine, announceRequest({}, [option(250, [1, 2, 3, 4, 5, 6])]));
    expect(o).toMatchObject({ verdict: "reply", result: 0 });
    expect(o.response.length).toBe(24);
  });
});

describe("§3.13 extension rules enforced by the codec", () => {
  it("item 153: THIRD_PARTY_ID unsupported → UNSUPP_OPTION; without THIRD_PARTY → 25; unsupported length → 26", () => {
    const id = thirdPartyId([0, 0, 0x12, 0x34]);
    expect(run(engine, mapRequest({}, [thirdParty("10.0.0.5"), id]), { ingress: TP }).result).toBe(W.RESULT_UNSUPP_OPTION);
    engine.reconfigure(engineConfig({ pcp: { thirdPartyId: { maxLength: 8 } } }), { options: W.OPTBIT_ALL });
    expect(run(engine, mapRequest({}, [id]), { ingress: TP }).result).toBe(W.RESULT_THIRD_PARTY_MISSING_OPTION);
    expect(run(engine, mapRequest({}, [thirdParty("10.0.0.5"), thirdPartyId(Array(9).fill(1))]), { ingress: TP }).result).toBe(
      W.RESULT_UNSUPP_THIRD_PARTY_ID_LENGTH,
    );
    expect(run(engine, mapRequest({}, [id, thirdParty("10.0.0.5")]), { ingress: TP }).options).toBe(W.OPTBIT_THIRD_PARTY | W.OPTBIT_THIRD_PARTY_ID);
  });

  it("item 154: AUTHENTICATION_TAG (option 5) without RFC 7652 → UNSUPP_OPTION", () => {
    expect(run(engine, mapRequest({}, [option(W.OPTION_AUTHENTICATION_TAG, [1, 2, 3, 4])])).result).toBe(W.RESULT_UNSUPP_OPTION);
  });
});
