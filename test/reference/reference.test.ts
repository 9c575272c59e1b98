/**
 * Validates the reference parser (test/reference/pcp-reference.ts) against the
 * hand-derived golden table (test/golden/pcp-golden.ts), plus configuration-
 * dependent cases and the encoders, whose expectations are also written by hand
 * here. Nothing from src/ or assembly/ is used.
 */
import { describe, expect, it } from "vitest";
import { GOLDEN, hex, srcAddress, type GoldenCase } from "../golden/pcp-golden.js";
import { AUTH_GOLDEN } from "../golden/pa-golden.js";
import { DEFAULT_REF_CONFIG, referenceEngineError, referenceProcess, referenceSuccess, type RefConfig, type RefOutcome } from "./pcp-reference.js";

const EPOCH = 0x11223344;

function toHex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

function run(h: string, opts: { src?: string; ingress?: number; overloaded?: boolean; hostFlags?: number; config?: RefConfig } = {}): RefOutcome {
  return referenceProcess(
    {
      data: hex(h),
      src: srcAddress(opts.src ?? "192.0.2.1"),
      ingress: opts.ingress ?? 1,
      overloaded: opts.overloaded ?? false,
      hostFlags: opts.hostFlags,
      epoch: EPOCH,
    },
    opts.config ?? DEFAULT_REF_CONFIG,
  );
}

function checkGolden(c: GoldenCase): void {
  const o = run(c.hex, { src: c.src, ingress: c.ingress, overloaded: c.overloaded, hostFlags: c.hostFlags });
  expect(o.verdict).toBe(c.expect.verdict);
  if (o.verdict === "drop") {
    expect(o.dropReason).toBe(c.expect.dropReason);
  } else if (o.verdict === "reply") {
    expect(o.result).toBe(c.expect.result);
    expect(c.expect.responseHex, "golden reply without responseHex").toBeDefined();
    expect(toHex(o.response)).toBe(toHex(hex(c.expect.responseHex!)));
  } else {
    expect(o.options).toBe(c.expect.options);
  }
}

describe("golden table is well-formed", () => {
  it("has unique names, decodable hex and consistent expectations", () => {
    const names = new Set<string>();
    for (const c of [...GOLDEN, ...AUTH_GOLDEN]) {
      expect(names.has(c.name), c.name).toBe(false);
      names.add(c.name);
      expect(() => hex(c.hex), c.name).not.toThrow();
      if (c.expect.verdict === "drop") expect(c.expect.dropReason, c.name).toBeGreaterThan(0);
      if (c.expect.verdict === "reply") {
        expect(c.expect.result, c.name).toBeDefined();
        const r = hex(c.expect.responseHex!);
        expect(r.length, c.name).toBeLessThanOrEqual(1100);
        expect(r.length % 4, c.name).toBe(0);
      }
    }
  });

  it("srcAddress parses IPv4 and IPv6 text", () => {
    expect(toHex(srcAddress("192.0.2.1"))).toBe("00000000000000000000ffffc0000201");
    expect(toHex(srcAddress("2001:db8::1"))).toBe("20010db8000000000000000000000001");
    expect(toHex(srcAddress("::"))).toBe("00000000000000000000000000000000");
    expect(toHex(srcAddress("fe80::1:2"))).toBe("fe800000000000000000000000010002");
  });
});

describe("reference parser vs golden table", () => {
  for (const c of [...GOLDEN, ...AUTH_GOLDEN]) {
    it(c.name, () => checkGolden(c));
  }
});

// ---------------------------------------------------------------------------
// Hand-written fragments for the configuration-dependent tests
// ---------------------------------------------------------------------------

