// Renumbering: an external address joins or leaves the running pool. Mappings on a
// retired address move to the remaining ones and their clients get Mapping Update
// messages (checklist 120–123, RFC 6887 §14.2).
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import * as W from "../../src/wire.generated.js";
import type { PacketEngine, Unsolicited } from "../../src/engine/packet-engine.js";
import { engineConfig, engineFrom } from "../helpers/engine-config.js";
import { formatAddress16 } from "../../src/net/address.js";
import { assigned, filter, mapRequest, nonceOf, peerRequest, preferFailure, serveOne, thirdParty, u16, u32 } from "../helpers/packets.js";

const A = "203.0.113.1";
const B = "203.0.113.2";
const T0 = 1000;
const EPOCH = 77;

function engineOn(addresses: string[], holdDown = 120): PacketEngine {
  return engineFrom(engineConfig({ lifetimes: { holdDown }, pool: { addresses } }), T0, { seed: 3n });
}

const TP = W.INGRESS_SUBSCRIBER | W.INGRESS_THIRD_PARTY;
const externalOf = (m: Unsolicited) => `${formatAddress16(m.payload.slice(W.MP_EXTERNAL_ADDR, W.MP_EXTERNAL_ADDR + 16))}:${u16(m.payload, W.MP_EXTERNAL_PORT)}`;

