// The packet path never allocates: the stub runtime's bump pointer and the size of linear
// memory are unchanged after a million datagrams through both builds.
import { describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import { PacketEngine } from "../../src/engine/packet-engine.js";
import { CLIENT16, announceRequest, filter, mapRequest, natPmpMap, option, peerRequest } from "../helpers/packets.js";

const mix = [
  mapRequest(),
  mapRequest({}, [filter(120, "198.51.100.0"), option(200, [1, 2, 3])]),
  peerRequest(),
  announceRequest(),
  mapRequest({ client: "192.0.2.200" }),
  mapRequest({}, [option(50)]),
  Uint8Array.of(0, 0),
  natPmpMap(W.NATPMP_OP_MAP_UDP, 1000, 0, 3600),
  Uint8Array.of(0, 5),
  Uint8Array.of(1, 0, 0, 0),
  new Uint8Array(1104).fill(2),
  announceRequest().slice(0, 9),
];

describe("zero allocation on the packet path", () => {
  for (const build of ["debug", "release"] as const) {
    it(`${build}: heap top and memory size unchanged after 1,000,000 datagrams`, () => {
      const engine = new PacketEngine(build);
      const probe = engine.exports.heapProbe();
      const pages = engine.exports.memory.buffer.byteLength;
      const batch = engine.slotCount;
      let sent = 0;
      while (sent < 1_000_000) {
        for (let i = 0; i < batch; i++) {
          engine.load(i, { payload: mix[(sent + i) % mix.length], source: CLIENT16, sourcePort: 1, ingress: W.INGRESS_SUBSCRIBER });
        }
        engine.processBatch(batch, sent);
        for (let i = 0; i < batch; i++) {
          const o = engine.outcome(i);
          if (o.verdict !== "parsed") continue;
          const at = engine.slotAddress(i);
          if (o.version === 0 && o.opcode === 0) engine.exports.finishNatPmpAddress(at, 0, 1);
          else if (o.version === 0) engine.exports.finishNatPmpMap(at, 0, 2000, 3600);
          else if (i % 2) engine.exports.finishSuccess(at, 3600, W.OPTBIT_ALL);
          else engine.exports.finishError(at, W.RESULT_NO_RESOURCES, 30);
        }
        sent += batch;
      }
      expect(engine.stats().packets).toBe(BigInt(sent));
      expect(engine.exports.heapProbe()).toBe(probe);
      expect(engine.exports.memory.buffer.byteLength).toBe(pages);
    });
  }
});