const MAP_HDR = `
  02 01 00 00  00 00 0e 10                            # MAP, lifetime 3600
  00 00 00 00  00 00 00 00  00 00 ff ff  c0 00 02 01    # client ::ffff:192.0.2.1
`;
const MAP_HDR_LT0 = `
  02 01 00 00  00 00 00 00                            # MAP, lifetime 0
  00 00 00 00  00 00 00 00  00 00 ff ff  c0 00 02 01
`;
const MAP_BODY = `
  01 02 03 04  05 06 07 08  09 0a 0b 0c                 # nonce
  06 00 00 00  1f 90 00 00                              # TCP, internal 8080, suggested 0
  00 00 00 00  00 00 00 00  00 00 ff ff  00 00 00 00    # suggested ::ffff:0.0.0.0
`;
const MAP_BODY_PF = `
  01 02 03 04  05 06 07 08  09 0a 0b 0c
  06 00 00 00  1f 90 1f 90                              # internal 8080, suggested 8080
  00 00 00 00  00 00 00 00  00 00 ff ff  c6 33 64 01    # suggested ::ffff:198.51.100.1
`;
const PEER_HDR = `
  02 02 00 00  00 00 0e 10                            # PEER, lifetime 3600
  00 00 00 00  00 00 00 00  00 00 ff ff  c0 00 02 01
`;
const PEER_BODY = `
  a1 a2 a3 a4  a5 a6 a7 a8  a9 aa ab ac
  11 00 00 00  13 88 00 00
  00 00 00 00  00 00 00 00  00 00 ff ff  00 00 00 00
  00 35 00 00
  00 00 00 00  00 00 00 00  00 00 ff ff  cb 00 71 05
`;
const ANNOUNCE = `
  02 00 00 00  00 00 00 00
  00 00 00 00  00 00 00 00  00 00 ff ff  c0 00 02 01
`;
const TP = `
  01 00 00 10  00 00 00 00  00 00 00 00  00 00 ff ff  c0 00 02 0a   # THIRD_PARTY ::ffff:192.0.2.10
`;
const ERR_HDR_TAIL = `00 00 00 00  00 00 ff ff  c0 00 02 01`; // bytes 12–23 of the request

function cfg(over: Partial<RefConfig>): RefConfig {
  return { ...DEFAULT_REF_CONFIG, ...over };
}

function desc(bytes: string, len: number, pad: string): string {
  const l = len.toString(16).padStart(4, "0");
  return `80 00 ${l.slice(0, 2)} ${l.slice(2)}  ${bytes} ${pad}`;
}

