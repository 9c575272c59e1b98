// PREFIX64 (RFC 7225): the configured NAT64 prefixes go back to MAP and ANNOUNCE requests
// that ask (checklist item 148); golden bytes of the option encoding; configuration errors.
import { describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import type { PacketEngine } from "../../src/engine/packet-engine.js";
import { engineConfig, engineFrom } from "../helpers/engine-config.js";
import { encodePrefix64Options } from "../../src/net/prefix64.js";
import { parseConfig } from "../../src/config/schema.js";
import { ConfigError } from "../../src/errors.js";
import { announceRequest, mapRequest, peerRequest, prefix64, serveOne } from "../helpers/packets.js";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const CLIENT = "192.0.2.1";

function engine(list: Parameters<typeof encodePrefix64Options>[0]): PacketEngine {
  return engineFrom(engineConfig({ pcp: { prefix64: list } }), 100);
}

/** The options of a response, as [code, data hex]. */
function options(response: Uint8Array, bodySize: number): [number, string][] {
  const out: [number, string][] = [];
  for (let at = W.PCP_HEADER_SIZE + bodySize; at < response.length; ) {
    const n = (response[at + 2] << 8) | response[at + 3];
    out.push([response[at], hex(response.subarray(at + 4, at + 4 + n))]);
    at += 4 + ((n + 3) & ~3);
  }
  return out;
}

describe("PREFIX64 option encoding (RFC 7225 §4.1)", () => {
  it("golden bytes: /96 well-known prefix; /64 with a suffix; IPv4 lists first", () => {
    expect(hex(encodePrefix64Options([{ prefix: "64:ff9b::/96" }]))).toBe(
      "81" + "00" + "000e" + "000c" + "0064ff9b0000000000000000" + "0000", // 14 bytes of data + 2 padding
    );
    expect(hex(encodePrefix64Options([{ prefix: "2001:db8:122:344::/64", suffix: "::ff:0:0:0" }]))).toBe(
      "81" + "00" + "000e" + "0008" + "20010db801220344" + "00ff0000" + "0000",
    );
    const two = encodePrefix64Options([{ prefix: "64:ff9b::/96" }, { prefix: "2001:db8:1::/48", ipv4: ["192.0.2.0/24", "198.51.100.0/24"] }]);
    expect(hex(two)).toBe(
      "81" +
        "00" +
        "001c" +
        "0006" +
        "20010db80001" +
        "000000000000" +
        "0002" +
        "0018" +
        "c0000200" +
        "0018" +
        "c6336400" + // with the IPv4 list: first
        "81" +
        "00" +
        "000e" +
        "000c" +
        "0064ff9b0000000000000000" +
        "0000",
    );
  });

  it("refuses prefix lengths RFC 6052 does not define, IPv4 where IPv6 is due, and the reverse, naming the field", () => {
    expect(() => encodePrefix64Options([{ prefix: "64:ff9b::/80" }])).toThrow(/\/32, \/40, \/48, \/56, \/64 or \/96/);
    expect(() => encodePrefix64Options([{ prefix: "192.0.2.0/24" }])).toThrow(/not an IPv6 prefix/);
    expect(() => encodePrefix64Options([{ prefix: "64:ff9b::/96", ipv4: ["2001:db8::/32"] }])).toThrow(/not an IPv4 prefix/);
    expect(() => parseConfig({ pcp: { prefix64: [{ prefix: "64:ff9b::/72" }] } })).toThrow(ConfigError);
    expect(() => parseConfig({ pcp: { prefix64: [{ prefix: "64:ff9b::/72" }] } })).toThrow(/pcp\.prefix64: 64:ff9b::\/72: a NAT64 prefix is/);
  });
});

describe("item 148: PREFIX64 answered with the configured prefix", () => {
  it("MAP with PREFIX64 ::/96 → the configured prefix and suffix, in place of the query", () => {
    const e = engine([{ prefix: "64:ff9b::/96" }]);
    const o = serveOne(e, mapRequest({ client: CLIENT }, [prefix64()]), 100, { source: CLIENT });
    expect(o.result).toBe(W.RESULT_SUCCESS);
    expect(options(o.response, W.MAP_PAYLOAD_SIZE)).toEqual([[W.OPTION_PREFIX64, "000c0064ff9b0000000000000000"]]);
  });

  it("ANNOUNCE with PREFIX64 → the prefixes too; MAP without PREFIX64 → none; PEER → none", () => {
    const e = engine([{ prefix: "2001:db8:1::/48", ipv4: ["192.0.2.0/24"] }, { prefix: "64:ff9b::/96" }]);
    const a = serveOne(e, announceRequest({ client: CLIENT }, [prefix64()]), 100, { source: CLIENT });
    expect(options(a.response, 0).map(([code]) => code)).toEqual([W.OPTION_PREFIX64, W.OPTION_PREFIX64]);
    const plain = serveOne(e, mapRequest({ client: CLIENT, internalPort: 81 }), 100, { source: CLIENT });
    expect(options(plain.response, W.MAP_PAYLOAD_SIZE)).toEqual([]);
    const peer = serveOne(e, peerRequest({ client: CLIENT, internalPort: 82 }, [prefix64()]), 100, { source: CLIENT });
    expect(peer.result).toBe(W.RESULT_SUCCESS); // an optional option not valid for PEER is ignored
    expect(options(peer.response, W.PEER_PAYLOAD_SIZE)).toEqual([]);
  });

  it("a reload (reconfigure) replaces the prefixes; removing them all stops the option", () => {
    const e = engine([{ prefix: "64:ff9b::/96" }]);
    e.reconfigure(engineConfig({ pcp: { prefix64: [{ prefix: "2001:db8:64::/96" }] } }));
    const o = serveOne(e, mapRequest({ client: CLIENT }, [prefix64()]), 100, { source: CLIENT });
    expect(options(o.response, W.MAP_PAYLOAD_SIZE)).toEqual([[W.OPTION_PREFIX64, "000c" + "20010db80064000000000000"]]);
    e.reconfigure(engineConfig());
    const none = serveOne(e, mapRequest({ client: CLIENT, internalPort: 90 }, [prefix64()]), 100, { source: CLIENT });
    expect(options(none.response, W.MAP_PAYLOAD_SIZE)).toEqual([]);
  });

  it("with none configured the option is not supported: never in a response, the request served", () => {
    const e = engine([]);
    const o = serveOne(e, mapRequest({ client: CLIENT }, [prefix64()]), 100, { source: CLIENT });
    expect(o.result).toBe(W.RESULT_SUCCESS);
    expect(options(o.response, W.MAP_PAYLOAD_SIZE)).toEqual([]);
  });
});
