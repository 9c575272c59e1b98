import { describe, expect, it } from "vitest";
import { formatAddress16, isV4Mapped, toAddress16 } from "../../src/net/address.js";

const hex = (a: Uint8Array) => Buffer.from(a).toString("hex");

describe("16-byte address form [RFC 6887 §5]", () => {
  it.each([
    ["192.0.2.1", "00000000000000000000ffffc0000201"],
    ["::ffff:192.0.2.1", "00000000000000000000ffffc0000201"],
    ["0.0.0.0", "00000000000000000000ffff00000000"],
    ["::", "00000000000000000000000000000000"],
    ["::1", "00000000000000000000000000000001"],
    ["2001:db8::5", "20010db8000000000000000000000005"],
    ["64:ff9b::192.0.2.33", "0064ff9b0000000000000000c0000221"],
    ["fe80::1%eth0", "fe800000000000000000000000000001"],
    ["2001:db8:1:2:3:4:5:6", "20010db8000100020003000400050006"],
  ])("%s", (text, expected) => {
    expect(hex(toAddress16(text))).toBe(expected);
  });

  it("rejects what is not an address", () => {
    for (const bad of ["", "1.2.3", "300.1.1.1", "2001:db8::g", "example.org"]) expect(() => toAddress16(bad)).toThrow(TypeError);
  });

  it("formats back (RFC 5952 for IPv6, dotted quad for v4-mapped)", () => {
    for (const t of ["192.0.2.1", "::", "::1", "2001:db8::5", "2001:db8:0:1::", "2001:db8:1:2:3:4:5:6", "1::2:0:0:3"]) {
      expect(formatAddress16(toAddress16(t))).toBe(t);
    }
    expect(isV4Mapped(toAddress16("10.0.0.1"))).toBe(true);
    expect(isV4Mapped(toAddress16("::c000:201"))).toBe(false);
  });
});