describe("configuration-dependent behaviour", () => {
  it("DEFAULT_REF_CONFIG matches the brief", () => {
    expect(DEFAULT_REF_CONFIG).toEqual({
      flags: 11,
      enabledOptions: 7,
      shortErrorLifetime: 30,
      longErrorLifetime: 1800,
      thirdPartyIdMaxLen: 16,
    });
  });

  it("MAP disabled → NOT_AUTHORIZED, parsed, bytes 12–23 zero (row 16)", () => {
    const o = run(MAP_HDR + MAP_BODY, { config: cfg({ flags: 10 }) });
    expect(o).toMatchObject({ verdict: "reply", result: 2, parsed: true });
    if (o.verdict !== "reply") return;
    expect(toHex(o.response)).toBe(toHex(hex(`02 81 00 02  00 00 07 08  11 22 33 44  00 00 00 00 00 00 00 00 00 00 00 00` + MAP_BODY)));
  });

  it("PEER disabled → NOT_AUTHORIZED; MAP still parsed", () => {
    const c = cfg({ flags: 9 });
    const o = run(PEER_HDR + PEER_BODY, { config: c });
    expect(o).toMatchObject({ verdict: "reply", result: 2, parsed: true });
    if (o.verdict === "reply") {
      expect(toHex(o.response)).toBe(toHex(hex(`02 82 00 02  00 00 07 08  11 22 33 44  00 00 00 00 00 00 00 00 00 00 00 00` + PEER_BODY)));
    }
    expect(run(MAP_HDR + MAP_BODY, { config: c }).verdict).toBe("parsed");
  });

  it("row 16 comes after rows 14/15: disabled MAP with protocol 0 port 80 → MALFORMED_REQUEST", () => {
    const body = MAP_BODY.replace("06 00 00 00  1f 90 00 00", "00 00 00 00  00 50 00 00");
    const o = run(MAP_HDR + body, { config: cfg({ flags: 10 }) });
    expect(o).toMatchObject({ verdict: "reply", result: 3, parsed: false });
  });

  it("overload reply enabled → NO_RESOURCES with the short lifetime, bytes 12–23 copied", () => {
    const o = run(MAP_HDR + MAP_BODY, { overloaded: true, config: cfg({ flags: 15 }) });
    expect(o).toMatchObject({ verdict: "reply", result: 8, parsed: false });
    if (o.verdict !== "reply") return;
    expect(toHex(o.response)).toBe(toHex(hex(`02 81 00 08  00 00 00 1e  11 22 33 44 ${ERR_HDR_TAIL}` + MAP_BODY)));
  });

  it("configured error lifetimes are used", () => {
    const o = run(MAP_HDR + MAP_BODY, {
      overloaded: true,
      config: cfg({ flags: 15, shortErrorLifetime: 5, longErrorLifetime: 99 }),
    });
    expect(o.verdict === "reply" && toHex(o.response.subarray(4, 8))).toBe("00000005");
    const o2 = run("03 00", { config: cfg({ longErrorLifetime: 99 }) });
    expect(o2.verdict === "reply" && toHex(o2.response.subarray(4, 8))).toBe("00000063");
  });

  it("NAT-PMP disabled → version 0 answered with PCP UNSUPP_VERSION (row 6)", () => {
    const c = cfg({ flags: 3 });
    const o = run("00 00", { config: c });
    expect(o).toMatchObject({ verdict: "reply", result: 1 });
    if (o.verdict === "reply") expect(toHex(o.response)).toBe(toHex(hex("02 80 00 01  00 00 07 08  11 22 33 44" + " 00".repeat(12))));
    const o2 = run("00 01 00 00  1f 90 1f 90  00 00 1c 20", { config: c });
    if (o2.verdict !== "reply") throw new Error("expected reply");
    expect(toHex(o2.response)).toBe(toHex(hex("02 81 00 01  00 00 07 08  11 22 33 44" + " 00".repeat(12))));
  });

  it("NAT-PMP silent → NATPMP_SILENT even when enabled; R bit still wins", () => {
    expect(run("00 00", { config: cfg({ flags: 27 }) })).toEqual({ verdict: "drop", dropReason: 7 });
    expect(run("00 00", { config: cfg({ flags: 19 }) })).toEqual({ verdict: "drop", dropReason: 7 });
    expect(run("00 82", { config: cfg({ flags: 27 }) })).toEqual({ verdict: "drop", dropReason: 2 });
    expect(run("00", { config: cfg({ flags: 27 }) })).toEqual({ verdict: "drop", dropReason: 1 });
  });

  it("FILTER disabled → UNSUPP_OPTION (checklist item 46 proper)", () => {
    const f = `03 00 00 14  00 78 00 00  00 00 00 00 00 00 00 00 00 00 ff ff c6 33 64 00`;
    const o = run(MAP_HDR + MAP_BODY + f, { config: cfg({ enabledOptions: 3 }) });
    expect(o).toMatchObject({ verdict: "reply", result: 5 });
  });

  it("PREFER_FAILURE disabled: in PEER → UNSUPP_OPTION (step 2 before step 3)", () => {
    const o = run(PEER_HDR + PEER_BODY + "02 00 00 00", { config: cfg({ enabledOptions: 5 }) });
    expect(o).toMatchObject({ verdict: "reply", result: 5 });
  });

  it("THIRD_PARTY disabled: THIRD_PARTY-only ingress, code 1 reached → UNSUPP_OPTION reply (decision D1)", () => {
    const o = run(MAP_HDR + MAP_BODY + TP, { ingress: 2, config: cfg({ enabledOptions: 6 }) });
    expect(o).toMatchObject({ verdict: "reply", result: 5 });
  });
});

