// The host ⇄ module boundary (docs/boundary.md): the compiled module exports exactly the
// documented functions, every CMD_* opcode is dispatched by command() and round-trips
// through the command slot with the result the engine computes, and an opcode the module
// does not know is refused without doing anything.
import { describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import { ENGINE_FUNCTIONS, type PacketEngine, wasmUrl } from "../../src/engine/packet-engine.js";
import { engineConfig, engineFrom } from "../helpers/engine-config.js";
import { PcpdError } from "../../src/errors.js";
import { toAddress16 } from "../../src/net/address.js";
import { assigned, description, filter, mapRequest, natPmpMap, nonceOf, run, serveOne, u16, u32 } from "../helpers/packets.js";
import { readFileSync } from "node:fs";

const C = "192.0.2.1";
const EXT = "203.0.113.1";
const EXT2 = "203.0.113.2";
const T0 = 100;

const config = (addresses: string[]) =>
  engineConfig({ capacity: { descriptions: 16, realms: 4 }, pcp: { thirdPartyId: { enabled: true, ids: "any" } }, pool: { addresses } });

function engine(addresses = [EXT, EXT2]): PacketEngine {
  return engineFrom(config(addresses), T0, { options: W.OPTBIT_ALL });
}
const map = (e: PacketEngine, port: number, options = [] as ReturnType<typeof filter>[], lifetime = 600) =>
  serveOne(e, mapRequest({ client: C, internalPort: port, lifetime, nonce: nonceOf(port) }, options), T0, { source: C });

/** One mapping of C:port over TCP; its record id. */
function mapped(e: PacketEngine, port: number, options = [] as ReturnType<typeof filter>[]): number {
  expect(map(e, port, options).result).toBe(W.RESULT_SUCCESS);
  return e.lookup(C, W.PROTO_TCP, port)!.mapping;
}

const opcodes = Object.entries(W.ALL_CONSTANTS).filter(([name]) => name.startsWith("CMD_") && name !== "CMD_LIMIT");

// One case per opcode: each calls it through the slot (directly or through its typed
// verb) and checks what the engine did.
const cases: Record<string, () => void> = {
  CMD_ERROR_LIFETIME() {
    const e = engine();
    expect(e.errorLifetime(W.RESULT_NO_RESOURCES)).toBe(W.DEFAULT_SHORT_ERROR_LIFETIME);
    expect(e.errorLifetime(W.RESULT_NOT_AUTHORIZED)).toBe(W.DEFAULT_LONG_ERROR_LIFETIME);
  },
  CMD_FINISH_SUCCESS() {
    const e = engine();
    expect(run(e, mapRequest({ client: C, lifetime: 3600 }), { source: C }).verdict).toBe("parsed");
    e.finishSuccess(0, 1234, 0);
    const r = e.reply(0)!;
    expect([r[3], u32(r, W.HDR_LIFETIME)]).toEqual([W.RESULT_SUCCESS, 1234]);
  },
  CMD_FINISH_ERROR() {
    const e = engine();
    run(e, mapRequest({ client: C }), { source: C });
    e.finishError(0, W.RESULT_NOT_AUTHORIZED, 777);
    const r = e.reply(0)!;
    expect([r[3], u32(r, W.HDR_LIFETIME)]).toEqual([W.RESULT_NOT_AUTHORIZED, 777]);
  },
  CMD_FINISH_NATPMP_ADDRESS() {
    const e = engine();
    run(e, Uint8Array.of(0, 0));
    e.finishNatPmpAddress(0, 0, 0xcb007105);
    expect(u32(e.reply(0)!, 8)).toBe(0xcb007105);
  },
  CMD_FINISH_NATPMP_MAP() {
    const e = engine();
    run(e, natPmpMap(W.NATPMP_OP_MAP_UDP, 5000, 6000, 7200));
    e.finishNatPmpMap(0, 0, 40001, 3600);
    const r = e.reply(0)!;
    expect([u16(r, 8), u16(r, 10), u32(r, 12)]).toEqual([5000, 40001, 3600]);
  },
  CMD_ANNOUNCE() {
    const a = engine().announce(0x01020304);
    expect([a.length, a[1], u32(a, W.HDR_EPOCH)]).toEqual([W.PCP_HEADER_SIZE, W.OP_ANNOUNCE | 0x80, 0x01020304]);
  },
  CMD_ANNOUNCE_NATPMP() {
    const a = engine().announceNatPmp(9, "198.51.100.4");
    expect([a.length, u32(a, 4), u32(a, 8)]).toEqual([12, 9, 0xc6336404]);
  },
  CMD_ENGINE_BYTES() {
    const e = engine();
    const bytes = e.engineBytes();
    expect(bytes).toBeGreaterThan(0);
    expect(bytes).toBeLessThanOrEqual(e.exports.memory.buffer.byteLength);
  },
  CMD_POOL_ADD() {
    const e = engine();
    expect(e.addPoolAddress("203.0.113.3")).toBe(true);
    expect(e.addPoolAddress("203.0.113.3")).toBe(false); // already in service: -1 round-trips as i32
  },
  CMD_POOL_SIZE() {
    const e = engine();
    e.addPoolAddress("203.0.113.3");
    expect(e.poolList()).toEqual([EXT, EXT2, "203.0.113.3"]);
  },
  CMD_POOL_ENTRY() {
    const e = engine();
    const { portMin, blockSize } = config([EXT]).pool;
    const blocks = Math.floor((65536 - portMin) / blockSize);
    const before = e.poolUsage();
    expect(before.map((p) => [p.address, p.freeBlocks, p.retired])).toEqual([
      [EXT, blocks, false],
      [EXT2, blocks, false],
    ]);
    mapped(e, 80);
    expect(e.poolUsage().reduce((n, p) => n + p.freeBlocks, 0)).toBe(2 * blocks - 1);
  },
  CMD_POOL_RETIRE() {
    const e = engine();
    const owner = e.describe(mapped(e, 80))!;
    expect(e.retirePoolAddress(owner.externalAddress, T0)).toBe(1);
    expect(e.poolUsage().find((p) => p.address === owner.externalAddress)!.retired).toBe(true);
  },
  CMD_REHOME_NEXT() {
    const e = engine();
    const m = mapped(e, 80);
    const before = e.describe(m)!;
    e.retirePoolAddress(before.externalAddress, T0);
    const { updates, done } = e.rehome(T0, 1, 10);
    expect(done).toBe(true);
    expect(updates.map((u) => [u.mapping, u.from.protocol, u.from.port])).toEqual([[m, W.PROTO_TCP, before.externalPort]]);
    expect(e.describe(m)!.externalAddress).not.toBe(before.externalAddress);
  },
  CMD_EVENTS() {
    const e = engine();
    const m = mapped(e, 80);
    expect(e.drainEvents().map((v) => [v.kind, v.mapping, v.internalPort])).toEqual([["create", m, 80]]);
    mapped(e, 81);
    expect(e.drainRecords().bytes.length).toBe(W.EVENT_SIZE);
  },
  CMD_EVENTS_CONSUME() {
    const e = engine();
    mapped(e, 80);
    mapped(e, 81);
    e.discardEvents();
    expect(e.drainEvents()).toEqual([]);
  },
  CMD_ADD_STATIC() {
    const e = engine();
    expect(e.addStatic(C, W.PROTO_TCP, 22, EXT, 2222)).toBe(W.RESULT_SUCCESS);
    expect(e.lookup(C, W.PROTO_TCP, 22)).toMatchObject({ externalAddress: EXT, externalPort: 2222 });
    expect(e.lookup(C, W.PROTO_TCP, 22)!.flags & W.MAPF_STATIC).toBe(W.MAPF_STATIC);
  },
  CMD_REMOVE_STATIC() {
    const e = engine();
    e.addStatic(C, W.PROTO_TCP, 22, EXT, 2222);
    expect(e.removeStatic(C, W.PROTO_TCP, 22, 4, false)).toBe(W.RESULT_SUCCESS);
    expect(e.lookup(C, W.PROTO_TCP, 22)).toBeUndefined();
  },
  CMD_DELETE_SUBSCRIBER() {
    const e = engine();
    mapped(e, 80);
    mapped(e, 81);
    expect(e.deleteSubscriber(C)).toBe(2);
    expect(e.engineStats().mappings).toBe(0n);
  },
  CMD_SUBSCRIBER_USAGE() {
    const e = engine();
    mapped(e, 80);
    mapped(e, 81);
    expect(e.subscriberUsage(C)).toEqual({ mappings: 2, blocks: 1 });
    expect(e.subscriberUsage("192.0.2.99")).toEqual({ mappings: 0, blocks: 0 });
  },
  CMD_LOOKUP_MAPPING() {
    const e = engine();
    const o = map(e, 80);
    expect(e.lookup(C, W.PROTO_TCP, 80)).toMatchObject({ externalPort: assigned(o).port, externalAddress: assigned(o).address });
    expect(e.lookup(C, W.PROTO_UDP, 80)).toBeUndefined();
  },
  CMD_LOOKUP_EXTERNAL() {
    const e = engine();
    const o = map(e, 80);
    expect(e.lookupExternal(assigned(o).address, W.PROTO_TCP, assigned(o).port)).toMatchObject({ internalAddress: C, internalPort: 80 });
    expect(e.lookupExternal(assigned(o).address, W.PROTO_TCP, assigned(o).port + 1)).toBeUndefined();
  },
  CMD_DESCRIBE_MAPPING() {
    const e = engine();
    const m = mapped(e, 80);
    expect(e.describe(m)).toMatchObject({ kind: "none", mapping: m, internalPort: 80, protocol: W.PROTO_TCP });
    expect(e.describe(m + 1000)).toBeUndefined();
  },
  CMD_MAPPINGS_USED() {
    const e = engine();
    const m = mapped(e, 80);
    expect(e.mappingsUsed()).toBeGreaterThanOrEqual(m);
    mapped(e, 81);
    mapped(e, 82);
    expect(e.mappingsUsed()).toBeGreaterThanOrEqual(m + 2);
  },
  CMD_MAPPING_FILTER() {
    const e = engine();
    const m = mapped(e, 80, [filter(120, "198.51.100.0", 443), filter(128, "198.51.100.7")]);
    expect(e.filters(m).sort((x, y) => x.prefixLength - y.prefixLength)).toEqual([
      { prefixLength: 120, port: 443, address: "198.51.100.0" },
      { prefixLength: 128, port: 0, address: "198.51.100.7" },
    ]);
    expect(e.filters(mapped(e, 81))).toEqual([]);
  },
  CMD_MAPPING_DESCRIPTION() {
    const e = engine();
    expect(e.description(mapped(e, 80, [description("camera")]))).toBe("camera");
    expect(e.description(mapped(e, 81))).toBeUndefined();
  },
  CMD_LIST_SCAN() {
    const e = engine();
    for (const port of [80, 81, 82]) mapped(e, port);
    const first = e.listRecords(1, 2, 1000, {}, T0);
    expect(first.records.bytes.length).toBe(2 * W.EVENT_SIZE);
    expect(first.next).toBeGreaterThan(0);
    const rest = e.listRecords(first.next, 10, 1000, {}, T0);
    expect([rest.records.bytes.length, rest.next]).toEqual([W.EVENT_SIZE, 0]);
    expect(e.listRecords(1, 10, 1000, { protocol: W.PROTO_UDP }, T0).records.bytes.length).toBe(0);
  },
  CMD_PERSIST_EVENTS() {
    const e = engine();
    mapped(e, 80);
    const [chunk, ...more] = e.persistPending(1_000_000);
    expect(more).toEqual([]);
    expect(chunk[W.PREC_KIND]).toBe(W.PREC_UPSERT);
    expect(new DataView(chunk.buffer).getUint16(W.PREC_INTERNAL_PORT, true)).toBe(80);
  },
  CMD_PERSIST_GONE() {
    const g = engine().persistGone(1, W.PROTO_UDP, 5000);
    expect([g.length, g[W.PREC_KIND], g[W.PREC_PROTOCOL], new DataView(g.buffer).getUint16(W.PREC_EXTERNAL_PORT, true)]).toEqual([
      W.PREC_HEADER_SIZE,
      W.PREC_GONE,
      W.PROTO_UDP,
      5000,
    ]);
  },
  CMD_PERSIST_TABLE() {
    const e = engine();
    mapped(e, 80);
    mapped(e, 81);
    const t = e.persistTable(1, 1000, 0);
    expect(t.next).toBe(0);
    expect(t.bytes.length).toBe(2 * W.PREC_HEADER_SIZE);
  },
  CMD_PERSIST_BUFFER() {
    // restore() asks for the buffer before writing the records into it.
    const e = engine();
    mapped(e, 80);
    const t = e.persistTable(1, 1000, 0).bytes;
    const f = engine();
    expect(f.restore(t, 0, T0)).toBe(t.length);
    expect(f.lookup(C, W.PROTO_TCP, 80)).toMatchObject({ externalPort: e.lookup(C, W.PROTO_TCP, 80)!.externalPort });
  },
  CMD_RESTORE_RECORDS() {
    const e = engine();
    mapped(e, 80);
    mapped(e, 81);
    const t = e.persistTable(1, 1000, 0).bytes;
    const f = engine();
    expect(f.restore(t.subarray(0, W.PREC_HEADER_SIZE), 0, T0)).toBe(W.PREC_HEADER_SIZE);
    expect(f.engineStats().mappings).toBe(1n);
  },
  CMD_RESTORE_DROPPED() {
    const e = engine([EXT]);
    mapped(e, 80);
    const t = e.persistTable(1, 1000, 0).bytes;
    const f = engine(["198.51.100.9"]);
    f.restore(t, 0, T0);
    expect(f.restoreDropped()).toEqual({ expired: 0, notInPool: 1, conflict: 0, noResources: 0, malformed: 0 });
  },
  CMD_DATAPLANE_DOWN() {
    const e = engine();
    e.setDataplaneDown(true);
    expect(map(e, 80).result).toBe(W.RESULT_NETWORK_FAILURE);
    e.setDataplaneDown(false);
    expect(map(e, 80).result).toBe(W.RESULT_SUCCESS);
  },
  CMD_MIRROR_ADD() {
    const e = engine();
    expect(e.addMirror(C, W.PROTO_TCP, 22, EXT, 2222)).toBe(W.RESULT_SUCCESS);
    expect(assigned(map(e, 22)).port).toBe(2222);
  },
  CMD_MIRRORS_CLEAR() {
    const e = engine();
    e.addMirror(C, W.PROTO_TCP, 22, EXT, 2222);
    e.clearMirrors();
    expect(e.mirrorCount()).toBe(0);
  },
  CMD_MIRROR_COUNT() {
    const e = engine();
    e.addMirror(C, W.PROTO_TCP, 22, EXT, 2222);
    e.addMirror(C, W.PROTO_UDP, 53, EXT, 5353);
    expect(e.mirrorCount()).toBe(2);
  },
  CMD_REGISTER_REALM() {
    const e = engine();
    const r = e.registerRealm("0a0b0c");
    expect(r).toBeGreaterThan(0);
    expect(e.registerRealm("0a0b0c")).toBe(r);
    expect(e.registerRealm("0d")).not.toBe(r);
  },
  CMD_FIND_REALM() {
    const e = engine();
    expect(e.realmOf("0a0b0c")).toBe(0);
    const r = e.registerRealm("0a0b0c");
    expect(e.realmOf("0a0b0c")).toBe(r);
  },
  CMD_REALM_IDENTIFIER() {
    const e = engine();
    expect(e.realmIdentifier(e.registerRealm("0a0b0c"))).toBe("0a0b0c");
    expect(e.realmIdentifier(0)).toBeUndefined();
  },
};

describe("the engine boundary", () => {
  for (const build of ["debug", "release"] as const) {
    it(`${build}: the module's function exports are exactly ENGINE_FUNCTIONS`, () => {
      const module = new WebAssembly.Module(readFileSync(wasmUrl(build)));
      const functions = WebAssembly.Module.exports(module)
        .filter((x) => x.kind === "function")
        .map((x) => x.name);
      expect(functions.sort()).toEqual([...ENGINE_FUNCTIONS].sort());
      // Everything else is memory or a constant (the mirror test/wire.test.ts checks).
      expect(
        WebAssembly.Module.exports(module)
          .filter((x) => x.kind !== "function" && x.kind !== "global")
          .map((x) => x.name),
      ).toEqual(["memory"]);
    });
  }

  it("opcodes are 1..CMD_LIMIT-1, one each, and every one has a case below", () => {
    expect(opcodes.map(([, v]) => v).sort((a, b) => a - b)).toEqual(Array.from({ length: W.CMD_LIMIT - 1 }, (_, i) => i + 1));
    expect(Object.keys(cases).sort()).toEqual(opcodes.map(([name]) => name).sort());
  });

  it("an unknown opcode is refused and changes nothing", () => {
    const e = engine();
    mapped(e, 80);
    const stats = e.statsBytes().slice();
    for (const op of [0, W.CMD_LIMIT, 0xffffffff]) {
      expect(() => e.call(op)).toThrow(PcpdError);
      expect(e.exports.command()).toBe(W.CMDSTATUS_UNKNOWN);
    }
    expect(e.statsBytes()).toEqual(stats);
    expect(e.drainEvents().length).toBe(1);
  });

  it("the region table gives the fixed regions, inside memory and apart", () => {
    const e = engine();
    const at = e.exports.regions();
    const view = new DataView(e.exports.memory.buffer);
    const sizes: [number, number][] = [
      [W.REGION_SLOTS, W.SLOT_COUNT * W.SLOT_SIZE],
      [W.REGION_STATS, W.STATS_SIZE],
      [W.REGION_SCRATCH, W.SCRATCH_SIZE],
      [W.REGION_PREFIX64, W.PREFIX64_OPTIONS_CAP],
      [W.REGION_LIST, W.LIST_MAX * W.EVENT_SIZE],
      [W.REGION_DESCRIPTION, W.DESCRIPTION_STORED_MAX],
      [W.REGION_COMMAND, W.CMDSLOT_SIZE],
    ];
    const spans = sizes.map(([offset, size]) => [view.getUint32(at + offset, true), size]).sort((a, b) => a[0] - b[0]);
    for (let i = 0; i < spans.length; i++) {
      expect(spans[i][0]).toBeGreaterThan(0);
      if (i > 0) expect(spans[i][0]).toBeGreaterThanOrEqual(spans[i - 1][0] + spans[i - 1][1]);
    }
    expect(e.slotAddress(0)).toBe(view.getUint32(at + W.REGION_SLOTS, true));
    // Scratch is where commands find their addresses: an address written there by the host is what the engine reads.
    e.writeScratch(0, toAddress16(EXT2));
    expect(new Uint8Array(e.exports.memory.buffer, view.getUint32(at + W.REGION_SCRATCH, true), 16)).toEqual(toAddress16(EXT2));
  });

  describe("every opcode round-trips", () => {
    for (const [name] of opcodes) it(name, () => cases[name]());
  });
});
