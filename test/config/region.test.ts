// The configuration region: the CFG lines of assembly/abi.ts, the generated encoder and
// loader, and the hand-written host fields (src/config/region.ts).
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import * as W from "../../src/wire.generated.js";
import { ConfigSchema, parseConfig } from "../../src/config/schema.js";
import { CFG_FIELDS } from "../../src/config-region.generated.js";
import { encodeConfig, enabledOptions } from "../../src/config/region.js";
import { encodePrefix64Options } from "../../src/net/prefix64.js";
import { toAddress16 } from "../../src/net/address.js";
// @ts-expect-error plain ESM script without typings
import { cfgFields, generateEncoder, generateLoader } from "../../scripts/gen-wire.mjs";

/** The schema at a dotted path, through defaults/prefaults and optionals. */
function schemaAt(path: string): z.ZodType | undefined {
  let s: z.ZodType | undefined = ConfigSchema;
  for (const key of path.split(".")) {
    s = unwrap(s);
    if (!(s instanceof z.ZodObject)) return undefined;
    s = (s.shape as Record<string, z.ZodType>)[key];
    if (s === undefined) return undefined;
  }
  return unwrap(s);
}
function unwrap(s: z.ZodType | undefined): z.ZodType | undefined {
  while (s && (s instanceof z.ZodDefault || s instanceof z.ZodPrefault || s instanceof z.ZodOptional || s instanceof z.ZodPipe)) {
    s = s instanceof z.ZodPipe ? (s.in as z.ZodType) : (s.def as unknown as { innerType: z.ZodType }).innerType;
  }
  return s;
}

