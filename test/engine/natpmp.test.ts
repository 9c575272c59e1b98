// NAT-PMP (RFC 6886) on the PCP socket: codec rows and encoders, the real clients'
// captured requests, and the codec's part of checklist §3.12.
import { beforeEach, describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import type { PacketEngine } from "../../src/engine/packet-engine.js";
import { codecEngine, engineConfig } from "../helpers/engine-config.js";
import { captures, captureBytes } from "../golden/captures.js";
import { EPOCH, announceRequest, hexOf, natPmpMap, run } from "../helpers/packets.js";

let engine: PacketEngine;
beforeEach(() => {
  engine = codecEngine();
});

const reply = () => hexOf(engine.outcome(0).response);

describe("§3.12 NAT-PMP (codec part)", () => {
  it("item 129: `00 00` → 12-byte reply 00 80 0000 <SSSoE> <external IPv4>", () => {
    expect(run(engine, Uint8Array.of(0, 0))).toMatchObject({ verdict: "parsed", version: 0, opcode: 0 });
    engine.finishNatPmpAddress(0, 0, 0xcb007105);
    expect(reply()).toBe("0080" + "0000" + "11223344" + "cb007105");
  });

  it("item 129: a failed address request reports address 0.0.0.0", () => {
    run(engine, Uint8Array.of(0, 0));
    engine.finishNatPmpAddress(0, W.NATPMP_RESULT_NETWORK_FAILURE, 0xcb007105);
    expect(reply()).toBe("0080" + "0003" + "11223344" + "00000000");
  });

  it("item 130: 12-byte map UDP → 16-byte reply, opcode 129, internal port echoed", () => {
    expect(run(engine, natPmpMap(W.NATPMP_OP_MAP_UDP, 5000, 6000, 7200))).toMatchObject({ verdict: "parsed", opcode: 1, lifetime: 7200 });
    engine.finishNatPmpMap(0, 0, 40001, 3600);
    expect(reply()).toBe("0081" + "0000" + "11223344" + "1388" + "9c41" + "00000e10");
  });

  it("item 131: opcode 130 (a response value) is ignored", () => {
    expect(run(engine, natPmpMap(130, 1, 1, 1))).toMatchObject({ verdict: "drop", dropReason: W.DROP_RESPONSE });
  });

  it("item 132: opcode 7 → request echoed with opcode 0x87 and result 5", () => {
    const p = Uint8Array.of(0, 7, 0, 0, 1, 2, 3, 4);
    expect(run(engine, p)).toMatchObject({ verdict: "reply", result: 5, response: Uint8Array.of(0, 0x87, 0, 5, 1, 2, 3, 4) });
    // A 2-byte request grows to 4 bytes so the 16-bit result code fits.
    expect(hexOf(run(engine, Uint8Array.of(0, 9)).response)).toBe("00890005");
  });

  it("item 133 (encoder part; quota is issue #3): map failure → result 4, internal port echoed, external port 0, lifetime 0", () => {
    run(engine, natPmpMap(W.NATPMP_OP_MAP_TCP, 8080, 8080, 3600));
    engine.finishNatPmpMap(0, W.NATPMP_RESULT_NO_RESOURCES, 0, 0);
    expect(reply()).toBe("0082" + "0004" + "11223344" + "1f90" + "0000" + "00000000");
  });

  it("map request shorter than 12 bytes is dropped", () => {
    expect(run(engine, natPmpMap(W.NATPMP_OP_MAP_TCP, 1, 1, 1).slice(0, 11))).toMatchObject({ verdict: "drop", dropReason: W.DROP_NATPMP_SHORT });
  });

  it("item 140: NAT-PMP arriving from the external side is refused", () => {
    expect(run(engine, Uint8Array.of(0, 0), { ingress: 0 })).toMatchObject({ verdict: "drop", dropReason: W.DROP_INTERFACE });
    expect(run(engine, Uint8Array.of(0, 0), { ingress: W.INGRESS_THIRD_PARTY })).toMatchObject({ verdict: "drop", dropReason: W.DROP_INTERFACE });
  });

  it("item 141: version 0 → NAT-PMP, 2 → PCP, 1 and 3 → PCP-format UNSUPP_VERSION", () => {
    expect(run(engine, Uint8Array.of(0, 0)).version).toBe(0);
    expect(run(engine, announceRequest())).toMatchObject({ verdict: "reply", result: 0 });
    for (const v of [1, 3]) {
      const o = run(engine, Uint8Array.of(v, 0));
      expect(o).toMatchObject({ verdict: "reply", result: W.RESULT_UNSUPP_VERSION });
      expect(o.response.length).toBe(24);
      expect(o.response[0]).toBe(2);
    }
  });

  it("item 143 (codec part): NAT-PMP configured silent → no answer at all; disabled → PCP UNSUPP_VERSION", () => {
    engine.reconfigure(engineConfig({ natPmp: "silent" }));
    expect(run(engine, Uint8Array.of(0, 0))).toMatchObject({ verdict: "drop", dropReason: W.DROP_NATPMP_SILENT });
    engine.reconfigure(engineConfig({ natPmp: "disabled" }));
    // A PCP-only server's UNSUPP_VERSION reads as NAT-PMP result 1 in bytes 2..3 [6887 §9].
    const o = run(engine, Uint8Array.of(0, 0));
    expect(o.result).toBe(W.RESULT_UNSUPP_VERSION);
    expect((o.response[2] << 8) | o.response[3]).toBe(1);
  });

  it("overloaded NAT-PMP requests are dropped", () => {
    expect(run(engine, Uint8Array.of(0, 0), { overloaded: true })).toMatchObject({ verdict: "drop", dropReason: W.DROP_OVERLOAD });
  });
});

describe("captured requests of real clients", () => {
  it.each(captures.map((c) => [c.name, c] as const))("%s", (_name, c) => {
    const bytes = captureBytes(c);
    const o = run(engine, bytes);
    expect(o.verdict).toBe("parsed");
    expect(o.version).toBe(0);
    expect(o.opcode).toBe(bytes[1]);
    if (bytes[1] === W.NATPMP_OP_ADDRESS) {
      engine.finishNatPmpAddress(0, 0, 0xc0000201);
      expect(engine.outcome(0).response.length).toBe(12);
    } else {
      const view = new DataView(bytes.buffer, bytes.byteOffset);
      expect(o.lifetime).toBe(view.getUint32(8));
      engine.finishNatPmpMap(0, 0, 61000, o.lifetime);
      const r = engine.outcome(0).response;
      expect(r.length).toBe(16);
      expect(hexOf(r.subarray(8, 10))).toBe(hexOf(bytes.subarray(4, 6)));
      expect(new DataView(r.buffer, r.byteOffset).getUint32(4)).toBe(EPOCH);
    }
  });
});
