// Reflection: the largest reply/request size ratio of each kind of reply, measured through
// codec and engine over every request length, must match the table in docs/codec.md
// ("Reply size ratio"); and every kind of reply is withheld from a source the rate limiter
// marked (issue #12 item 8; RFC 6887 §17.2, RFC 6886 §3.5).
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import type { PacketEngine, SlotOutcome } from "../../src/engine/packet-engine.js";
import { enabledOptions } from "../../src/config/region.js";
import { engineConfig, engineFrom } from "../helpers/engine-config.js";
import type { encodePrefix64Options } from "../../src/net/prefix64.js";
import { announceRequest, description, mapRequest, natPmpMap, peerRequest, prefix64, serveOne, type Send } from "../helpers/packets.js";

const T0 = 100;
const ONE_PREFIX = [{ prefix: "64:ff9b::/96" }];
// The largest PREFIX64 answer a configuration can hold: one Prefix64 with 82 IPv4 prefixes (512 bytes).
const FULL_PREFIXES = [{ prefix: "64:ff9b::/96", ipv4: Array.from({ length: 82 }, (_, i) => `10.${i}.0.0/16`) }];

function engine(prefixes: Parameters<typeof encodePrefix64Options>[0], overloadReply = false): PacketEngine {
  const c = engineConfig({
    pcp: { description: true, prefix64: prefixes, overload: overloadReply ? "no-resources" : "drop" },
    quotas: { mappingsPerSubscriber: 10_000 },
    pool: { addresses: ["203.0.113.1", "203.0.113.2"] },
  });
  // PREFIX64 processed even with no prefix configured (the cases without prefixes).
  return engineFrom(c, T0, { options: enabledOptions(c) | W.OPTBIT_PREFIX64 });
}

/** `p` cut or zero-extended to `n` bytes. */
const sized = (p: Uint8Array, n: number) => {
  const out = new Uint8Array(n);
  out.set(p.subarray(0, n));
  return out;
};

interface Kind {
  /** The row's first cell in docs/codec.md. */
  name: string;
  prefixes?: Parameters<typeof encodePrefix64Options>[0];
  overloadReply?: boolean;
  send?: Send;
  /** Candidate requests (each length a kind can have, or the few forms it takes). */
  requests: () => Iterable<Uint8Array>;
  /** Whether an outcome is a reply of this kind. */
  is: (o: SlotOutcome) => boolean;
}

const lengths = function* (from: number, build: (n: number) => Uint8Array) {
  for (let n = from; n <= W.SLOT_DATA_CAP; n++) yield build(n);
};
const pcpError = (o: SlotOutcome) => o.verdict === "reply" && o.response[0] === W.PCP_VERSION && o.result !== W.RESULT_SUCCESS;
const success = (opcode: number) => (o: SlotOutcome) => o.verdict === "reply" && o.result === W.RESULT_SUCCESS && o.response[1] === (opcode | 0x80);
let port = 1000;
const fresh = () => ({ internalPort: port++ });