describe("configuration region", () => {
  it("the generated encoder and loader are up to date with the CFG lines of abi.ts", () => {
    expect(readFileSync(new URL("../../src/config-region.generated.ts", import.meta.url), "utf8")).toBe(generateEncoder());
    expect(readFileSync(new URL("../../assembly/config.generated.ts", import.meta.url), "utf8")).toBe(generateLoader());
    expect(CFG_FIELDS.map((f) => f.name)).toEqual(cfgFields().map((f: { name: string }) => f.name));
  });

  it("every CFG line's path names a field of the schema, of a matching kind (enum values in code order)", () => {
    const paths = CFG_FIELDS.filter((f) => f.path);
    expect(paths.length).toBeGreaterThan(20);
    for (const f of paths) {
      const s = schemaAt(f.path!);
      expect(s, `${f.name}: ${f.path}`).toBeDefined();
      if (f.type === "bool") expect(s, f.path).toBeInstanceOf(z.ZodBoolean);
      else if (f.type === "enum") expect((s as z.ZodEnum).options, f.path).toEqual(f.values);
      else expect(s, f.path).toBeInstanceOf(z.ZodNumber);
    }
    expect(schemaAt("pool.nothing")).toBeUndefined(); // the walker does refuse a wrong path
  });

  it("fields do not overlap and fit in CFG_SIZE", () => {
    const width = (f: (typeof CFG_FIELDS)[number]) => {
      if (f.type === "bytes") {
        return { [W.CFG_PROTOCOLS]: 32, [W.CFG_EXCLUDED]: 8192, [W.CFG_PREFIX64]: W.PREFIX64_OPTIONS_CAP, [W.CFG_POOL]: 16 * W.POOL_MAX_ADDRESSES }[f.offset]!;
      }
      return { u8: 1, bool: 1, enum: 1, u16: 2, u32: 4, u64: 8 }[f.type];
    };
    const spans = CFG_FIELDS.map((f) => [f.offset, f.offset + width(f)] as const).sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < spans.length; i++) expect(spans[i][0]).toBeGreaterThanOrEqual(spans[i - 1][1]);
    expect(spans.at(-1)![1]).toBeLessThanOrEqual(W.CFG_SIZE);
    for (const f of CFG_FIELDS) if (f.type === "u64") expect(f.offset % 8).toBe(0);
  });

  it("golden: a known configuration gives the expected bytes at the named offsets", () => {
    const c = parseConfig({
      lifetimes: { min: 60, max: 7200, peerMin: 90, holdDown: 30 },
      quotas: { mappingsPerSubscriber: 100, filtersPerMapping: 4 },
      pcp: {
        map: false,
        overload: "no-resources",
        shortErrorLifetime: 45,
        longErrorLifetime: 900,
        description: false,
        portSet: { enabled: true, maxSize: 64 },
        thirdPartyId: { enabled: true, ids: ["0a01"], maxLength: 8 },
        prefix64: [{ prefix: "64:ff9b::/96" }],
      },
      natPmp: "silent",
      noncePolicy: "relaxed",
      parity: true,
      protocols: [17, 132],
      capacity: { mappings: 5000, subscribers: 300, peers: 700, filters: 900, descriptions: 11, realms: 12, requesters: 13 },
      pool: { addresses: ["198.51.100.0/30", "2001:db8::1"], portMin: 2048, blockSize: 256, maxBlocksPerSubscriber: 2, excludedPorts: [2050, 4000] },
      persistence: { enabled: true, refreshes: "every", checkpointsPerSubscriber: 3 },
    });
    const bytes = encodeConfig(c, { seed: 0x0102030405060708n, shard: 2, shards: 3, start: 777, prefetch: 1 });
    const v = new DataView(bytes.buffer);
    expect(bytes.length).toBe(W.CFG_SIZE);
    const u32 = (at: number) => v.getUint32(at, true);
    expect([W.CFG_MIN_LIFETIME, W.CFG_MAX_LIFETIME, W.CFG_PEER_MIN_LIFETIME, W.CFG_HOLD_DOWN].map(u32)).toEqual([60, 7200, 90, 30]);
    expect([W.CFG_MAPPINGS_PER_SUBSCRIBER, W.CFG_FILTERS_PER_MAPPING, W.CFG_SHORT_ERROR_LIFETIME, W.CFG_LONG_ERROR_LIFETIME].map(u32)).toEqual([
      100, 4, 45, 900,
    ]);
    expect(u32(W.CFG_THIRD_PARTY_ID_MAX_LENGTH)).toBe(8);
    expect(u32(W.CFG_ENABLED_OPTIONS)).toBe(
      W.OPTBIT_THIRD_PARTY |
        W.OPTBIT_PREFER_FAILURE |
        W.OPTBIT_FILTER |
        W.OPTBIT_PREFIX64 |
        W.OPTBIT_CHECKPOINT_REQUIRED |
        W.OPTBIT_THIRD_PARTY_ID |
        W.OPTBIT_PORT_SET,
    );
    expect(u32(W.CFG_PORT_SET_MAX)).toBe(64);
    expect(u32(W.CFG_CHECKPOINT_QUOTA)).toBe(3);
    const prefix64 = encodePrefix64Options([{ prefix: "64:ff9b::/96" }]);
    expect(u32(W.CFG_PREFIX64_LENGTH)).toBe(prefix64.length);
    expect(bytes.subarray(W.CFG_PREFIX64, W.CFG_PREFIX64 + prefix64.length)).toEqual(prefix64);
    expect(
      [
        W.CFG_NONCE_POLICY,
        W.CFG_PARITY,
        W.CFG_PCP_MAP,
        W.CFG_PCP_PEER,
        W.CFG_OVERLOAD_POLICY,
        W.CFG_NATPMP_MODE,
        W.CFG_CHECKPOINTS_ON,
        W.CFG_COALESCE_REFRESHES,
        W.CFG_PREFETCH_MODE,
      ].map((at) => v.getUint8(at)),
    ).toEqual([W.NONCE_RELAXED, 1, 0, 1, 1, 2, 1, 0, 1]);
    expect(
      [W.CFG_MAX_MAPPINGS, W.CFG_MAX_SUBSCRIBERS, W.CFG_MAX_PEERS, W.CFG_MAX_FILTERS, W.CFG_MAX_DESCRIPTIONS, W.CFG_MAX_REQUESTERS, W.CFG_MAX_REALMS].map(u32),
    ).toEqual([5000, 300, 700, 900, 11, 13, 12]);
    expect(v.getUint8(W.CFG_ANY_REALM)).toBe(0);
    expect([W.CFG_PORT_MIN, W.CFG_BLOCK_SIZE, W.CFG_MAX_BLOCKS_PER_SUBSCRIBER, W.CFG_SHARD_COUNT, W.CFG_SHARD_INDEX, W.CFG_START_TIME].map(u32)).toEqual([
      2048, 256, 2, 3, 2, 777,
    ]);
    expect(v.getBigUint64(W.CFG_SEED, true)).toBe(0x0102030405060708n);
    // Protocols 17 and 132 only; excluded ports 2050 and 4000 only.
    const bitsOf = (at: number, n: number) => Array.from({ length: n * 8 }, (_, i) => i).filter((i) => (bytes[at + (i >> 3)] >> (i & 7)) & 1);
    expect(bitsOf(W.CFG_PROTOCOLS, 32)).toEqual([17, 132]);
    expect(bitsOf(W.CFG_EXCLUDED, 8192)).toEqual([2050, 4000]);
    // 198.51.100.0/30 without network and broadcast: .1 and .2; then the IPv6 address.
    expect(u32(W.CFG_POOL_COUNT)).toBe(3);
    expect(bytes.subarray(W.CFG_POOL, W.CFG_POOL + 48)).toEqual(
      new Uint8Array([...toAddress16("198.51.100.1"), ...toAddress16("198.51.100.2"), ...toAddress16("2001:db8::1")]),
    );
    expect(bytes.subarray(W.CFG_POOL + 48, W.CFG_POOL + 64)).toEqual(new Uint8Array(16));
  });

  it("host values default to one shard, seed 0, prefetch auto; PORT_SET off means sets of 1; persistence off means coalesced refreshes", () => {
    const c = parseConfig({ pcp: { portSet: { enabled: false }, thirdPartyId: { enabled: false } }, persistence: { enabled: false, refreshes: "every" } });
    const v = new DataView(encodeConfig(c).buffer);
    expect([W.CFG_SHARD_COUNT, W.CFG_SHARD_INDEX, W.CFG_START_TIME, W.CFG_PORT_SET_MAX, W.CFG_MAX_REALMS].map((at) => v.getUint32(at, true))).toEqual([
      1, 0, 0, 1, 0,
    ]);
    expect(v.getBigUint64(W.CFG_SEED, true)).toBe(0n);
    expect([W.CFG_PREFETCH_MODE, W.CFG_COALESCE_REFRESHES, W.CFG_CHECKPOINTS_ON, W.CFG_ANY_REALM].map((at) => v.getUint8(at))).toEqual([2, 1, 0, 1]);
    expect(v.getUint32(W.CFG_ENABLED_OPTIONS, true)).toBe(enabledOptions(c));
    expect(new DataView(encodeConfig(c, { options: W.OPTBIT_ALL }).buffer).getUint32(W.CFG_ENABLED_OPTIONS, true)).toBe(W.OPTBIT_ALL);
  });
});
