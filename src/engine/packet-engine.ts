// Host side of the WebAssembly packet engine: the PacketEngine every caller uses, and its
// configuration. The engine is built up in layers, one module each:
//   boundary.ts       instantiation, the exports interface, regions, the command slot
//   batch.ts          the hot batch path (load, serve, reply, outcome, expire)
//   control-verbs.ts  typed control operations over the command slot
//   records.ts        record decoding (events, listings, counters)
// This file adds the configuration (codec flags, table sizes, pool, policies).
import * as W from "../wire.generated.js";
import { ErrorCodes, PcpdError } from "../errors.js";
import type { Build } from "./boundary.js";
import { ControlVerbs } from "./control-verbs.js";

export { ENGINE_FUNCTIONS, EngineBoundary, wasmUrl, type Build, type EngineExports, type Regions } from "./boundary.js";
export { BatchPath, type Datagram, type SlotOutcome, type Verdict } from "./batch.js";
export { ControlVerbs, type PoolAddress, type Unsolicited } from "./control-verbs.js";
export * from "./records.js";

export interface CodecConfig {
  mapEnabled: boolean;
  peerEnabled: boolean;
  /** Overloaded requests get NO_RESOURCES (true) or are dropped silently (false) [RFC 6887 §8.2]. */
  overloadReply: boolean;
  /** NAT-PMP on the same socket: answered, answered as an unsupported PCP version, or never answered. */
  natPmp: "enabled" | "disabled" | "silent";
  /** OPTBIT_* mask of the options this server processes; others behave as unknown. */
  options: number;
  shortErrorLifetime: number;
  longErrorLifetime: number;
  thirdPartyIdMaxLength: number;
  /** PREFIX64 options (whole, padded: encodePrefix64Options) for MAP and ANNOUNCE responses whose request asked; empty: none. */
  prefix64?: Uint8Array;
}

export const DEFAULT_CODEC_CONFIG: Readonly<CodecConfig> = Object.freeze({
  mapEnabled: true,
  peerEnabled: true,
  overloadReply: false,
  natPmp: "enabled",
  options: W.OPTBIT_CORE,
  shortErrorLifetime: W.DEFAULT_SHORT_ERROR_LIFETIME,
  longErrorLifetime: W.DEFAULT_LONG_ERROR_LIFETIME,
  thirdPartyIdMaxLength: 16,
});

export interface EngineConfig {
  /** Table sizes, fixed for the life of the instance. */
  maxMappings: number;
  maxSubscribers: number;
  maxPeers: number;
  maxFilters: number;
  /** DESCRIPTION texts stored at once (0: never stored, so never echoed). */
  maxDescriptions?: number;
  /** THIRD_PARTY mappings whose requester is recorded at once, for Mapping Update [RFC 6887 §14.2] (0: none; those mappings are told by the Epoch only). */
  maxRequesters?: number;
  /** Largest PORT_SET granted [RFC 7753] (≤ 1: a PORT_SET request is served as a single-port MAP). */
  portSetMax?: number;
  /** THIRD_PARTY_ID realms [RFC 7843]: how many identifiers at once, and which (hex strings, or "any" to register on first use). */
  realms?: { capacity: number; ids: string[] | "any" };
  minLifetime: number;
  maxLifetime: number;
  peerMinLifetime: number;
  /** Seconds an ended mapping's external port stays reserved for its client [RFC 6888 REQ-8]. */
  holdDown: number;
  mappingsPerSubscriber: number;
  filtersPerMapping: number;
  noncePolicy: "strict" | "relaxed";
  /** Keep the internal port's parity in dynamically chosen external ports. */
  parity: boolean;
  /** IANA protocol numbers MAP/PEER may use (all must carry 16-bit ports). */
  protocols: number[];
  pool: {
    addresses: string[];
    portMin: number;
    blockSize: number;
    maxBlocksPerSubscriber: number;
    excludedPorts: number[];
    /** This engine leases only blocks b with b % shards == shard (one shard per engine worker). */
    shards?: number;
    shard?: number;
  };
  /** PRNG seed for block and port choice (0 = fixed default; the server passes a random one). */
  seed: bigint;
}

export const DEFAULT_ENGINE_CONFIG: Readonly<EngineConfig> = Object.freeze({
  maxMappings: 100_000,
  maxSubscribers: 20_000,
  maxPeers: 50_000,
  maxFilters: 50_000,
  maxDescriptions: 10_000,
  maxRequesters: 10_000,
  minLifetime: 120,
  maxLifetime: 86_400,
  peerMinLifetime: 120,
  holdDown: 120,
  mappingsPerSubscriber: 64,
  filtersPerMapping: 8,
  noncePolicy: "strict",
  parity: false,
  protocols: [W.PROTO_TCP, W.PROTO_UDP],
  pool: Object.freeze({ addresses: ["203.0.113.1"], portMin: 1024, blockSize: 512, maxBlocksPerSubscriber: 4, excludedPorts: [] }),
  seed: 0n,
}) as EngineConfig;

export class PacketEngine extends ControlVerbs {
  constructor(build: Build = "release", config: CodecConfig = DEFAULT_CODEC_CONFIG) {
    super(build);
    this.configure(config);
  }

