// Conformance checklist of the spec digest, §3.1–§3.3: one test per item, named by number.
// Items that need the mapping engine test the codec's part here (the engine's part is in
// checklist-engine.test.ts); items 1 and 31 need sockets (test/integration/udp.test.ts).
import { beforeEach, describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import { toAddress16 } from "../../src/net/address.js";
import type { PacketEngine } from "../../src/engine/packet-engine.js";
import { codecEngine, engineConfig } from "../helpers/engine-config.js";
import {
  CLIENT16,
  EPOCH,
  announceRequest,
  description,
  encodeOptions,
  filter,
  hexOf,
  mapRequest,
  option,
  peerRequest,
  preferFailure,
  run,
  thirdParty,
  u16,
  u32,
} from "../helpers/packets.js";

let engine: PacketEngine;
beforeEach(() => {
  engine = codecEngine();
});

const TP = W.INGRESS_SUBSCRIBER | W.INGRESS_THIRD_PARTY;

describe("§3.1 transport and framing", () => {
  // item 1 (reachable on UDP 5351 over IPv4 and IPv6) needs real sockets: test/integration/udp.test.ts

  it("item 2: a request from an ingress this client's traffic never uses gets no response", () => {
    expect(run(engine, mapRequest(), { ingress: 0 })).toMatchObject({ verdict: "drop", dropReason: W.DROP_INTERFACE });
    // A source trusted only for THIRD_PARTY: ordinary requests are ignored too.
    expect(run(engine, mapRequest(), { ingress: W.INGRESS_THIRD_PARTY })).toMatchObject({ verdict: "drop", dropReason: W.DROP_INTERFACE });
    expect(run(engine, announceRequest(), { ingress: W.INGRESS_THIRD_PARTY }).verdict).toBe("drop");
    // ... while its THIRD_PARTY requests are accepted.
    expect(run(engine, mapRequest({}, [thirdParty("10.0.0.9")]), { ingress: W.INGRESS_THIRD_PARTY }).verdict).toBe("parsed");
  });

  it("item 3: 0- and 1-byte datagrams get no response", () => {
    expect(run(engine, new Uint8Array(0))).toMatchObject({ verdict: "drop", dropReason: W.DROP_TOO_SHORT });
    expect(run(engine, Uint8Array.of(2))).toMatchObject({ verdict: "drop", dropReason: W.DROP_TOO_SHORT });
  });

  it("item 4: any datagram with the R bit set gets no response", () => {
    for (const p of [mapRequest({ response: true }), announceRequest({ response: true }), Uint8Array.of(3, 0x85), Uint8Array.of(0, 0x80)]) {
      expect(run(engine, p)).toMatchObject({ verdict: "drop", dropReason: W.DROP_RESPONSE });
    }
  });

  it("item 5: version 3 → UNSUPP_VERSION with version byte 2", () => {
    const o = run(engine, announceRequest({ version: 3 }));
    expect(o).toMatchObject({ verdict: "reply", result: W.RESULT_UNSUPP_VERSION });
    expect(o.response[0]).toBe(2);
    expect(o.response[3]).toBe(W.RESULT_UNSUPP_VERSION);
  });

  it("item 6: version 1 → UNSUPP_VERSION (never parsed as the pre-RFC format)", () => {
    const o = run(engine, mapRequest({ version: 1 }));
    expect(o).toMatchObject({ verdict: "reply", result: W.RESULT_UNSUPP_VERSION });
    expect(o.response.length).toBe(60);
  });

  it("item 7: version 255, length 4 → UNSUPP_VERSION in a 24-byte reply", () => {
    const o = run(engine, Uint8Array.of(255, 1, 0, 0));
    expect(o).toMatchObject({ verdict: "reply", result: W.RESULT_UNSUPP_VERSION });
    expect(hexOf(o.response)).toBe("0281" + "0001" + "00000708" + "11223344" + "00".repeat(12));
  });

  it("item 8: version 2 of 2..23 bytes is dropped silently", () => {
    for (let n = 2; n < 24; n++) {
      expect(run(engine, announceRequest().slice(0, n))).toMatchObject({ verdict: "drop", dropReason: W.DROP_SHORT_HEADER });
    }
  });

  it("item 9: a 1104-byte MAP → MALFORMED_REQUEST, reply exactly 1100 bytes", () => {
    const p = new Uint8Array(1104);
    p.set(mapRequest());
    const o = run(engine, p);
    expect(o).toMatchObject({ verdict: "reply", result: W.RESULT_MALFORMED_REQUEST });
    expect(o.response.length).toBe(1100);
  });

  it("item 10: a 62-byte MAP (not a multiple of 4) → MALFORMED_REQUEST", () => {
    const p = new Uint8Array(62);
    p.set(mapRequest());
    const o = run(engine, p);
    expect(o).toMatchObject({ verdict: "reply", result: W.RESULT_MALFORMED_REQUEST });
    expect(o.response.length).toBe(64);
  });

  it("item 11: a 56-byte MAP → MALFORMED_REQUEST", () => {
    expect(run(engine, mapRequest().slice(0, 56)).result).toBe(W.RESULT_MALFORMED_REQUEST);
  });

  it("item 12: a 76-byte PEER → MALFORMED_REQUEST", () => {
    expect(run(engine, peerRequest().slice(0, 76)).result).toBe(W.RESULT_MALFORMED_REQUEST);
  });

  it("item 13: a 24-byte ANNOUNCE is accepted", () => {
    expect(run(engine, announceRequest())).toMatchObject({ verdict: "reply", result: W.RESULT_SUCCESS });
  });

  it("item 14: client IP ≠ source → ADDRESS_MISMATCH with the long lifetime", () => {
    const o = run(engine, mapRequest({ client: "192.0.2.77" }));
    expect(o.result).toBe(W.RESULT_ADDRESS_MISMATCH);
    expect(u32(o.response, 4)).toBe(1800);
  });

  it("item 15: IPv4 source with a non-v4-mapped client field (::c000:201) → ADDRESS_MISMATCH", () => {
    expect(run(engine, mapRequest({ client: "::c000:201" })).result).toBe(W.RESULT_ADDRESS_MISMATCH);
    // IPv6 sources are compared as they are.
    expect(run(engine, mapRequest({ client: "2001:db8::5" }), { source: "2001:db8::5" }).verdict).toBe("parsed");
  });

  it("item 16: opcode 5 → UNSUPP_OPCODE with bytes 24..end copied back", () => {
    const p = mapRequest({}, [option(0x70, [1, 2, 3, 4, 5])]);
    p[1] = 5;
    const o = run(engine, p);
    expect(o.result).toBe(W.RESULT_UNSUPP_OPCODE);
    expect(o.response[1]).toBe(0x85);
    expect(hexOf(o.response.subarray(24))).toBe(hexOf(p.subarray(24)));
  });

  it("item 17: opcode 3 (AUTHENTICATION, RFC 7652 not implemented) → UNSUPP_OPCODE", () => {
    const p = new Uint8Array(32);
    p.set(announceRequest());
    p[1] = W.OP_AUTHENTICATION;
    expect(run(engine, p).result).toBe(W.RESULT_UNSUPP_OPCODE);
  });

  it("item 18 (codec part; the limiter end to end is test/server/rate-limit.test.ts): overloaded source dropped or NO_RESOURCES, others unaffected", () => {
    const datagrams = [
      { payload: mapRequest(), source: CLIENT16, sourcePort: 1, ingress: W.INGRESS_SUBSCRIBER, overloaded: true },
      { payload: mapRequest({ client: "192.0.2.2" }), source: toAddress16("192.0.2.2"), sourcePort: 1, ingress: W.INGRESS_SUBSCRIBER },
    ];
    for (const [i, d] of datagrams.entries()) engine.load(i, d);
    engine.processBatch(2, EPOCH);
    expect(engine.outcome(0)).toMatchObject({ verdict: "drop", dropReason: W.DROP_OVERLOAD });
    expect(engine.outcome(1).verdict).toBe("parsed");
    engine.reconfigure(engineConfig({ pcp: { overload: "no-resources" } }));
    const o = run(engine, mapRequest(), { overloaded: true });
    expect(o.result).toBe(W.RESULT_NO_RESOURCES);
    expect(u32(o.response, 4)).toBe(30);
  });
});

describe("§3.2 response construction", () => {
  const replies = () => {
    const out = [
      run(engine, announceRequest()),
      run(engine, mapRequest({ client: "192.0.2.9" })),
      run(engine, peerRequest({ protocol: 0 })),
      run(engine, announceRequest({ version: 7 })),
    ];
    const parsed = run(engine, mapRequest());
    expect(parsed.verdict).toBe("parsed");
    engine.finishSuccess(0, 3600, W.OPTBIT_ALL);
    out.push({ ...engine.outcome(0), response: engine.outcome(0).response.slice() });
    return out;
  };

  it("item 19: every response has byte 1 = request opcode | 0x80", () => {
    const ops = [0, 1, 2, 0, 1];
    for (const [i, o] of replies().entries()) expect(o.response[1]).toBe(ops[i] | 0x80);
  });

  it("item 20: every success response has byte 0 = 2, byte 2 = 0, bytes 12..23 = 0", () => {
    for (const o of replies().filter((r) => r.result === 0)) {
      expect(o.response[0]).toBe(2);
      expect(o.response[2]).toBe(0);
      expect(hexOf(o.response.subarray(12, 24))).toBe("00".repeat(12));
    }
  });

  it("item 21: every response carries the current Epoch at bytes 8..11", () => {
    for (const o of replies()) expect(u32(o.response, 8)).toBe(EPOCH);
  });

  it("item 22: an error response is the request with header fields overwritten, padded to a multiple of 4", () => {
    const p = mapRequest({}, [option(0x90, [9, 9, 9, 9])]).slice(0, 66);
    const o = run(engine, p);
    expect(o.result).toBe(W.RESULT_MALFORMED_REQUEST);
    expect(o.response.length).toBe(68);
    expect(hexOf(o.response.subarray(12, 66))).toBe(hexOf(p.subarray(12, 66)));
    expect(hexOf(o.response.subarray(66))).toBe("0000");
  });

  it("item 23: error for a request that failed parsing keeps request bytes 12..23", () => {
    const p = mapRequest({}, [option(50)]);
    const o = run(engine, p);
    expect(o.result).toBe(W.RESULT_UNSUPP_OPTION);
    expect(hexOf(o.response.subarray(12, 24))).toBe(hexOf(p.subarray(12, 24)));
  });

  it("item 24: error for a request that parsed has bytes 12..23 zeroed", () => {
    expect(run(engine, mapRequest()).verdict).toBe("parsed");
    engine.finishError(0, W.RESULT_NOT_AUTHORIZED, 1234);
    const o = engine.outcome(0);
    expect(o.result).toBe(W.RESULT_NOT_AUTHORIZED);
    expect(u32(o.response, 4)).toBe(1234);
    expect(hexOf(o.response.subarray(12, 24))).toBe("00".repeat(12));
    engine.reconfigure(engineConfig({ pcp: { map: false } }));
    const disabled = run(engine, mapRequest());
    expect(disabled.result).toBe(W.RESULT_NOT_AUTHORIZED);
    expect(hexOf(disabled.response.subarray(12, 24))).toBe("00".repeat(12));
  });

  it("item 25: errors echo every option; success echoes only processed ones", () => {
    const opts = [filter(120, "198.51.100.0"), option(200, [1, 2, 3]), option(50, [4])];
    const p = mapRequest({}, opts);
    const err = run(engine, p);
    expect(err.result).toBe(W.RESULT_UNSUPP_OPTION);
    expect(hexOf(err.response.subarray(60))).toBe(hexOf(encodeOptions(opts)));
    const ok = run(engine, mapRequest({}, opts.slice(0, 2)));
    expect(ok.verdict).toBe("parsed");
    engine.finishSuccess(0, 3600, W.OPTBIT_FILTER);
    const r = engine.outcome(0).response;
    expect(hexOf(r.subarray(60))).toBe(hexOf(encodeOptions(opts.slice(0, 1))));
  });

  it("item 26: short errors carry 30 s, long ones 1800 s, both configurable", () => {
    const lifetime = (result: number) => engine.errorLifetime(result);
    for (const r of [W.RESULT_NETWORK_FAILURE, W.RESULT_NO_RESOURCES, W.RESULT_USER_EX_QUOTA]) expect(lifetime(r)).toBe(30);
    for (const r of [
      W.RESULT_UNSUPP_VERSION,
      W.RESULT_NOT_AUTHORIZED,
      W.RESULT_MALFORMED_REQUEST,
      W.RESULT_UNSUPP_OPCODE,
      W.RESULT_UNSUPP_OPTION,
      W.RESULT_MALFORMED_OPTION,
      W.RESULT_UNSUPP_PROTOCOL,
      W.RESULT_ADDRESS_MISMATCH,
      W.RESULT_EXCESSIVE_REMOTE_PEERS,
    ])
      expect(lifetime(r)).toBe(1800);
    engine.reconfigure(engineConfig({ pcp: { shortErrorLifetime: 45, longErrorLifetime: 900 } }));
    expect(u32(run(engine, mapRequest({ client: "192.0.2.8" })).response, 4)).toBe(900);
    expect(lifetime(W.RESULT_NO_RESOURCES)).toBe(45);
  });

  it("item 27: no reply exceeds 1100 bytes: a full 1100-byte MAP succeeds in ≤ 1100, 1104 is MALFORMED_REQUEST", () => {
    const filters = Array.from({ length: 43 }, (_, i) => filter(128, `198.51.100.${i}`));
    const p = mapRequest({}, filters);
    expect(p.length).toBe(60 + 43 * 24);
    expect(run(engine, p)).toMatchObject({ verdict: "parsed", filterCount: 43 });
    engine.finishSuccess(0, 3600, W.OPTBIT_FILTER);
    expect(engine.outcome(0).response.length).toBe(p.length);
    const over = new Uint8Array(1104);
    over.set(p);
    expect(run(engine, over).result).toBe(W.RESULT_MALFORMED_REQUEST);
  });

  it("item 28: MAP error response keeps the suggested external port and address", () => {
    const p = mapRequest({ externalPort: 4444, externalAddress: "203.0.113.5" }, [option(50)]);
    const o = run(engine, p);
    expect(o.result).toBe(W.RESULT_UNSUPP_OPTION);
    expect(u16(o.response, W.MP_EXTERNAL_PORT)).toBe(4444);
    expect(hexOf(o.response.subarray(44, 60))).toBe(hexOf(toAddress16("203.0.113.5")));
  });

  it("item 29 (codec part; table state is issue #3): THIRD_PARTY + malformed FILTER → error, nothing handed to the engine", () => {
    const before = engine.stats().parsed;
    const o = run(engine, mapRequest({}, [thirdParty("10.1.2.3"), filter(64, "198.51.100.0")]), { ingress: TP });
    expect(o).toMatchObject({ verdict: "reply", result: W.RESULT_MALFORMED_OPTION });
    expect(engine.stats().parsed).toBe(before);
  });

  it("item 30 (codec part): unknown mandatory option wins before any engine check (quota) runs", () => {
    const o = run(engine, mapRequest({}, [option(50)]));
    expect(o).toMatchObject({ verdict: "reply", result: W.RESULT_UNSUPP_OPTION });
  });

  // item 31 (reply from the address the request was sent to) needs real sockets: test/integration/udp.test.ts

  it("item 32 (codec part; MAP success needs the engine, issue #3): repeated requests give byte-identical replies", () => {
    for (const p of [announceRequest(), mapRequest({ client: "192.0.2.50" }), mapRequest({}, [option(60)])]) {
      expect(hexOf(run(engine, p).response)).toBe(hexOf(run(engine, p).response));
    }
  });
});

describe("§3.3 option parsing", () => {
  const result = (opts: Parameters<typeof mapRequest>[1], h = {}, ingress = W.INGRESS_SUBSCRIBER) => run(engine, mapRequest(h, opts), { ingress });

  it("item 33: option length larger than the remaining bytes → MALFORMED_OPTION", () => {
    expect(result([option(W.OPTION_FILTER, new Uint8Array(20), { length: 24 })]).result).toBe(W.RESULT_MALFORMED_OPTION);
  });

  it("item 34: option length 0xFFFF → MALFORMED_OPTION, no over-read", () => {
    const p = mapRequest({}, [option(W.OPTION_DESCRIPTION, [1, 2, 3, 4], { length: 0xffff })]);
    expect(run(engine, p).result).toBe(W.RESULT_MALFORMED_OPTION);
  });

  it("item 35: DESCRIPTION of length 5 + 3 pad bytes, then another option: both parsed", () => {
    engine.reconfigure(engineConfig(), { options: W.OPTBIT_ALL });
    const o = result([description("hello"), filter(0, "::")]);
    expect(o).toMatchObject({ verdict: "parsed", filterCount: 1 });
    expect(o.options).toBe(W.OPTBIT_DESCRIPTION | W.OPTBIT_FILTER);
    expect(engine.slotField16(0, W.SLOT_DESCRIPTION_LEN)).toBe(5);
    expect(engine.slotField16(0, W.SLOT_FILTER_FIRST)).toBe(60 + 12);
  });

  it("item 36: unknown mandatory option 50 → UNSUPP_OPTION", () => {
    expect(result([option(50)]).result).toBe(W.RESULT_UNSUPP_OPTION);
  });

  it("item 37: unknown optional option 200 → success, option not in the response", () => {
    const o = result([option(200, [1, 2])]);
    expect(o).toMatchObject({ verdict: "parsed", options: 0 });
    engine.finishSuccess(0, 3600, W.OPTBIT_ALL);
    expect(engine.outcome(0).response.length).toBe(60);
  });

  it("item 38: two THIRD_PARTY options → MALFORMED_OPTION", () => {
    expect(result([thirdParty("10.0.0.1"), thirdParty("10.0.0.2")], {}, TP).result).toBe(W.RESULT_MALFORMED_OPTION);
  });

  it("item 39: two PREFER_FAILURE options → MALFORMED_OPTION", () => {
    expect(result([preferFailure(), preferFailure()], { externalPort: 5000 }).result).toBe(W.RESULT_MALFORMED_OPTION);
  });

  it("item 40: THIRD_PARTY with length 4 → MALFORMED_OPTION", () => {
    expect(result([option(W.OPTION_THIRD_PARTY, [10, 0, 0, 1])], {}, TP).result).toBe(W.RESULT_MALFORMED_OPTION);
  });

  it("item 41: FILTER with length 16 → MALFORMED_OPTION", () => {
    expect(result([option(W.OPTION_FILTER, new Uint8Array(16))]).result).toBe(W.RESULT_MALFORMED_OPTION);
  });

  it("item 42: PREFER_FAILURE with length 4 → MALFORMED_OPTION", () => {
    expect(result([option(W.OPTION_PREFER_FAILURE, [0, 0, 0, 0])], { externalPort: 5000 }).result).toBe(W.RESULT_MALFORMED_OPTION);
  });

  it("item 43: PREFER_FAILURE in PEER → MALFORMED_REQUEST", () => {
    expect(run(engine, peerRequest({ externalPort: 5000 }, [preferFailure()])).result).toBe(W.RESULT_MALFORMED_REQUEST);
  });

  it("item 44: FILTER in PEER and THIRD_PARTY in ANNOUNCE → MALFORMED_OPTION", () => {
    expect(run(engine, peerRequest({}, [filter(128, "198.51.100.1")])).result).toBe(W.RESULT_MALFORMED_OPTION);
    expect(run(engine, announceRequest({}, [thirdParty("10.0.0.1")]), { ingress: TP }).result).toBe(W.RESULT_MALFORMED_OPTION);
  });

  it("item 45 (codec part; applying filters is issue #3): options recorded in request order, clear-all first", () => {
    const o = result([filter(0, "0.0.0.0"), filter(120, "198.51.100.0")]);
    expect(o).toMatchObject({ verdict: "parsed", filterCount: 2 });
    expect(o.parseFlags & W.PARSE_FILTER_CLEAR).toBe(W.PARSE_FILTER_CLEAR);
    const d = engine.slotData(0);
    const first = engine.slotField16(0, W.SLOT_FILTER_FIRST);
    expect(d[first + 4 + W.FILTER_PREFIX_LENGTH]).toBe(0);
    expect(d[first + 24 + 4 + W.FILTER_PREFIX_LENGTH]).toBe(120);
  });

  it("item 46: a mandatory option the operator disabled (FILTER) → UNSUPP_OPTION", () => {
    engine.reconfigure(engineConfig({ pcp: { filter: false } })); // OPTBIT_CORE without FILTER
    expect(result([filter(128, "198.51.100.1")]).result).toBe(W.RESULT_UNSUPP_OPTION);
  });
});
