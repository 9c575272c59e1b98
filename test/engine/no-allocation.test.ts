// The packet path never allocates: the stub runtime's bump pointer and the size of linear
// memory are unchanged after a million datagrams (codec and engine) through both builds.
import { describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import { engineConfig, engineFrom } from "../helpers/engine-config.js";
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
      const engine = engineFrom(engineConfig({ capacity: { mappings: 5000 }, lifetimes: { holdDown: 5 } }), 0, {}, build);
      const probe = engine.exports.heapProbe();
      const pages = engine.exports.memory.buffer.byteLength;
      const batch = engine.slotCount;
      let sent = 0;
      let now = 0;
      while (sent < 1_000_000) {
        for (let i = 0; i < batch; i++) {
          // vary the internal port so mappings are created, refreshed, deleted and expire
          const p = mix[(sent + i) % mix.length].slice();
          if (p.length >= 60 && p[0] === 2) p[41] = (sent / batch + i) & 0xff;
          if (p.length >= 60 && p[0] === 2 && (sent / batch) % 7 === 3) p.fill(0, 4, 8);
          engine.load(i, { payload: p, source: CLIENT16, sourcePort: 1, ingress: W.INGRESS_SUBSCRIBER });
        }
        engine.serve(batch, sent, now);
        engine.discardEvents();
        now += 1;
        engine.expire(now);
        sent += batch;
      }
      expect(engine.stats().packets).toBe(BigInt(sent));
      expect(engine.exports.heapProbe()).toBe(probe);
      expect(engine.exports.memory.buffer.byteLength).toBe(pages);
    });
  }
});
