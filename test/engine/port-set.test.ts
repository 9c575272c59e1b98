// PORT_SET (RFC 7753): checklist items 149–152, renewal and deletion of a set as one unit,
// partial grants (policy, quota, internal ports already mapped), persistence of the members.
import { describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import type { PacketEngine } from "../../src/engine/packet-engine.js";
import type { Config } from "../../src/config/schema.js";
import { engineConfig, engineFrom, merge, type DeepPartial } from "../helpers/engine-config.js";
import { assigned, mapRequest, nonceOf, portSet, preferFailure, serveOne, type Option } from "../helpers/packets.js";

const CLIENT = "192.0.2.1";
const T0 = 100;
const WALL = 1_700_000_000;

function engine(over: DeepPartial<Config> = {}, enabled = true): PacketEngine {
  return engineFrom(engineConfig(merge<DeepPartial<Config>>({ pcp: { portSet: { enabled, maxSize: 32 } }, quotas: { mappingsPerSubscriber: 100 } }, over)), T0);
}

/** The PORT_SET option of a response: [size, first internal port, parity] or undefined. */
function replySet(response: Uint8Array): [number, number, number] | undefined {
  for (let at = W.PCP_HEADER_SIZE + W.MAP_PAYLOAD_SIZE; at < response.length; ) {
    const n = (response[at + 2] << 8) | response[at + 3];
    if (response[at] === W.OPTION_PORT_SET) {
      const v = new DataView(response.buffer, response.byteOffset + at + 4);
      return [v.getUint16(0), v.getUint16(2), v.getUint8(4)];
    }
    at += 4 + ((n + 3) & ~3);
  }
  return undefined;
}

const map = (e: PacketEngine, port: number, options: Option[] = [], lifetime = 3600, protocol = W.PROTO_UDP) =>
  serveOne(e, mapRequest({ client: CLIENT, protocol, internalPort: port, lifetime, nonce: nonceOf(port) }, options), T0, { source: CLIENT });
const external = (e: PacketEngine, port: number) => e.lookup(CLIENT, W.PROTO_UDP, port)?.externalPort;

describe("§3.13 PORT_SET (RFC 7753)", () => {
  it("item 149: Size 0, two PORT_SETs, PORT_SET with PREFER_FAILURE → MALFORMED_OPTION", () => {
    const e = engine();
    expect(map(e, 5000, [portSet(0, 5000)]).result).toBe(W.RESULT_MALFORMED_OPTION);
    expect(map(e, 5000, [portSet(4, 5000), portSet(4, 5000)]).result).toBe(W.RESULT_MALFORMED_OPTION);
    expect(map(e, 5000, [portSet(4, 5000), preferFailure()]).result).toBe(W.RESULT_MALFORMED_OPTION);
  });

  it("item 150: Size 100 under a 32-port policy → 32 consecutive ports, Size 32 in the response, nothing outside [I, I+Size)", () => {
    const e = engine();
    const o = map(e, 5000, [portSet(100, 5000)]);
    expect(o.result).toBe(W.RESULT_SUCCESS);
    expect(replySet(o.response)).toEqual([32, 5000, 0]);
    const first = assigned(o).port;
    for (let k = 0; k < 32; k++) expect(external(e, 5000 + k)).toBe(first + k);
    expect(external(e, 5032)).toBeUndefined();
    expect(e.engineStats().mappings).toBe(32n);
  });

  it("item 151: Size 1 → a single-port MAP, no PORT_SET in the response", () => {
    const e = engine();
    const o = map(e, 6000, [portSet(1, 6000)]);
    expect(o.result).toBe(W.RESULT_SUCCESS);
    expect(replySet(o.response)).toBeUndefined();
    expect(e.engineStats().mappings).toBe(1n);
  });

  it("item 152: P = 1 with an even first internal port → an even first external port (and the run keeps parity)", () => {
    for (let i = 0; i < 20; i++) {
      const e = engineFrom(engineConfig({ pcp: { portSet: { enabled: true, maxSize: 8 } }, quotas: { mappingsPerSubscriber: 100 } }), T0, {
        seed: BigInt(i + 1),
      });
      const even = map(e, 7000, [portSet(4, 7000, true)]);
      expect(replySet(even.response)).toEqual([4, 7000, 1]);
      expect(assigned(even).port % 2).toBe(0);
      const odd = map(e, 7101, [portSet(4, 7101, true)]);
      expect(assigned(odd).port % 2).toBe(1);
    }
  });

  it("renewed and deleted as one unit; a renewal with another nonce is refused", () => {
    const e = engine();
    const o = map(e, 5000, [portSet(8, 5000)]);
    const first = assigned(o).port;
    const again = map(e, 5000, [portSet(8, 5000)], 7200);
    expect(again.result).toBe(W.RESULT_SUCCESS);
    expect(assigned(again).port).toBe(first);
    expect(replySet(again.response)).toEqual([8, 5000, 0]);
    expect(e.drainEvents().filter((ev) => ev.kind === "refresh")).toHaveLength(8);
    const thief = serveOne(e, mapRequest({ client: CLIENT, protocol: W.PROTO_UDP, internalPort: 5000, nonce: nonceOf(1) }, [portSet(8, 5000)]), T0, {
      source: CLIENT,
    });
    expect(thief.result).toBe(W.RESULT_NOT_AUTHORIZED);
    const gone = map(e, 5000, [portSet(8, 5000)], 0);
    expect(gone.result).toBe(W.RESULT_SUCCESS);
    expect(e.engineStats()).toMatchObject({ mappings: 0n, held: 8n });
  });

  it("partial grants: stops before an internal port already mapped; within the subscriber's quota; at least one port", () => {
    const e = engine({ quotas: { mappingsPerSubscriber: 10 } });
    map(e, 5005); // a single mapping in the way
    const o = map(e, 5000, [portSet(20, 5000)]);
    expect(replySet(o.response)).toEqual([5, 5000, 0]); // 5000..5004
    const q = map(e, 6000, [portSet(20, 6000)]);
    expect(replySet(q.response)).toEqual([4, 6000, 0]); // 10 - 6 already mapped
    expect(map(e, 7000, [portSet(20, 7000)]).result).toBe(W.RESULT_USER_EX_QUOTA);
  });

  it("disabled: a PORT_SET request is served as a single-port MAP", () => {
    const e = engine({}, false);
    const o = map(e, 5000, [portSet(8, 5000)]);
    expect(o.result).toBe(W.RESULT_SUCCESS);
    expect(replySet(o.response)).toBeUndefined();
    expect(e.engineStats().mappings).toBe(1n);
  });

  it("a set's members are ordinary mappings for persistence: restored with the same consecutive ports", () => {
    const a = engine();
    const first = assigned(map(a, 5000, [portSet(4, 5000)])).port;
    const records = a.persistPending(WALL);
    a.drainEvents();
    const b = engine();
    for (const r of records) b.restore(r, WALL, T0);
    expect([0, 1, 2, 3].map((k) => external(b, 5000 + k))).toEqual([first, first + 1, first + 2, first + 3]);
    const renewed = map(b, 5000, [portSet(4, 5000)]);
    expect(replySet(renewed.response)).toEqual([4, 5000, 0]);
  });
});