  configure(c: CodecConfig): void {
    let flags = 0;
    if (c.mapEnabled) flags |= W.CFG_MAP_ENABLED;
    if (c.peerEnabled) flags |= W.CFG_PEER_ENABLED;
    if (c.overloadReply) flags |= W.CFG_OVERLOAD_REPLY;
    if (c.natPmp === "enabled") flags |= W.CFG_NATPMP_ENABLED;
    if (c.natPmp === "silent") flags |= W.CFG_NATPMP_SILENT;
    this.exports.configureCodec(flags, c.options, c.shortErrorLifetime, c.longErrorLifetime, c.thirdPartyIdMaxLength);
    const prefix64 = c.prefix64 ?? new Uint8Array(0);
    if (prefix64.length > W.PREFIX64_OPTIONS_CAP || prefix64.length % 4 !== 0) throw new PcpdError(ErrorCodes.BAD_CONFIG, `PREFIX64 options of ${prefix64.length} bytes (at most ${W.PREFIX64_OPTIONS_CAP}, whole options)`);
    this.mem();
    this.bytes.set(prefix64, this.exports.prefix64Base());
    this.exports.setPrefix64(prefix64.length);
  }

  /** Sizes the tables and loads the pool; once per instance. */
  initEngine(c: EngineConfig, now: number): void {
    const x = this.exports;
    if (c.pool.addresses.length === 0) throw new PcpdError(ErrorCodes.BAD_CONFIG, "the external pool needs at least one address");
    const shards = c.pool.shards ?? 1;
    const shard = c.pool.shard ?? 0;
    const { portMin, blockSize, maxBlocksPerSubscriber } = c.pool;
    const blocks = Math.floor((65536 - portMin) / blockSize);
    if (!(portMin >= 1 && portMin <= 65535 && blockSize >= 1 && blocks >= 1 && maxBlocksPerSubscriber >= 1 &&
        maxBlocksPerSubscriber <= W.MAX_BLOCKS_PER_SUBSCRIBER && shards >= 1 && shard < shards && shards <= blocks)) {
      throw new PcpdError(ErrorCodes.BAD_CONFIG, `invalid pool layout: portMin ${portMin}, blockSize ${blockSize}, maxBlocksPerSubscriber ${maxBlocksPerSubscriber} (1..${W.MAX_BLOCKS_PER_SUBSCRIBER}), shard ${shard} of ${shards}`);
    }
    this.setPolicy(c);
    const status = x.engineInit(c.maxMappings, c.maxSubscribers, c.maxPeers, c.maxFilters, BigInt.asUintN(64, c.seed), now >>> 0);
    if (status === 1) throw new PcpdError(ErrorCodes.BAD_CONFIG, "engine already initialised; build a new instance to resize");
    if (status === 2) {
      throw new PcpdError(ErrorCodes.BAD_CONFIG, `capacity does not fit in WebAssembly memory: maxMappings ${c.maxMappings}, maxSubscribers ${c.maxSubscribers}, maxPeers ${c.maxPeers}, maxFilters ${c.maxFilters} (each must be ≥ 1; about 16M mappings at most per engine)`);
    }
    if (!x.initDescriptions(c.maxDescriptions ?? 0)) throw new PcpdError(ErrorCodes.BAD_CONFIG, `room for ${c.maxDescriptions} descriptions does not fit in WebAssembly memory`);
    if (!x.initRequesters(c.maxRequesters ?? 0)) throw new PcpdError(ErrorCodes.BAD_CONFIG, `room for ${c.maxRequesters} THIRD_PARTY requesters does not fit in WebAssembly memory`);
    const realms = c.realms ?? { capacity: 0, ids: [] };
    if (!x.initRealms(realms.capacity, realms.ids === "any" ? 1 : 0)) throw new PcpdError(ErrorCodes.BAD_CONFIG, `room for ${realms.capacity} realms does not fit in WebAssembly memory`);
    if (realms.ids !== "any") for (const id of realms.ids) if (this.registerRealm(id) === 0) throw new PcpdError(ErrorCodes.BAD_CONFIG, `THIRD_PARTY_ID ${id}: no room (${realms.capacity} realms) or longer than ${W.REALM_ID_MAX} bytes`);
    if (!x.configurePool(portMin, blockSize, maxBlocksPerSubscriber, shards, shard)) {
      throw new PcpdError(ErrorCodes.BAD_CONFIG, "pool layout refused by the engine"); // checked above; kept as a backstop
    }
    x.setProtocol(W.PROTO_TCP, 0);
    x.setProtocol(W.PROTO_UDP, 0);
    for (const p of c.protocols) x.setProtocol(p, 1);
    for (const port of c.pool.excludedPorts) x.setExcludedPort(port, 1);
    for (const a of c.pool.addresses) {
      if (!this.addPoolAddress(a)) throw new PcpdError(ErrorCodes.BAD_CONFIG, `pool address ${a} is a duplicate or over the limit of ${W.POOL_MAX_ADDRESSES}`);
    }
  }

  /** Lifetimes, hold-down, quotas, nonce policy and parity: safe to change while serving. */
  setPolicy(c: EngineConfig): void {
    this.exports.configureEngine(c.minLifetime, c.maxLifetime, c.peerMinLifetime, c.holdDown, c.mappingsPerSubscriber, c.filtersPerMapping,
      c.noncePolicy === "relaxed" ? W.NONCE_RELAXED : W.NONCE_STRICT, c.parity ? 1 : 0);
    this.exports.setPortSetPolicy(c.portSetMax ?? 1);
  }

  /**
   * Coalesced (the default): a refresh that only moved a mapping's expiry by less than an
   * eighth of its remaining lifetime (at least 60 s) produces no record; off: every refresh does.
   */
  setRefreshCoalescing(on: boolean): void {
    this.exports.setRefreshCoalescing(on ? 1 : 0);
  }

  /**
   * CHECKPOINT_REQUIRED [RFC 7767]: honoured (flagged, echoed, the reply held until durable)
   * while `on` (persistence enabled), for at most `perSubscriber` mappings per subscriber.
   */
  setCheckpointPolicy(on: boolean, perSubscriber: number): void {
    this.exports.setCheckpointPolicy(on ? 1 : 0, perSubscriber >>> 0);
  }
}