const KINDS: Kind[] = [
  { name: "UNSUPP_VERSION (version ≠ 2)", requests: () => lengths(2, (n) => sized(Uint8Array.of(1), n)), is: (o) => o.result === W.RESULT_UNSUPP_VERSION },
  { name: "NAT-PMP external address", requests: () => lengths(2, (n) => new Uint8Array(n)), is: (o) => o.verdict === "reply" && o.response[1] === 0x80 },
  {
    name: "NAT-PMP mapping",
    requests: () => lengths(12, (n) => sized(natPmpMap(W.NATPMP_OP_MAP_TCP, port++, 0, 3600), n)),
    is: (o) => o.verdict === "reply" && o.response[1] === 0x82,
  },
  {
    name: "NAT-PMP unsupported opcode",
    requests: () => lengths(2, (n) => sized(Uint8Array.of(0, 5), n)),
    is: (o) => o.verdict === "reply" && o.response[1] === 0x85,
  },
  { name: "PCP error reply (codec or engine)", requests: () => lengths(2, (n) => sized(mapRequest(fresh()), n)), is: pcpError },
  {
    name: "NO_RESOURCES to a source over its rate (pcp.overload: no-resources)",
    overloadReply: true,
    send: { overloaded: true },
    requests: () => lengths(2, (n) => sized(mapRequest(fresh()), n)),
    is: (o) => o.result === W.RESULT_NO_RESOURCES,
  },
  { name: "ANNOUNCE", requests: () => [announceRequest()], is: success(W.OP_ANNOUNCE) },
  {
    name: "ANNOUNCE with PREFIX64, one /96 configured",
    prefixes: ONE_PREFIX,
    requests: () => [announceRequest({}, [prefix64(12)])],
    is: success(W.OP_ANNOUNCE),
  },
  {
    name: "ANNOUNCE with PREFIX64, 512 bytes configured",
    prefixes: FULL_PREFIXES,
    requests: () => [announceRequest({}, [prefix64(12)])],
    is: success(W.OP_ANNOUNCE),
  },
  {
    name: "MAP, with or without DESCRIPTION",
    requests: () => [mapRequest(fresh()), mapRequest(fresh(), [description("")]), mapRequest(fresh(), [description("x".repeat(300))])],
    is: success(W.OP_MAP),
  },
  { name: "MAP with PREFIX64, 512 bytes configured", prefixes: FULL_PREFIXES, requests: () => [mapRequest(fresh(), [prefix64(12)])], is: success(W.OP_MAP) },
  { name: "PEER, with or without DESCRIPTION", requests: () => [peerRequest(fresh()), peerRequest(fresh(), [description("")])], is: success(W.OP_PEER) },
];

interface Worst {
  request: number;
  reply: number;
}

function worst(k: Kind, overloaded = false): { worst: Worst | undefined; replies: SlotOutcome[] } {
  const e = engine(k.prefixes ?? [], k.overloadReply);
  let w: Worst | undefined;
  const replies: SlotOutcome[] = [];
  for (const request of k.requests()) {
    const o = serveOne(e, request, T0, { ...k.send, ...(overloaded ? { overloaded: true } : {}) });
    if (o.verdict === "reply") replies.push(o);
    if (!k.is(o)) continue;
    if (!w || o.response.length * w.request > w.reply * request.length) w = { request: request.length, reply: o.response.length };
  }
  return { worst: w, replies };
}

/** The ratio table of docs/codec.md: name → [request, reply, ratio]. */
function documented(): Map<string, [number, number, string]> {
  const doc = readFileSync(new URL("../../docs/codec.md", import.meta.url), "utf8");
  const section = doc
    .split("### Reply size ratio")[1]
    ?.split("\n\n")
    .find((p) => p.startsWith("| Reply"));
  const rows = new Map<string, [number, number, string]>();
  for (const line of (section ?? "").split("\n").slice(2)) {
    const cells = line.split("|").map((c) => c.trim());
    rows.set(cells[1], [Number(cells[2]), Number(cells[3]), cells[4]]);
  }
  return rows;
}

describe("reply size ratio per kind of reply (docs/codec.md)", () => {
  const table = documented();

  it("the table lists exactly the measured kinds", () => {
    expect([...table.keys()]).toEqual(KINDS.map((k) => k.name));
  });

  for (const k of KINDS) {
    it(`${k.name}: worst request/reply as documented`, () => {
      const { worst: w } = worst(k);
      expect(w, "no request produced this kind of reply").toBeDefined();
      expect(table.get(k.name)).toEqual([w!.request, w!.reply, (w!.reply / w!.request).toFixed(2)]);
    });
  }

  it("every kind is withheld from a source over its rate (dropped, or NO_RESOURCES if so configured)", () => {
    for (const k of KINDS) {
      if (k.send?.overloaded) continue; // the row that is the answer to overload
      const plain = worst({ ...k, overloadReply: false }, true);
      expect(
        plain.replies.map((o) => o.result),
        k.name,
      ).toEqual([]);
      for (const o of worst({ ...k, overloadReply: true }, true).replies) {
        expect(o.result, k.name).toBe(W.RESULT_NO_RESOURCES);
      }
    }
  });
});