describe("pool addresses added and retired while serving", () => {
  it("an address added at run time is used by new subscribers; a duplicate is refused", () => {
    const e = engineOn([A]);
    expect(e.addPoolAddress(B)).toBe(true);
    expect(e.addPoolAddress(B)).toBe(false);
    const used = new Set<string>();
    for (let i = 1; i <= 20; i++) used.add(assigned(serveOne(e, mapRequest({ client: `192.0.2.${i}` }), T0, { source: `192.0.2.${i}` })).address);
    expect(used).toEqual(new Set([A, B]));
  });

  it("items 120–123: retiring an address moves its mappings and builds the Mapping Update messages", () => {
    const e = engineOn([A]);
    // Client 1: MAP with two FILTERs and a PEER; client 2: PREFER_FAILURE; client 3 via a THIRD_PARTY server.
    const c1 = "192.0.2.1";
    const map1 = serveOne(
      e,
      mapRequest({ client: c1, internalPort: 8080, lifetime: 3600, nonce: nonceOf(1) }, [filter(128, "198.51.100.9", 443), filter(120, "198.51.100.0", 0)]),
      T0,
      { source: c1, sourcePort: 41000 },
    );
    const peer1 = serveOne(
      e,
      peerRequest({ client: c1, internalPort: 5000, lifetime: 600, nonce: nonceOf(2), remotePort: 3478, remoteAddress: "198.51.100.20" }),
      T0,
      { source: c1, sourcePort: 41001 },
    );
    const c2 = "192.0.2.2";
    const pf = serveOne(e, mapRequest({ client: c2, internalPort: 22, nonce: nonceOf(3) }), T0, { source: c2 });
    const pfAgain = serveOne(
      e,
      mapRequest({ client: c2, internalPort: 22, nonce: nonceOf(3), externalAddress: A, externalPort: assigned(pf).port }, [preferFailure()]),
      T0,
      { source: c2 },
    );
    expect(pfAgain.result).toBe(W.RESULT_SUCCESS);
    const tp = serveOne(e, mapRequest({ client: "192.0.2.200", internalPort: 80, nonce: nonceOf(4) }, [thirdParty("192.0.2.3")]), T0, {
      source: "192.0.2.200",
      sourcePort: 42000,
      ingress: TP,
    });
    expect([map1.result, peer1.result, tp.result]).toEqual([0, 0, 0]);
    expect(e.addStatic("192.0.2.4", W.PROTO_TCP, 443, A, 30000)).toBe(W.RESULT_SUCCESS);
    expect(e.addPoolAddress(B)).toBe(true);
    e.drainEvents();

    expect(e.retirePoolAddress(A, T0 + 100)).toBe(4); // the static mapping ends at once
    expect(e.lookup("192.0.2.4", W.PROTO_TCP, 443)).toBeUndefined();
    const { updates, done } = e.rehome(T0 + 100, EPOCH, 100);
    expect(done).toBe(true);
    const messages = updates.flatMap((u) => u.messages);
    // 1 MAP + 1 PEER to client 1, CANNOT_PROVIDE_EXTERNAL to client 2, a MAP to the THIRD_PARTY requester.
    expect(messages.map((m) => [m.address, m.payload[1], m.payload[3]])).toEqual(
      expect.arrayContaining([
        [c1, W.R_BIT | W.OP_MAP, W.RESULT_SUCCESS],
        [c1, W.R_BIT | W.OP_PEER, W.RESULT_SUCCESS],
        [c2, W.R_BIT | W.OP_MAP, W.RESULT_CANNOT_PROVIDE_EXTERNAL],
        ["192.0.2.200", W.R_BIT | W.OP_MAP, W.RESULT_SUCCESS],
      ]),
    );
    expect(messages).toHaveLength(4);

    const map = messages.find((m) => m.payload[1] === (W.R_BIT | W.OP_MAP) && m.address === c1)!;
    const moved = e.lookup(c1, W.PROTO_TCP, 8080)!;
    expect(moved.externalAddress).toBe(B);
    expect(externalOf(map)).toBe(`${B}:${moved.externalPort}`);
    expect(map.port).toBe(41000); // the port of the client's last request for this mapping
    expect(u32(map.payload, W.HDR_EPOCH)).toBe(EPOCH);
    expect(u32(map.payload, W.HDR_LIFETIME)).toBe(3600 - 100); // what is left
    expect(Array.from(map.payload.slice(W.MP_NONCE, W.MP_NONCE + 12))).toEqual(nonceOf(1));
    expect([map.payload[W.MP_PROTOCOL], u16(map.payload, W.MP_INTERNAL_PORT)]).toEqual([W.PROTO_TCP, 8080]);
    expect(map.payload.slice(12, 24).every((b) => b === 0)).toBe(true);
    // item 121: the FILTERs go with it, as FILTER options; item 123: nothing else.
    expect(map.payload.length).toBe(W.MAP_MIN_SIZE + 2 * 24);
    const options = [map.payload.slice(60, 84), map.payload.slice(84, 108)];
    expect(options.map((o) => [o[0], u16(o, 2), o[5], u16(o, 6), formatAddress16(o.slice(8, 24))])).toEqual(
      expect.arrayContaining([
        [W.OPTION_FILTER, 20, 128, 443, "198.51.100.9"],
        [W.OPTION_FILTER, 20, 120, 0, "198.51.100.0"],
      ]),
    );
    expect(e.filters(moved.mapping)).toHaveLength(2);

    const peer = messages.find((m) => m.payload[1] === (W.R_BIT | W.OP_PEER))!;
    expect(peer.payload.length).toBe(W.PEER_MIN_SIZE);
    expect(peer.port).toBe(41001);
    expect(Array.from(peer.payload.slice(W.MP_NONCE, W.MP_NONCE + 12))).toEqual(nonceOf(2));
    expect(u16(peer.payload, W.PEER_REMOTE_PORT)).toBe(3478);
    expect(formatAddress16(peer.payload.slice(W.PEER_REMOTE_ADDR, W.PEER_REMOTE_ADDR + 16))).toBe("198.51.100.20");
    expect(externalOf(peer)).toMatch(new RegExp(`^${B.replace(/\./g, "\\.")}:`));

    // item 122: the PREFER_FAILURE mapping could not keep its address: told, and gone.
    const refused = messages.find((m) => m.address === c2)!;
    expect(externalOf(refused)).toBe(`${A}:${assigned(pf).port}`);
    expect(e.lookup(c2, W.PROTO_TCP, 22)).toBeUndefined();
    // Issue #12 item 13: the THIRD_PARTY mapping's update goes to its requester (address and port of
    // its request), with the THIRD_PARTY option naming the internal address [6887 §13.1, §14.2].
    const third = e.lookup("192.0.2.3", W.PROTO_TCP, 80)!;
    expect(third.externalAddress).toBe(B);
    const toRequester = messages.find((m) => m.address === "192.0.2.200")!;
    expect(toRequester.port).toBe(42000);
    expect(externalOf(toRequester)).toBe(`${B}:${third.externalPort}`);
    expect(Array.from(toRequester.payload.slice(W.MP_NONCE, W.MP_NONCE + 12))).toEqual(nonceOf(4));
    expect(toRequester.payload.length).toBe(W.MAP_MIN_SIZE + 4 + 16);
    expect([toRequester.payload[60], u16(toRequester.payload, 62), formatAddress16(toRequester.payload.slice(64, 80))]).toEqual([
      W.OPTION_THIRD_PARTY,
      16,
      "192.0.2.3",
    ]);

    // The dataplane hears of every move.
    expect(
      e
        .drainEvents()
        .filter((ev) => ev.kind === "update")
        .map((ev) => ev.externalAddress),
    ).toEqual([B, B, B]);
    // The client's refresh finds the moved mapping where the update said it is.
    const refresh = serveOne(e, mapRequest({ client: c1, internalPort: 8080, lifetime: 3600, nonce: nonceOf(1) }), T0 + 200, { source: c1 });
    expect(`${assigned(refresh).address}:${assigned(refresh).port}`).toBe(externalOf(map));
    // Nothing new lands on the retired address, suggestion or not.
    const fresh = serveOne(e, mapRequest({ client: "192.0.2.9", externalAddress: A, externalPort: 2000 }), T0 + 200, { source: "192.0.2.9" });
    expect(assigned(fresh).address).toBe(B);
    expect(e.poolUsage()).toEqual([
      expect.objectContaining({ address: A, retired: true, freeBlocks: 0 }),
      expect.objectContaining({ address: B, retired: false }),
    ]);
  });

  it("holds on the retired address end; blocks are accounted; the address can come back", () => {
    const e = engineOn([A, B]);
    for (let i = 1; i <= 30; i++) serveOne(e, mapRequest({ client: `192.0.2.${i}`, nonce: nonceOf(i) }), T0, { source: `192.0.2.${i}` });
    const onA = Array.from({ length: 30 }, (_, i) => e.lookup(`192.0.2.${i + 1}`, W.PROTO_TCP, 8080)!).filter((m) => m.externalAddress === A);
    expect(onA.length).toBeGreaterThan(0);
    // One of them is deleted: its port goes into hold-down on A.
    const gone = onA[0];
    serveOne(e, mapRequest({ client: gone.internalAddress, nonce: nonceOf(Number(gone.internalAddress.split(".")[3])), lifetime: 0 }), T0, {
      source: gone.internalAddress,
    });
    expect(e.engineStats().held).toBe(1n);
    expect(e.retirePoolAddress(A, T0 + 1)).toBe(onA.length - 1);
    expect(e.engineStats().held).toBe(0n);
    const { updates } = e.rehome(T0 + 1, 1, 1000);
    expect(updates).toHaveLength(onA.length - 1);
    const stats = e.engineStats();
    expect(stats.mappings).toBe(29n);
    expect(stats.blocks).toBe(29n); // one block each, all on B now
    for (let i = 1; i <= 30; i++) {
      const m = e.lookup(`192.0.2.${i}`, W.PROTO_TCP, 8080);
      if (m) expect(m.externalAddress).toBe(B);
    }
    // Back in service: new subscribers may be paired with it again.
    expect(e.addPoolAddress(A)).toBe(true);
    expect(e.poolUsage()[0].retired).toBe(false);
    expect(e.poolUsage()[0].freeBlocks).toBeGreaterThan(0);
    const back = serveOne(e, mapRequest({ client: "192.0.2.99" }), T0 + 2, { source: "192.0.2.99" });
    expect(assigned(back).address).toBe(A); // the address with the most free blocks
  });

  it("a mapping with no room elsewhere ends (exhausted pool) rather than staying on a retired address", () => {
    // Three blocks of 512 ports per address above 64000.
    const e = engineFrom(engineConfig({ pool: { addresses: [A], portMin: 64000, blockSize: 512 } }), T0, { seed: 3n });
    for (let i = 1; i <= 3; i++) serveOne(e, mapRequest({ client: `192.0.2.${i}` }), T0, { source: `192.0.2.${i}` });
    expect(e.addPoolAddress(B)).toBe(true);
    for (let i = 4; i <= 5; i++) expect(assigned(serveOne(e, mapRequest({ client: `192.0.2.${i}` }), T0, { source: `192.0.2.${i}` })).address).toBe(B);
    e.drainEvents();
    expect(e.retirePoolAddress(A, T0)).toBe(3);
    const { updates } = e.rehome(T0, 1, 10);
    expect(updates.filter((u) => u.messages.length > 0)).toHaveLength(1); // one block left on B
    const events = e.drainEvents();
    expect(events.filter((ev) => ev.kind === "update")).toHaveLength(1);
    expect(events.filter((ev) => ev.kind === "delete")).toHaveLength(2);
    expect(e.engineStats()).toMatchObject({ mappings: 3n, held: 0n, blocks: 3n });
  });
});