describe("extension options when enabled", () => {
  const withDesc = cfg({ enabledOptions: 7 | 16 });

  it("DESCRIPTION valid → recorded", () => {
    const o = run(MAP_HDR + MAP_BODY + desc("68 65 6c 6c 6f", 5, "00 00 00"), { config: withDesc });
    expect(o).toMatchObject({ verdict: "parsed", options: 16, parseFlags: 1 });
  });

  it("DESCRIPTION empty → recorded", () => {
    const o = run(MAP_HDR + MAP_BODY + "80 00 00 00", { config: withDesc });
    expect(o).toMatchObject({ verdict: "parsed", options: 16, parseFlags: 1 });
  });

  const invalid: [string, string, number, string][] = [
    ["lone continuation", "80", 1, "00 00 00"],
    ["overlong C0 80", "c0 80", 2, "00 00"],
    ["overlong E0 80 80", "e0 80 80", 3, "00"],
    ["surrogate ED A0 80", "ed a0 80", 3, "00"],
    ["above U+10FFFF F4 90 80 80", "f4 90 80 80", 4, ""],
    ["truncated E2 82", "e2 82", 2, "00 00"],
    ["byte FF", "41 ff", 2, "00 00"],
    ["NUL", "41 00 42", 3, "00"],
  ];
  for (const [name, bytes, len, pad] of invalid) {
    it(`DESCRIPTION invalid (${name}) → not recorded, PARSE_DESCRIPTION_INVALID`, () => {
      const o = run(MAP_HDR + MAP_BODY + desc(bytes, len, pad), { config: withDesc });
      expect(o).toMatchObject({ verdict: "parsed", options: 0, parseFlags: 3 });
    });
  }

  const valid: [string, string, number, string][] = [
    ["euro sign", "e2 82 ac", 3, "00"],
    ["emoji", "f0 9f 98 80", 4, ""],
    ["U+10FFFF", "f4 8f bf bf", 4, ""],
    ["U+D7FF", "ed 9f bf", 3, "00"],
    ["é", "c3 a9", 2, "00 00"],
  ];
  for (const [name, bytes, len, pad] of valid) {
    it(`DESCRIPTION valid (${name}) → recorded`, () => {
      const o = run(MAP_HDR + MAP_BODY + desc(bytes, len, pad), { config: withDesc });
      expect(o).toMatchObject({ verdict: "parsed", options: 16, parseFlags: 1 });
    });
  }

  it("two DESCRIPTIONs → MALFORMED_OPTION; also when the first was invalid (decision D3)", () => {
    const d = desc("41", 1, "00 00 00");
    expect(run(MAP_HDR + MAP_BODY + d + d, { config: withDesc })).toMatchObject({ verdict: "reply", result: 6 });
    const bad = desc("ff", 1, "00 00 00");
    expect(run(MAP_HDR + MAP_BODY + bad + d, { config: withDesc })).toMatchObject({ verdict: "reply", result: 6 });
  });

  it("DESCRIPTION of 1017 bytes → MALFORMED_OPTION; 1016 → recorded", () => {
    const long = (n: number) => desc(" 41".repeat(n), n, " 00".repeat((4 - (n % 4)) % 4));
    expect(run(MAP_HDR + MAP_BODY + long(1017), { config: withDesc })).toMatchObject({ verdict: "reply", result: 6 });
    expect(run(MAP_HDR + MAP_BODY + long(1016), { config: withDesc })).toMatchObject({
      verdict: "parsed",
      options: 16,
    });
  });

  it("DESCRIPTION in ANNOUNCE → skipped (optional, not valid for opcode)", () => {
    const o = run(ANNOUNCE + desc("41", 1, "00 00 00"), { config: withDesc });
    expect(o).toMatchObject({ verdict: "reply", result: 0 });
  });

  const withTpid = cfg({ enabledOptions: 7 | 8 });

  it("THIRD_PARTY_ID without THIRD_PARTY → THIRD_PARTY_MISSING_OPTION (25)", () => {
    const o = run(MAP_HDR + MAP_BODY + "0d 00 00 04  00 00 00 2a", { config: withTpid });
    expect(o).toMatchObject({ verdict: "reply", result: 25, parsed: false });
  });

  it("THIRD_PARTY_ID before THIRD_PARTY, authorised → parsed, options 9", () => {
    const o = run(MAP_HDR + MAP_BODY + "0d 00 00 04  00 00 00 2a" + TP, { ingress: 3, config: withTpid });
    expect(o).toMatchObject({ verdict: "parsed", options: 9 });
  });

  it("THIRD_PARTY_ID length 17 → UNSUPP_THIRD_PARTY_ID_LENGTH; 16 ok; 0 → MALFORMED_OPTION", () => {
    const id = (n: number) => `0d 00 00 ${n.toString(16).padStart(2, "0")}` + " 07".repeat(n) + " 00".repeat((4 - (n % 4)) % 4);
    expect(run(MAP_HDR + MAP_BODY + TP + id(17), { ingress: 3, config: withTpid })).toMatchObject({ result: 26 });
    expect(run(MAP_HDR + MAP_BODY + TP + id(16), { ingress: 3, config: withTpid })).toMatchObject({
      verdict: "parsed",
    });
    expect(run(MAP_HDR + MAP_BODY + TP + id(0), { ingress: 3, config: withTpid })).toMatchObject({ result: 6 });
    expect(run(MAP_HDR + MAP_BODY + TP + id(17), { ingress: 3, config: { ...withTpid, thirdPartyIdMaxLen: 32 } })).toMatchObject({
      verdict: "parsed",
      options: 9,
    });
  });

  it("THIRD_PARTY_ID in ANNOUNCE → MALFORMED_OPTION", () => {
    expect(run(ANNOUNCE + "0d 00 00 04  00 00 00 2a", { config: withTpid })).toMatchObject({ result: 6 });
  });

  const withPortSet = cfg({ enabledOptions: 7 | 64 });
  const ps = (size: string, first: string) => `82 00 00 05  ${size} ${first} 01  00 00 00`;

  it("PORT_SET valid → recorded; size 0 or first port ≠ internal port → MALFORMED_OPTION", () => {
    expect(run(MAP_HDR + MAP_BODY + ps("00 10", "1f 90"), { config: withPortSet })).toMatchObject({
      verdict: "parsed",
      options: 64,
    });
    expect(run(MAP_HDR + MAP_BODY + ps("00 00", "1f 90"), { config: withPortSet })).toMatchObject({ result: 6 });
    expect(run(MAP_HDR + MAP_BODY + ps("00 10", "1f 91"), { config: withPortSet })).toMatchObject({ result: 6 });
    expect(run(MAP_HDR + MAP_BODY + "82 00 00 04  00 10 1f 90", { config: withPortSet })).toMatchObject({
      result: 6,
    });
  });

  it("PORT_SET + PREFER_FAILURE → MALFORMED_OPTION (row 14 rule 5); in PEER → skipped", () => {
    expect(run(MAP_HDR + MAP_BODY_PF + ps("00 10", "1f 90") + "02 00 00 00", { config: withPortSet })).toMatchObject({ result: 6 });
    expect(run(PEER_HDR + PEER_BODY + ps("00 10", "13 88"), { config: withPortSet })).toMatchObject({
      verdict: "parsed",
      options: 0,
    });
  });

  const withP64 = cfg({ enabledOptions: 7 | 32 });
  const p64 = "81 00 00 0e  00 0c  00 00 00 00 00 00 00 00 00 00 00 00  00 00";

  it("PREFIX64 ::/96 → recorded in MAP; ANNOUNCE succeeds without echo", () => {
    expect(run(MAP_HDR + MAP_BODY + p64, { config: withP64 })).toMatchObject({ verdict: "parsed", options: 32 });
    const a = run(ANNOUNCE + p64, { config: withP64 });
    expect(a.verdict === "reply" && a.response.length).toBe(24);
  });

  it("PREFIX64 length / prefix-length rules", () => {
    // length 15 → bad
    expect(run(MAP_HDR + MAP_BODY + "81 00 00 0f  00 0c  00 00 00 00 00 00 00 00 00 00 00 00  00 00", { config: withP64 })).toMatchObject({ result: 6 });
    // prefix length 9 → bad
    expect(run(MAP_HDR + MAP_BODY + "81 00 00 0e  00 09  00 00 00 00 00 00 00 00 00 00 00 00  00 00", { config: withP64 })).toMatchObject({ result: 6 });
    // length 22, count 1 → ok
    const withList = "81 00 00 16  00 04  20 01 0d b8 00 00 00 00 00 00 00 00  00 01  00 18 c0 00 02 00  00 00";
    expect(run(MAP_HDR + MAP_BODY + withList, { config: withP64 })).toMatchObject({ verdict: "parsed", options: 32 });
    // length 22, count 2 → bad
    const badList = "81 00 00 16  00 04  20 01 0d b8 00 00 00 00 00 00 00 00  00 02  00 18 c0 00 02 00  00 00";
    expect(run(MAP_HDR + MAP_BODY + badList, { config: withP64 })).toMatchObject({ result: 6 });
    // in PEER → skipped
    expect(run(PEER_HDR + PEER_BODY + p64, { config: withP64 })).toMatchObject({ verdict: "parsed", options: 0 });
  });

  it("CHECKPOINT_REQUIRED length 0 → recorded; length 4 → MALFORMED_OPTION", () => {
    const c = cfg({ enabledOptions: 7 | 128 });
    expect(run(PEER_HDR + PEER_BODY + "c0 00 00 00", { config: c })).toMatchObject({ verdict: "parsed", options: 128 });
    expect(run(MAP_HDR + MAP_BODY + "c0 00 00 04  00 00 00 00", { config: c })).toMatchObject({ result: 6 });
  });
});

