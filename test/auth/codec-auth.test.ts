// The codec's RFC 7652 rows (docs/auth.md, assembly/codec.ts row 15a): what a source with
// authentication on may send, what the others still get (UNSUPP_OPCODE / UNSUPP_OPTION),
// and the host flags the listener's tag gate sets.
import { describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import { encodePa, option as paOption, u32Option } from "../../src/auth/pa-wire.js";
import { toAddress16 } from "../../src/net/address.js";
import { codecEngine } from "../helpers/engine-config.js";
import { announceRequest, CLIENT, mapRequest, option, peerRequest, run, thirdParty, u32 } from "../helpers/packets.js";

const engine = codecEngine();
const ON = W.INGRESS_SUBSCRIBER | W.INGRESS_AUTH;
const REQUIRED = ON | W.INGRESS_AUTH_REQUIRED;
const tag = () => option(W.OPTION_AUTHENTICATION_TAG, new Uint8Array(28));
const pa = (result: number, options: Buffer[] = [], sessionId = 0) =>
  encodePa({ response: false, result, sessionId, sequence: 0, clientAddress: toAddress16(CLIENT), options });
const initiation = () => pa(W.RESULT_INITIATION, [u32Option(W.OPTION_NONCE, 1)]);

describe("codec: RFC 7652", () => {
  it("authentication off: opcode 3 and options 4–12 stay unknown", () => {
    expect(run(engine, initiation()).result).toBe(W.RESULT_UNSUPP_OPCODE);
    for (const code of [4, 5, 6, 7, 8, 9, 10, 11, 12])
      expect(run(engine, mapRequest({}, [option(code, new Uint8Array(4))])).result, `option ${code}`).toBe(W.RESULT_UNSUPP_OPTION);
  });

  it("authentication on: a valid AUTHENTICATION request is handed to the host", () => {
    const o = run(engine, initiation(), { ingress: ON });
    expect(o.verdict).toBe("auth");
    const eap = Buffer.from([2, 1, 0, 9, 1, 0x61, 0x6c, 0x69, 0x63]);
    const reply = pa(
      W.RESULT_AUTHENTICATION_REPLY,
      [
        paOption(W.OPTION_EAP_PAYLOAD, eap),
        u32Option(W.OPTION_PSEUDO_RANDOM_FUNCTION, 5),
        u32Option(W.OPTION_PSEUDO_RANDOM_FUNCTION, 6),
        u32Option(W.OPTION_MAC_ALGORITHM, 12),
      ],
      7,
    );
    expect(run(engine, reply, { ingress: ON }).verdict).toBe("auth");
    // A THIRD_PARTY-only source (a proxy) is answered, not dropped [6887 §8.2 row 13]
    expect(run(engine, initiation(), { ingress: W.INGRESS_THIRD_PARTY | W.INGRESS_AUTH }).verdict).toBe("auth");
  });

  it("AUTHENTICATION: validation", () => {
    const cases: [string, Uint8Array, number][] = [
      ["short", initiation().subarray(0, 28), W.RESULT_MALFORMED_REQUEST],
      ["NONCE of 8 bytes", pa(W.RESULT_INITIATION, [paOption(W.OPTION_NONCE, Buffer.alloc(8))]), W.RESULT_MALFORMED_OPTION],
      ["two NONCEs", pa(W.RESULT_INITIATION, [u32Option(W.OPTION_NONCE, 1), u32Option(W.OPTION_NONCE, 2)]), W.RESULT_MALFORMED_OPTION],
      ["SESSION_LIFETIME in a request", pa(W.RESULT_INITIATION, [u32Option(W.OPTION_SESSION_LIFETIME, 1)]), W.RESULT_MALFORMED_OPTION],
      ["ID_INDICATOR in a request", pa(W.RESULT_INITIATION, [paOption(W.OPTION_ID_INDICATOR, Buffer.from("x"))]), W.RESULT_MALFORMED_OPTION],
      ["empty EAP_PAYLOAD", pa(W.RESULT_AUTHENTICATION_REPLY, [paOption(W.OPTION_EAP_PAYLOAD, Buffer.alloc(0))], 7), W.RESULT_MALFORMED_OPTION],
      [
        "an option after the PA tag [7652 §6.1]",
        pa(W.RESULT_AUTHENTICATION_REPLY, [paOption(W.OPTION_PA_AUTHENTICATION_TAG, Buffer.alloc(20)), u32Option(W.OPTION_MAC_ALGORITHM, 12)], 7),
        W.RESULT_MALFORMED_OPTION,
      ],
      ["PA tag of 6 bytes", pa(W.RESULT_AUTHENTICATION_REPLY, [paOption(W.OPTION_PA_AUTHENTICATION_TAG, Buffer.alloc(6))], 7), W.RESULT_MALFORMED_OPTION],
      ["AUTHENTICATION_TAG on a PA message", pa(W.RESULT_INITIATION, [paOption(W.OPTION_AUTHENTICATION_TAG, Buffer.alloc(28))]), W.RESULT_MALFORMED_OPTION],
      ["a PA-Server result code in a request", pa(W.RESULT_AUTHENTICATION_REQUEST), W.RESULT_MALFORMED_REQUEST],
      ["result 0 without RECEIVED_PAK", pa(0), W.RESULT_MALFORMED_REQUEST],
    ];
    for (const [name, msg, result] of cases) expect(run(engine, msg, { ingress: ON }).result, name).toBe(result);
    expect(run(engine, pa(0, [u32Option(W.OPTION_RECEIVED_PAK, 3)], 7), { ingress: ON }).verdict).toBe("auth");
    // The first section of an EAP message longer than a PA message: the host reassembles it [7652 §6.6].
    expect(run(engine, pa(W.RESULT_AUTHENTICATION_REPLY, [paOption(W.OPTION_EAP_PAYLOAD, Buffer.from([2, 1, 0, 40, 1]))], 7), { ingress: ON }).verdict).toBe(
      "auth",
    );
  });

  it("AUTHENTICATION_TAG on common requests: lengths, opcodes, host flags", () => {
    expect(run(engine, mapRequest({}, [option(W.OPTION_AUTHENTICATION_TAG, new Uint8Array(12))]), { ingress: ON }).result).toBe(W.RESULT_MALFORMED_OPTION);
    expect(run(engine, mapRequest({}, [option(W.OPTION_AUTHENTICATION_TAG, new Uint8Array(30))]), { ingress: ON }).result).toBe(W.RESULT_MALFORMED_OPTION);
    expect(run(engine, mapRequest({}, [tag(), tag()]), { ingress: ON }).result).toBe(W.RESULT_MALFORMED_OPTION);
    // A tag the host did not verify names no session it holds.
    expect(run(engine, mapRequest({}, [tag()]), { ingress: ON }).result).toBe(W.RESULT_UNKNOWN_SESSION_ID);
    expect(run(engine, announceRequest({}, [tag()]), { ingress: ON }).result).toBe(W.RESULT_UNKNOWN_SESSION_ID);
  });

  it("required: MAP/PEER without a verified tag → AUTHENTICATION_REQUIRED (short error lifetime); ANNOUNCE served", () => {
    const refused = run(engine, mapRequest(), { ingress: REQUIRED });
    expect(refused.result).toBe(W.RESULT_AUTHENTICATION_REQUIRED);
    expect(u32(refused.response, W.HDR_LIFETIME)).toBe(30);
    expect(run(engine, peerRequest(), { ingress: REQUIRED }).result).toBe(W.RESULT_AUTHENTICATION_REQUIRED);
    expect(run(engine, announceRequest(), { ingress: REQUIRED }).result).toBe(W.RESULT_SUCCESS);
    // Malformed requests get their own error first.
    expect(run(engine, mapRequest({ protocol: 0, internalPort: 80 }), { ingress: REQUIRED }).result).toBe(W.RESULT_MALFORMED_REQUEST);
    // Optional: served.
    expect(run(engine, mapRequest(), { ingress: ON }).verdict).toBe("parsed");
  });

  it("THIRD_PARTY policy is its own bit", () => {
    const tp = W.INGRESS_SUBSCRIBER | W.INGRESS_THIRD_PARTY | W.INGRESS_AUTH | W.INGRESS_AUTH_TP_REQUIRED;
    expect(run(engine, mapRequest({}, [thirdParty("10.1.2.3")]), { ingress: tp }).result).toBe(W.RESULT_AUTHENTICATION_REQUIRED);
    expect(run(engine, mapRequest(), { ingress: tp }).verdict).toBe("parsed");
  });
});

describe("codec: RFC 7652 under random input", () => {
  it("AUTHENTICATION messages with random options: a defined verdict, never a trap, and the hand-off only for what the host's parser reads", async () => {
    const fc = await import("fast-check");
    const { parsePa } = await import("../../src/auth/pa-wire.js");
    const opt = fc.record({ code: fc.integer({ min: 0, max: 14 }), data: fc.uint8Array({ maxLength: 24 }) });
    fc.assert(
      fc.property(
        fc.constantFrom(0, 14, 16, 17, 18, 19, 22, 23, 99),
        fc.array(opt, { maxLength: 6 }),
        fc.integer({ min: 0, max: 3 }),
        (result, options, cut) => {
          const msg = pa(
            result,
            options.map((o) => paOption(o.code, Buffer.from(o.data))),
            5,
          );
          const bytes = cut === 0 ? msg : msg.subarray(0, Math.max(24, msg.length - cut * 4));
          const o = run(engine, bytes, { ingress: ON });
          expect(["drop", "reply", "auth"]).toContain(o.verdict);
          if (o.verdict === "auth") expect(parsePa(bytes)).toBeDefined();
        },
      ),
      { numRuns: 2000 },
    );
  });
});