describe("two addresses retired at once", () => {
  it("one rehome pass moves the mappings of both", () => {
    const C = "203.0.113.3";
    const e = engineOn([A, B]);
    for (let i = 1; i <= 20; i++) serveOne(e, mapRequest({ client: `192.0.2.${i}`, nonce: nonceOf(i) }), T0, { source: `192.0.2.${i}` });
    e.addPoolAddress(C);
    const moving = e.retirePoolAddress(A, T0) + e.retirePoolAddress(B, T0);
    expect(moving).toBe(20);
    const { updates, done } = e.rehome(T0, 1, 100);
    expect(done).toBe(true);
    expect(updates).toHaveLength(20);
    for (let i = 1; i <= 20; i++) expect(e.lookup(`192.0.2.${i}`, W.PROTO_TCP, 8080)!.externalAddress).toBe(C);
  });
});

describe("renumbering under random traffic (property)", () => {
  const POOL = ["198.18.0.1", "198.18.0.2", "198.18.0.3"];
  const SUBS = Array.from({ length: 12 }, (_, i) => `192.0.2.${i + 1}`);
  const op = fc.oneof(
    fc.record({
      kind: fc.constant("map" as const),
      sub: fc.nat({ max: 11 }),
      port: fc.integer({ min: 1, max: 4 }),
      lifetime: fc.constantFrom(0, 60, 3600),
      pf: fc.boolean(),
      suggest: fc.option(fc.nat({ max: 2 })),
    }),
    fc.record({ kind: fc.constant("peer" as const), sub: fc.nat({ max: 11 }), port: fc.integer({ min: 1, max: 4 }), lifetime: fc.constantFrom(0, 120, 600) }),
    fc.record({ kind: fc.constant("retire" as const), pool: fc.nat({ max: 2 }) }),
    fc.record({ kind: fc.constant("add" as const), pool: fc.nat({ max: 2 }) }),
    fc.record({ kind: fc.constant("time" as const), dt: fc.nat({ max: 200 }) }),
  );

  it("no trap; after a rehome no live mapping sits on a retired address; block accounting holds", () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 80 }), (ops) => {
        const e = engineFrom(
          engineConfig({
            capacity: { mappings: 200, subscribers: 40, peers: 100, filters: 50 },
            lifetimes: { holdDown: 30 },
            pool: { addresses: POOL, portMin: 60000, blockSize: 1024, maxBlocksPerSubscriber: 2 },
          }),
          0,
          { seed: 5n },
        );
        let now = 0;
        for (const o of ops) {
          if (o.kind === "map") {
            const suggest = o.suggest === null ? {} : { externalAddress: POOL[o.suggest], externalPort: 60000 + o.port };
            serveOne(
              e,
              mapRequest({ client: SUBS[o.sub], internalPort: o.port, lifetime: o.lifetime, nonce: nonceOf(o.sub), ...suggest }, o.pf ? [preferFailure()] : []),
              now,
              { source: SUBS[o.sub] },
            );
          } else if (o.kind === "peer") {
            serveOne(e, peerRequest({ client: SUBS[o.sub], internalPort: o.port, lifetime: o.lifetime, nonce: nonceOf(o.sub + 100) }), now, {
              source: SUBS[o.sub],
            });
          } else if (o.kind === "retire") {
            e.retirePoolAddress(POOL[o.pool], now);
            expect(e.rehome(now, 1, 1000).done).toBe(true);
          } else if (o.kind === "add") {
            e.addPoolAddress(POOL[o.pool]);
          } else {
            now += o.dt;
            e.expire(now);
          }
          e.drainEvents();
          const retired = new Set(
            e
              .poolUsage()
              .filter((p) => p.retired)
              .map((p) => p.address),
          );
          let blocks = 0;
          for (const sub of SUBS) {
            blocks += e.subscriberUsage(sub).blocks;
            for (const protocol of [W.PROTO_TCP, W.PROTO_UDP]) {
              for (let port = 1; port <= 4; port++) {
                const m = e.lookup(sub, protocol, port);
                if (m && (m.flags & W.MAPF_HELD) === 0 && o.kind === "retire") expect(retired.has(m.externalAddress)).toBe(false);
              }
            }
          }
          expect(BigInt(blocks)).toBe(e.engineStats().blocks);
        }
      }),
      { numRuns: Number(process.env.PCPD_PROPERTY_RUNS ?? 150) },
    );
  });
});
