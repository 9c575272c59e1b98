// The bad-input policy as an ordered table: one row per branch of docs/codec.md, in the
// same order. Each row's packet also violates later rows, so the row proves precedence.
import { describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import type { SlotOutcome } from "../../src/engine/packet-engine.js";
import type { Config } from "../../src/config/schema.js";
import { codecEngine, engineConfig, type DeepPartial } from "../helpers/engine-config.js";
import { announceRequest, mapRequest, natPmpMap, option, peerRequest, preferFailure, run, u32, type Send } from "../helpers/packets.js";

interface Row {
  row: string;
  packet: Uint8Array;
  send?: Send;
  config?: DeepPartial<Config>;
  expect: Partial<SlotOutcome>;
}

const oversized = (p: Uint8Array) => {
  const out = new Uint8Array(1104);
  out.set(p);
  return out;
};
const withOpcode = (p: Uint8Array, opcode: number) => {
  p[1] = opcode;
  return p;
};

const rows: Row[] = [
  { row: "1 no ingress bit → drop INTERFACE", packet: Uint8Array.of(2), send: { ingress: 0 }, expect: { verdict: "drop", dropReason: W.DROP_INTERFACE } },
  { row: "2 fewer than 2 bytes → drop TOO_SHORT", packet: Uint8Array.of(0x80), expect: { verdict: "drop", dropReason: W.DROP_TOO_SHORT } },
  { row: "3 R bit → drop RESPONSE", packet: Uint8Array.of(3, 0x81, 0, 0), expect: { verdict: "drop", dropReason: W.DROP_RESPONSE } },
  {
    row: "4 NAT-PMP silent → drop",
    packet: Uint8Array.of(0, 0),
    send: { ingress: 0 | W.INGRESS_SUBSCRIBER },
    config: { natPmp: "silent" },
    expect: { verdict: "drop", dropReason: W.DROP_NATPMP_SILENT },
  },
  { row: "5 version 0 → NAT-PMP", packet: natPmpMap(W.NATPMP_OP_MAP_TCP, 80, 0, 7200), expect: { verdict: "parsed", version: 0, opcode: 2, lifetime: 7200 } },
  {
    row: "6 unsupported version → UNSUPP_VERSION (before the 24-byte check)",
    packet: Uint8Array.of(1, 1, 0, 0),
    expect: { verdict: "reply", result: W.RESULT_UNSUPP_VERSION },
  },
  {
    row: "6 unsupported version from a source over its rate → drop OVERLOAD, even with overload replies (issue #12 item 8)",
    packet: Uint8Array.of(1, 1),
    send: { overloaded: true },
    config: { pcp: { overload: "no-resources" } },
    expect: { verdict: "drop", dropReason: W.DROP_OVERLOAD },
  },
  {
    row: "6 version 0 with NAT-PMP disabled, from a source over its rate → drop OVERLOAD",
    packet: Uint8Array.of(0, 0),
    send: { overloaded: true },
    config: { natPmp: "disabled" },
    expect: { verdict: "drop", dropReason: W.DROP_OVERLOAD },
  },
  {
    row: "7 version 2 under 24 bytes → drop SHORT_HEADER (before overload)",
    packet: announceRequest().slice(0, 20),
    send: { overloaded: true },
    expect: { verdict: "drop", dropReason: W.DROP_SHORT_HEADER },
  },
  {
    row: "8 overloaded → drop OVERLOAD (before length checks)",
    packet: oversized(mapRequest()),
    send: { overloaded: true },
    expect: { verdict: "drop", dropReason: W.DROP_OVERLOAD },
  },
  {
    row: "9 length → MALFORMED_REQUEST (before ADDRESS_MISMATCH)",
    packet: oversized(mapRequest({ client: "192.0.2.99" })),
    expect: { verdict: "reply", result: W.RESULT_MALFORMED_REQUEST },
  },
  {
    row: "10 client address → ADDRESS_MISMATCH (before UNSUPP_OPCODE)",
    packet: withOpcode(mapRequest({ client: "192.0.2.99" }), 9),
    expect: { verdict: "reply", result: W.RESULT_ADDRESS_MISMATCH },
  },
  {
    row: "11 unknown opcode → UNSUPP_OPCODE (options not walked)",
    packet: withOpcode(mapRequest({}, [option(50)]), 9),
    expect: { verdict: "reply", result: W.RESULT_UNSUPP_OPCODE },
  },
  {
    row: "12 option walk → its first error (before opcode rules)",
    packet: mapRequest({ protocol: 0, internalPort: 80 }, [option(50), option(2, [1])]),
    expect: { verdict: "reply", result: W.RESULT_UNSUPP_OPTION },
  },
  {
    row: "13 third-party-only ingress without THIRD_PARTY → drop INTERFACE (before cross-option rules)",
    packet: mapRequest({ lifetime: 0 }, [preferFailure()]),
    send: { ingress: W.INGRESS_THIRD_PARTY },
    expect: { verdict: "drop", dropReason: W.DROP_INTERFACE },
  },
  {
    row: "14 cross-option rule → MALFORMED_OPTION (before opcode rules)",
    packet: mapRequest({ protocol: 0, internalPort: 80, lifetime: 0, externalPort: 9 }, [preferFailure()]),
    expect: { verdict: "reply", result: W.RESULT_MALFORMED_OPTION },
  },
  {
    row: "15 opcode rule → MALFORMED_REQUEST (before the disabled-opcode check)",
    packet: mapRequest({ protocol: 0, internalPort: 80 }),
    config: { pcp: { map: false } },
    expect: { verdict: "reply", result: W.RESULT_MALFORMED_REQUEST },
  },
  {
    row: "16 MAP disabled → NOT_AUTHORIZED",
    packet: mapRequest(),
    config: { pcp: { map: false } },
    expect: { verdict: "reply", result: W.RESULT_NOT_AUTHORIZED },
  },
  {
    row: "16 PEER disabled → NOT_AUTHORIZED",
    packet: peerRequest(),
    config: { pcp: { peer: false } },
    expect: { verdict: "reply", result: W.RESULT_NOT_AUTHORIZED },
  },
  {
    row: "17 ANNOUNCE → SUCCESS, lifetime 0",
    packet: announceRequest({ lifetime: 600 }, [option(200, [7])]),
    expect: { verdict: "reply", result: W.RESULT_SUCCESS },
  },
  { row: "18 MAP → PARSED", packet: mapRequest(), expect: { verdict: "parsed", version: 2, opcode: W.OP_MAP, lifetime: 3600 } },
  { row: "18 PEER → PARSED", packet: peerRequest(), expect: { verdict: "parsed", version: 2, opcode: W.OP_PEER } },
];

describe("validation order (docs/codec.md)", () => {
  const engine = codecEngine();
  for (const r of rows) {
    it(`row ${r.row}`, () => {
      engine.reconfigure(engineConfig(r.config));
      expect(run(engine, r.packet, r.send)).toMatchObject(r.expect);
    });
  }

  it("row 17 reply is the 24-byte header with lifetime 0 whatever was requested", () => {
    engine.reconfigure(engineConfig());
    const o = run(engine, announceRequest({ lifetime: 600 }, [option(200, [7])]));
    expect(o.response.length).toBe(24);
    expect(u32(o.response, 4)).toBe(0);
  });
});
