// Host side of the WebAssembly packet engine: the PacketEngine every caller uses, and its
// configuration. The engine is built up in layers, one module each:
//   boundary.ts       instantiation, the exports interface, regions, the command slot
//   batch.ts          the hot batch path (load, serve, reply, outcome, expire)
//   control-verbs.ts  typed control operations over the command slot
//   records.ts        record decoding (events, listings, counters)
// This file adds the configuration: a parsed Config written into the configuration region
// (src/config/region.ts) and applied by the module (assembly/config.ts).
import * as W from "../wire.generated.js";
import { ErrorCodes, PcpdError } from "../errors.js";
import { parseConfig, type Config } from "../config/schema.js";
import { encodeConfig, type HostValues } from "../config/region.js";
import type { Build } from "./boundary.js";
import { ControlVerbs } from "./control-verbs.js";

export { ENGINE_FUNCTIONS, EngineBoundary, wasmUrl, type Build, type EngineExports, type Regions } from "./boundary.js";
export { BatchPath, type Datagram, type SlotOutcome, type Verdict } from "./batch.js";
export { ControlVerbs, type PoolAddress, type Unsolicited } from "./control-verbs.js";
export * from "./records.js";

export class PacketEngine extends ControlVerbs {
  /** `config`: applied as by reconfigure (default: the schema's defaults); tables come with initEngine. */
  constructor(build: Build = "release", config: Config = defaultConfig()) {
    super(build);
    this.reconfigure(config);
  }

  /** Writes the configuration region for `c` and applies it (`phase`: CFG_PHASE_*); returns the APPLY_* status. */
  private applyConfig(c: Config, host: HostValues, phase: number): number {
    let region: Uint8Array;
    try {
      region = encodeConfig(c, host);
    } catch (cause) {
      throw new PcpdError(ErrorCodes.BAD_CONFIG, (cause as Error).message, { cause });
    }
    const at = this.exports.configBase();
    this.mem();
    this.bytes.set(region, at);
    return this.exports.applyConfig(phase);
  }

  /**
   * The settings safe to change while serving (the CFG lines marked reload: codec switches,
   * lifetimes, hold-down, quotas, nonce policy, parity, PORT_SET size, PREFIX64, persistence
   * policy); table sizes and the pool stay as initEngine set them.
   */
  reconfigure(c: Config, host: HostValues = {}): void {
    this.applyConfig(c, host, W.CFG_PHASE_RELOAD);
  }

  /**
   * Prefetch of the next slot's mapping while serving: 0 off, 1 on, 2 auto (the default).
   * Benchmarks compare them between batches: one field of the region in force is rewritten
   * and the region re-applied (reload), without encoding a Config again.
   */
  setPrefetch(mode: 0 | 1 | 2): void {
    this.mem().setUint8(this.exports.configBase() + W.CFG_PREFETCH_MODE, mode);
    this.exports.applyConfig(W.CFG_PHASE_RELOAD);
  }

  /** Sizes the tables, loads the pool and applies every setting of `c`; once per instance. */
  initEngine(c: Config, now: number, host: Omit<HostValues, "start"> = {}): void {
    const shards = host.shards ?? 1;
    const shard = host.shard ?? 0;
    const { portMin, blockSize, maxBlocksPerSubscriber } = c.pool;
    const blocks = Math.floor((65536 - portMin) / blockSize);
    if (
      !(
        portMin >= 1 &&
        portMin <= 65535 &&
        blockSize >= 1 &&
        blocks >= 1 &&
        maxBlocksPerSubscriber >= 1 &&
        maxBlocksPerSubscriber <= W.MAX_BLOCKS_PER_SUBSCRIBER &&
        shards >= 1 &&
        shard < shards &&
        shards <= blocks
      )
    ) {
      throw new PcpdError(
        ErrorCodes.BAD_CONFIG,
        `invalid pool layout: portMin ${portMin}, blockSize ${blockSize}, maxBlocksPerSubscriber ${maxBlocksPerSubscriber} (1..${W.MAX_BLOCKS_PER_SUBSCRIBER}), shard ${shard} of ${shards}`,
      );
    }
    const status = this.applyConfig(c, { ...host, start: now }, W.CFG_PHASE_INIT);
    const { mappings, subscribers, peers, filters, descriptions, requesters, realms } = c.capacity;
    switch (status) {
      case W.APPLY_OK:
        break;
      case W.APPLY_INITIALISED:
        throw new PcpdError(ErrorCodes.ENGINE_STATE, "engine already initialised; build a new instance to resize");
      case W.APPLY_NO_MEMORY:
        throw new PcpdError(
          ErrorCodes.CAPACITY_TOO_LARGE,
          `capacity does not fit in WebAssembly memory: maxMappings ${mappings}, maxSubscribers ${subscribers}, maxPeers ${peers}, maxFilters ${filters} (each must be ≥ 1; about 16M mappings at most per engine)`,
        );
      case W.APPLY_DESCRIPTIONS:
        throw new PcpdError(ErrorCodes.CAPACITY_TOO_LARGE, `room for ${descriptions} descriptions does not fit in WebAssembly memory`);
      case W.APPLY_REQUESTERS:
        throw new PcpdError(ErrorCodes.CAPACITY_TOO_LARGE, `room for ${requesters} THIRD_PARTY requesters does not fit in WebAssembly memory`);
      case W.APPLY_REALMS:
        throw new PcpdError(ErrorCodes.CAPACITY_TOO_LARGE, `room for ${realms} realms does not fit in WebAssembly memory`);
      case W.APPLY_POOL_ADDRESS:
        throw new PcpdError(ErrorCodes.BAD_CONFIG, `a pool address is a duplicate or over the limit of ${W.POOL_MAX_ADDRESSES}`);
      default:
        throw new PcpdError(ErrorCodes.BAD_CONFIG, "pool layout refused by the engine"); // checked above; kept as a backstop
    }
    const ids = c.pcp.thirdPartyId;
    if (ids.enabled && ids.ids !== "any") {
      for (const id of ids.ids)
        if (this.registerRealm(id) === 0)
          throw new PcpdError(ErrorCodes.BAD_CONFIG, `THIRD_PARTY_ID ${id}: no room (${realms} realms) or longer than ${W.REALM_ID_MAX} bytes`);
    }
  }
}

let defaults: Config | undefined;

/** The schema's defaults (an empty document), parsed once. */
function defaultConfig(): Config {
  return (defaults ??= parseConfig({}));
}
