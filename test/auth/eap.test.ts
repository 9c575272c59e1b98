// The EAP codec (RFC 3748 §4) and the EAP-TTLS peer's answers that need no AAA server.
import { describe, expect, it } from "vitest";
import { EapCode, EapType, encodeEap, identityOf, identityRequest, identityResponse, parseEap } from "../../src/auth/eap.js";
import { EapTtlsPeer, papAvps } from "../../src/auth/eap-ttls-peer.js";

describe("EAP packets", () => {
  it("parses and encodes Request/Response with a type and Success/Failure without", () => {
    expect(parseEap(identityResponse(7, "alice"))).toEqual({ code: 2, identifier: 7, type: 1, data: new TextEncoder().encode("alice") });
    expect(identityOf(identityResponse(7, "alice@example.net"))).toBe("alice@example.net");
    expect(identityOf(identityRequest(7))).toBeNull();
    expect(parseEap(encodeEap(EapCode.SUCCESS, 9, null))).toEqual({ code: 3, identifier: 9, type: null, data: new Uint8Array(0) });
    // RFC 3748 §4.1: trailing octets past Length are ignored.
    expect(parseEap(Uint8Array.of(3, 1, 0, 4, 0xff))?.code).toBe(3);
  });

  it("refuses what is malformed", () => {
    for (const bad of [
      Uint8Array.of(1, 1, 0),
      Uint8Array.of(1, 1, 0, 9, 1),
      Uint8Array.of(1, 1, 0, 4),
      Uint8Array.of(3, 1, 0, 5, 0),
      Uint8Array.of(7, 1, 0, 5, 1),
    ]) {
      expect(parseEap(bad)).toBeNull();
    }
  });
});

describe("EapTtlsPeer without a server", () => {
  const peer = () => new EapTtlsPeer({ identity: "alice", password: "pw", ca: "" });

  it("answers Identity, Notification and a retransmitted request; Naks other methods for TTLS", async () => {
    const p = peer();
    expect(parseEap((await p.receive(identityRequest(3)))!)).toMatchObject({ code: 2, identifier: 3, type: EapType.IDENTITY });
    expect(parseEap((await p.receive(encodeEap(1, 4, EapType.NOTIFICATION, new TextEncoder().encode("hi"))))!)).toMatchObject({
      code: 2,
      identifier: 4,
      type: 2,
    });
    const nak = await p.receive(encodeEap(1, 5, EapType.MD5, Uint8Array.of(16, ...new Uint8Array(16))));
    expect(parseEap(nak!)).toEqual({ code: 2, identifier: 5, type: EapType.NAK, data: Uint8Array.of(EapType.TTLS) });
    expect(await p.receive(encodeEap(1, 5, EapType.MD5, Uint8Array.of(16, ...new Uint8Array(16))))).toEqual(nak);
    expect(p.status).toBe("running");
  });

  it("does not believe an EAP-Success before the method ran (RFC 3748 §4.2)", async () => {
    const p = peer();
    expect(await p.receive(encodeEap(EapCode.SUCCESS, 1, null))).toBeNull();
    expect(p.status).toBe("failure");
    expect(p.msk).toBeNull();
  });

  it("encodes inner PAP as Diameter AVPs with the password padded to 16 (RFC 5281 §11.2.5)", () => {
    const avps = papAvps("alice", "wonderland");
    expect(avps.toString("hex")).toBe(
      [
        "00000001",
        "4000000d",
        Buffer.from("alice").toString("hex"),
        "000000",
        "00000002",
        "40000018",
        Buffer.from("wonderland").toString("hex"),
        "000000000000",
      ].join(""),
    );
  });
});