describe("parsed record details", () => {
  it("MAP parsed record", () => {
    expect(run(MAP_HDR + MAP_BODY)).toEqual({
      verdict: "parsed",
      version: 2,
      opcode: 1,
      lifetime: 3600,
      options: 0,
      parseFlags: 1,
      filterCount: 0,
    });
  });

  it("FILTER clear + FILTER → PARSE_FILTER_CLEAR, filterCount 2 (decision D4)", () => {
    const clear = "03 00 00 14  00 00 00 00" + " 00".repeat(16);
    const f = "03 00 00 14  00 78 00 00  00 00 00 00 00 00 00 00 00 00 ff ff c6 33 64 00";
    expect(run(MAP_HDR + MAP_BODY + clear + f)).toMatchObject({ options: 4, parseFlags: 5, filterCount: 2 });
  });

  it("PEER lifetime 0xFFFFFFFF is read unsigned", () => {
    const h = PEER_HDR.replace("00 00 0e 10", "ff ff ff ff");
    expect(run(h + PEER_BODY)).toMatchObject({ verdict: "parsed", opcode: 2, lifetime: 0xffffffff });
  });

  it("NAT-PMP parsed records", () => {
    expect(run("00 00")).toEqual({
      verdict: "parsed",
      version: 0,
      opcode: 0,
      lifetime: 0,
      options: 0,
      parseFlags: 0,
      filterCount: 0,
    });
    expect(run("00 01 00 00  1f 90 1f 90  00 00 1c 20")).toEqual({
      verdict: "parsed",
      version: 0,
      opcode: 1,
      lifetime: 7200,
      options: 0,
      parseFlags: 0,
      filterCount: 0,
    });
    expect(run("00 02 00 00  00 16 08 ae  fe dc ba 98")).toMatchObject({ opcode: 2, lifetime: 0xfedcba98 });
  });

  it("reply outcome flags parsed=false for codec errors, true for ANNOUNCE success", () => {
    expect(run(ANNOUNCE)).toMatchObject({ verdict: "reply", result: 0, parsed: true });
    expect(run("03 00")).toMatchObject({ verdict: "reply", result: 1, parsed: false });
    expect(run("00 07")).toMatchObject({ verdict: "reply", result: 5, parsed: false });
  });
});

