// DESCRIPTION (RFC 7220): checklist items 144–147, the stored text in listings and lookups,
// its journey through persistence, and the option disabled by configuration.
import { describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import { decodeRecords, type PacketEngine } from "../../src/engine/packet-engine.js";
import { engineConfig, engineFrom } from "../helpers/engine-config.js";
import { description, mapRequest, nonceOf, peerRequest, serveOne } from "../helpers/packets.js";

const CLIENT = "192.0.2.1";
const T0 = 100;
const WALL = 1_700_000_000;

function engine(o: { enabled?: boolean; capacity?: number } = {}): PacketEngine {
  return engineFrom(engineConfig({ pcp: { description: o.enabled !== false }, capacity: { descriptions: o.capacity ?? 100 } }), T0);
}

/** The DESCRIPTION options of a response, as raw text bytes. */
function descriptions(response: Uint8Array, body: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let at = W.PCP_HEADER_SIZE + body; at < response.length; ) {
    const n = (response[at + 2] << 8) | response[at + 3];
    if (response[at] === W.OPTION_DESCRIPTION) out.push(response.slice(at + 4, at + 4 + n));
    at += 4 + ((n + 3) & ~3);
  }
  return out;
}
const text = (b: Uint8Array) => new TextDecoder().decode(b);
const map = (e: PacketEngine, port: number, opts: ReturnType<typeof description>[] = [], lifetime = 3600) =>
  serveOne(e, mapRequest({ client: CLIENT, internalPort: port, lifetime, nonce: nonceOf(port) }, opts), T0, { source: CLIENT });
const stored = (e: PacketEngine, port: number) => {
  const r = e.lookupRecords(CLIENT, W.PROTO_TCP, port, 4, T0);
  return r.descriptions?.[0];
};

describe("§3.13 DESCRIPTION (RFC 7220)", () => {
  it("item 144: echoed as stored; at least 128 bytes kept; longer text echoed cut at a character boundary", () => {
    const e = engine();
    const camera = map(e, 80, [description("camera")]);
    expect(camera.result).toBe(W.RESULT_SUCCESS);
    expect(descriptions(camera.response, W.MAP_PAYLOAD_SIZE).map(text)).toEqual(["camera"]);
    expect(stored(e, 80)).toBe("camera");

    const exact = "x".repeat(128);
    expect(descriptions(map(e, 81, [description(exact)]).response, W.MAP_PAYLOAD_SIZE).map(text)).toEqual([exact]);
    // 126 ASCII bytes, "é" (2 bytes: ends at 128), then "€…": cut right after "é".
    const long = "a".repeat(126) + "é€" + "z".repeat(300);
    const echoed = descriptions(map(e, 82, [description(long)]).response, W.MAP_PAYLOAD_SIZE)[0];
    expect(echoed.length).toBe(128);
    expect(text(echoed)).toBe("a".repeat(126) + "é");
    const cut = "a".repeat(127) + "€"; // 130 bytes: "€" straddles the limit and is left out whole
    expect(text(descriptions(map(e, 83, [description(cut)]).response, W.MAP_PAYLOAD_SIZE)[0])).toBe("a".repeat(127));
  });

  it("item 145: no DESCRIPTION in the request → none in the response (a stored one stays)", () => {
    const e = engine();
    map(e, 80, [description("printer")]);
    const refresh = map(e, 80);
    expect(descriptions(refresh.response, W.MAP_PAYLOAD_SIZE)).toEqual([]);
    expect(stored(e, 80)).toBe("printer");
    expect(descriptions(map(e, 90).response, W.MAP_PAYLOAD_SIZE)).toEqual([]);
  });

  it("item 146: invalid UTF-8 → the option is not echoed, the request is served, nothing is stored", () => {
    const e = engine();
    const bad = map(e, 80, [description([0x63, 0xc3, 0x28])]);
    expect(bad.result).toBe(W.RESULT_SUCCESS);
    expect(descriptions(bad.response, W.MAP_PAYLOAD_SIZE)).toEqual([]);
    expect(stored(e, 80)).toBeUndefined();
  });

  it("item 147: an empty DESCRIPTION on renewal clears the text and is echoed empty; a new one replaces it", () => {
    const e = engine();
    map(e, 80, [description("nas")]);
    const replaced = map(e, 80, [description("backup nas")]);
    expect(descriptions(replaced.response, W.MAP_PAYLOAD_SIZE).map(text)).toEqual(["backup nas"]);
    const cleared = map(e, 80, [description("")]);
    expect(descriptions(cleared.response, W.MAP_PAYLOAD_SIZE).map((d) => d.length)).toEqual([0]);
    expect(stored(e, 80)).toBeUndefined();
  });

  it("PEER carries it too; the text ends with the mapping; with no room it is neither stored nor echoed", () => {
    const e = engine({ capacity: 1 });
    const peer = serveOne(e, peerRequest({ client: CLIENT, internalPort: 5000, nonce: nonceOf(5) }, [description("voip")]), T0, { source: CLIENT });
    expect(descriptions(peer.response, W.PEER_PAYLOAD_SIZE).map(text)).toEqual(["voip"]);
    const full = map(e, 80, [description("second")]);
    expect(full.result).toBe(W.RESULT_SUCCESS);
    expect(descriptions(full.response, W.MAP_PAYLOAD_SIZE)).toEqual([]);
    map(e, 80, [], 0); // delete port 80 (no text): nothing changes
    const m = e.lookup(CLIENT, W.PROTO_UDP, 5000)!;
    expect(e.description(m.mapping)).toBe("voip");
    e.expire(T0 + 5000); // the PEER mapping runs out (into hold-down: the text goes)
    expect(e.description(m.mapping)).toBeUndefined();
    const later = serveOne(e, mapRequest({ client: CLIENT, internalPort: 81, nonce: nonceOf(81) }, [description("now there is room")]), T0 + 5000, {
      source: CLIENT,
    });
    expect(descriptions(later.response, W.MAP_PAYLOAD_SIZE).map(text)).toEqual(["now there is room"]);
  });

  it("disabled by configuration: behaves as an unknown optional option (ignored, never echoed)", () => {
    const e = engine({ enabled: false });
    const o = map(e, 80, [description("camera")]);
    expect(o.result).toBe(W.RESULT_SUCCESS);
    expect(descriptions(o.response, W.MAP_PAYLOAD_SIZE)).toEqual([]);
    expect(stored(e, 80)).toBeUndefined();
  });

  it("travels through persistence (journal and snapshot) and shows in listings", () => {
    const a = engine();
    map(a, 80, [description("caméra d'entrée")]);
    const journal = a.persistPending(WALL);
    a.drainEvents();
    const snapshot = a.persistTable(1, 100, WALL).bytes;
    for (const records of [Uint8Array.from(journal.flatMap((r) => [...r])), snapshot]) {
      const b = engine();
      expect(b.restore(records, WALL, T0)).toBe(records.length);
      expect(stored(b, 80)).toBe("caméra d'entrée");
      const page = b.listRecords(1, 10, 100, {}, T0);
      expect(decodeRecords(page.records).map((m) => m.internalPort)).toEqual([80]);
      expect(page.records.descriptions).toEqual({ 0: "caméra d'entrée" });
    }
  });
});
