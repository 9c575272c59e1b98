// The prefetch stages (serveRange: index line, candidate mapping, its subscriber, a
// THIRD_PARTY mapping's requester lines) only load
// memory: with them forced on, every reply, event and counter is the same as with them off,
// for batches that mix creates, refreshes, deletes, misses, PEERs, NAT-PMP, THIRD_PARTY,
// realms, FILTERs and nonce mismatches, several datagrams of a batch naming the same
// endpoint, across expiry and hold-down.
import { describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import type { PacketEngine } from "../../src/engine/packet-engine.js";
import { engineConfig, engineFrom } from "../helpers/engine-config.js";
import { filter, mapRequest, natPmpMap, nonceOf, peerRequest, thirdParty, thirdPartyId } from "../helpers/packets.js";
import { toAddress16 } from "../../src/net/address.js";

function request(rnd: () => number): { payload: Uint8Array; source: Uint8Array; thirdParty: boolean; proxyPort: number } {
  const client = `10.1.${rnd() % 4}.${1 + (rnd() % 6)}`;
  const h = {
    client,
    internalPort: 2000 + (rnd() % 12),
    lifetime: [0, 120, 3600, 7200][rnd() % 4],
    nonce: nonceOf(rnd() % 3),
    protocol: rnd() % 5 ? W.PROTO_TCP : W.PROTO_UDP,
  };
  const kind = rnd() % 10;
  const payload =
    kind < 5
      ? mapRequest(h, rnd() % 4 ? [] : [filter(112 + (rnd() % 17), "198.51.100.0", rnd() % 3)])
      : kind < 7
        ? peerRequest({ ...h, remotePort: 443 + (rnd() % 3) })
        : kind < 8
          ? mapRequest({ ...h, client: "10.9.0.1" }, [thirdParty(client), ...(rnd() % 2 ? [thirdPartyId([1, 2, rnd() % 2])] : [])])
          : natPmpMap(rnd() % 2 ? W.NATPMP_OP_MAP_TCP : W.NATPMP_OP_MAP_UDP, h.internalPort, 0, h.lifetime);
  return { payload, source: toAddress16(kind === 7 ? "10.9.0.1" : client), thirdParty: kind === 7, proxyPort: 40000 + (rnd() % 3) };
}

function engine(mode: 0 | 1): PacketEngine {
  const c = engineConfig({
    capacity: { mappings: 400, subscribers: 64, peers: 400, filters: 400, realms: 8 },
    lifetimes: { holdDown: 30 },
    pcp: { thirdPartyId: { enabled: true, ids: "any" } },
    pool: { addresses: ["203.0.113.1", "203.0.113.2"], blockSize: 64, maxBlocksPerSubscriber: 4 },
  });
  const e = engineFrom(c, 1, { seed: 77n }, "release");
  e.setPrefetch(mode);
  return e;
}

describe("prefetch stages", () => {
  it("change no reply, event or counter", () => {
    const on = engine(1);
    const off = engine(0);
    let seed = 12345;
    const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0), seed >>> 8);
    let now = 1;
    let replies = 0;
    let thirdPartyServed = 0;
    for (let batch = 0; batch < 150; batch++) {
      const count = 1 + (rnd() % on.slotCount);
      const reqs = Array.from({ length: count }, () => request(rnd));
      for (const e of [on, off]) {
        for (const [i, r] of reqs.entries()) {
          // 10.9.0.1 is a trusted THIRD_PARTY proxy: its renewals go through the requester table.
          const ingress = r.thirdParty ? W.INGRESS_SUBSCRIBER | W.INGRESS_THIRD_PARTY : W.INGRESS_SUBSCRIBER;
          e.load(i, { payload: r.payload, source: r.source, sourcePort: r.thirdParty ? r.proxyPort : 5351 + i, ingress });
        }
      }
      expect(on.serve(count, 9, now)).toBe(off.serve(count, 9, now));
      for (let i = 0; i < count; i++) {
        const a = on.reply(i);
        expect(a).toEqual(off.reply(i));
        if (a) replies++;
        if (a && reqs[i].thirdParty && a[3] === W.RESULT_SUCCESS) thirdPartyServed++;
      }
      expect(on.drainEvents()).toEqual(off.drainEvents());
      now += rnd() % 40;
      on.expire(now);
      off.expire(now);
      expect(on.drainEvents()).toEqual(off.drainEvents());
    }
    expect(on.engineStats()).toEqual(off.engineStats());
    expect(on.stats()).toEqual(off.stats());
    // The mix really exercised the engine: mappings, PEERs and refreshes on both.
    const s = on.engineStats();
    expect(replies).toBeGreaterThan(5_000);
    expect(s.created).toBeGreaterThan(100n);
    expect(s.refreshed).toBeGreaterThan(100n);
    expect(s.deleted).toBeGreaterThan(10n);
    expect(thirdPartyServed).toBeGreaterThan(100);
  });
});