describe("encoders", () => {
  it("referenceSuccess MAP: reserved/padding zeroed, assigned fields written, FILTERs echoed in order", () => {
    const req = hex(`
      02 01 00 00  00 00 0e 10
      00 00 00 00  00 00 00 00  00 00 ff ff  c0 00 02 01
      01 02 03 04  05 06 07 08  09 0a 0b 0c
      06 aa bb cc                                      # protocol 6, reserved bytes non-zero
      1f 90 00 00
      00 00 00 00  00 00 00 00  00 00 ff ff  00 00 00 00
      03 55 00 14  00 78 00 00  00 00 00 00 00 00 00 00 00 00 ff ff c6 33 64 00   # FILTER, reserved 0x55
      c8 00 00 04  de ad be ef                         # option 200 (never echoed)
      80 00 00 05  68 65 6c 6c 6f ff ff ff             # DESCRIPTION "hello", pad ff
      03 00 00 14  00 80 01 bb  00 00 00 00 00 00 00 00 00 00 ff ff cb 00 71 09   # FILTER /128 port 443
    `);
    const out = referenceSuccess(req, 7200, 4 | 16, EPOCH, { port: 0x1234, addr: srcAddress("203.0.113.77") }, { ...DEFAULT_REF_CONFIG, enabledOptions: 255 });
    expect(toHex(out)).toBe(
      toHex(
        hex(`
      02 81 00 00  00 00 1c 20  11 22 33 44
      00 00 00 00  00 00 00 00  00 00 00 00
      01 02 03 04  05 06 07 08  09 0a 0b 0c
      06 00 00 00
      1f 90 12 34
      00 00 00 00  00 00 00 00  00 00 ff ff  cb 00 71 4d
      03 00 00 14  00 78 00 00  00 00 00 00 00 00 00 00 00 00 ff ff c6 33 64 00
      80 00 00 05  68 65 6c 6c 6f 00 00 00
      03 00 00 14  00 80 01 bb  00 00 00 00 00 00 00 00 00 00 ff ff cb 00 71 09
    `),
      ),
    );
  });

  it("referenceSuccess MAP without assigned keeps the suggested fields; echoMask 0 → 60 bytes", () => {
    const req = hex(MAP_HDR + MAP_BODY_PF + "02 00 00 00");
    expect(toHex(referenceSuccess(req, 3600, 0, EPOCH))).toBe(
      toHex(hex("02 81 00 00  00 00 0e 10  11 22 33 44  00 00 00 00 00 00 00 00 00 00 00 00" + MAP_BODY_PF)),
    );
    expect(toHex(referenceSuccess(req, 3600, 2, EPOCH))).toBe(
      toHex(hex("02 81 00 00  00 00 0e 10  11 22 33 44  00 00 00 00 00 00 00 00 00 00 00 00" + MAP_BODY_PF + "02 00 00 00")),
    );
  });

  it("referenceSuccess never echoes an invalid DESCRIPTION (decision D5)", () => {
    const req = hex(MAP_HDR + MAP_BODY + "80 00 00 01  ff 00 00 00");
    expect(referenceSuccess(req, 3600, 16, EPOCH).length).toBe(60);
  });

  it("referenceSuccess PEER: bytes 37–39 and 62–63 zeroed, THIRD_PARTY echoed", () => {
    const req = hex(
      `
      02 02 00 00  00 00 0e 10
      00 00 00 00  00 00 00 00  00 00 ff ff  c0 00 02 01
      a1 a2 a3 a4  a5 a6 a7 a8  a9 aa ab ac
      11 01 02 03  13 88 00 00
      00 00 00 00  00 00 00 00  00 00 ff ff  00 00 00 00
      00 35 ee ff
      00 00 00 00  00 00 00 00  00 00 ff ff  cb 00 71 05
    ` + TP,
    );
    expect(toHex(referenceSuccess(req, 120, 1, EPOCH, { port: 40000, addr: srcAddress("198.51.100.9") }))).toBe(
      toHex(
        hex(
          `
      02 82 00 00  00 00 00 78  11 22 33 44
      00 00 00 00  00 00 00 00  00 00 00 00
      a1 a2 a3 a4  a5 a6 a7 a8  a9 aa ab ac
      11 00 00 00  13 88 9c 40
      00 00 00 00  00 00 00 00  00 00 ff ff  c6 33 64 09
      00 35 00 00
      00 00 00 00  00 00 00 00  00 00 ff ff  cb 00 71 05
    ` + TP,
        ),
      ),
    );
  });

  it("referenceSuccess ANNOUNCE → the 24-byte success header", () => {
    expect(toHex(referenceSuccess(hex(ANNOUNCE), 0, 0, EPOCH))).toBe("02800000" + "00000000" + "11223344" + "00".repeat(12));
  });

  it("referenceEngineError: bytes 12–23 zeroed, options and reserved bytes kept", () => {
    // MAP delete with non-zero reserved bytes 37–39 and a FILTER whose reserved byte is 0x09
    const req = hex(MAP_HDR_LT0 + MAP_BODY.replace("06 00 00 00", "06 01 02 03") + "03 09 00 14  00 78 00 00  00 00 00 00 00 00 00 00 00 00 ff ff c6 33 64 00");
    expect(toHex(referenceEngineError(req, 10, 30, EPOCH))).toBe(
      toHex(
        hex(
          "02 81 00 0a  00 00 00 1e  11 22 33 44  00 00 00 00 00 00 00 00 00 00 00 00" +
            MAP_BODY.replace("06 00 00 00", "06 01 02 03") +
            "03 09 00 14  00 78 00 00  00 00 00 00 00 00 00 00 00 00 ff ff c6 33 64 00",
        ),
      ),
    );
    expect(toHex(referenceEngineError(hex(PEER_HDR + PEER_BODY), 2, 1234, EPOCH).subarray(0, 24))).toBe("028200020000" + "04d2" + "11223344" + "00".repeat(12));
  });
});
