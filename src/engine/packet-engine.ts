// Host side of the WebAssembly packet engine: loads the module, sizes the mapping tables,
// fills batch slots, runs batches (codec + engine) and reads verdicts, events and
// counters. The only TypeScript view of the module's exports is `EngineExports` below.
import { readFileSync } from "node:fs";
import * as W from "../wire.generated.js";
import { ErrorCodes, PcpdError } from "../errors.js";
import { formatAddress16, toAddress16 } from "../net/address.js";
import { parseConfig, type Config } from "../config/schema.js";
import { encodeConfig, type HostValues } from "../config/region.js";

export interface EngineExports {
  readonly memory: WebAssembly.Memory;
  _initialize(): void;
  slotsBase(): number;
  statsBase(): number;
  configBase(): number;
  applyConfig(phase: number): number;
  errorLifetime(result: number): number;
  processBatch(count: number, epoch: number): number;
  processRange(first: number, count: number, epoch: number): number;
  finishSuccess(slot: number, lifetime: number, echoMask: number): void;
  finishError(slot: number, result: number, lifetime: number): void;
  finishNatPmpAddress(slot: number, result: number, ipv4: number): void;
  finishNatPmpMap(slot: number, result: number, externalPort: number, lifetime: number): void;
  encodeAnnounce(at: number, epoch: number): number;
  encodeNatPmpAnnounce(at: number, epoch: number, ipv4: number): number;
  heapProbe(): number;
  engineBytes(): number;
  scratchBase(): number;
  poolAdd(): number;
  poolSize(): number;
  poolAddressAt(i: number): number;
  poolFreeBlocks(i: number): number;
  poolIsRetired(i: number): number;
  poolRetire(pool: number, now: number): number;
  rehomeNext(now: number, epoch: number): number;
  rehomeMapping(): number;
  rehomeFrom(): number;
  serveRange(first: number, count: number, epoch: number, now: number): number;
  expire(now: number, budget: number): number;
  eventsBase(): number;
  eventsHead(): number;
  eventsTail(): number;
  eventsConsume(n: number): void;
  addStatic(protocol: number, internalPort: number, externalPort: number): number;
  removeStatic(protocol: number, internalPort: number, family: number, hold: number): number;
  deleteSubscriber(realm: number): number;
  lookupMapping(protocol: number, internalPort: number, family: number, realm: number): number;
  lookupExternal(pool: number, protocol: number, port: number): number;
  describeMapping(m: number): number;
  mappingsUsed(): number;
  mappingFilter(m: number, k: number): number;
  listScan(from: number, scan: number, limit: number, sel: number, protocol: number, pool: number, kind: number): number;
  listBase(): number;
  listNext(): number;
  persistBase(): number;
  persistBytes(): number;
  persistNext(): number;
  persistEvents(first: number, count: number, wallOffset: number): number;
  persistGone(pool: number, protocol: number, port: number): void;
  persistTable(from: number, budget: number, wallOffset: number): number;
  restoreRecords(length: number, wallOffset: number, now: number): number;
  restoreDropped(reason: number): number;
  subscriberMappings(realm: number): number;
  subscriberBlocks(realm: number): number;
  setDataplaneDown(down: number): void;
  mirrorAdd(protocol: number, internalPort: number, externalPort: number, replace: number): number;
  mirrorsClear(): void;
  mirrorCount(): number;
  registerRealm(length: number): number;
  findRealm(length: number): number;
  realmIdentifier(realm: number): number;
  mappingDescription(m: number): number;
  descriptionBase(): number;
  loadgenMap(first: number, count: number, start: number, stride: number, total: number, perSubscriber: number, portOffset: number, lifetime: number, protocol: number): void;
}

export type Build = "debug" | "release";

export interface MappingEvent {
  kind: "create" | "refresh" | "delete" | "expire" | "release" | "update" | "none";
  protocol: number;
  flags: number;
  family: 4 | 6;
  internalAddress: string;
  realm: number;
  internalPort: number;
  externalAddress: string;
  externalPort: number;
  clientPort: number;
  mapExpiry: number;
  outExpiry: number;
  mapping: number;
  time: number;
}
const EVENT_KINDS: MappingEvent["kind"][] = ["none", "create", "refresh", "delete", "expire", "release", "update"];

/** A FILTER of a mapping, as the dataplane enforces it [RFC 6887 §13.3]. */
export interface Filter {
  prefixLength: number;
  port: number;
  address: string;
}

/**
 * Mapping records as they leave the engine's thread: bytes in event layout (EVENT_SIZE
 * each) and what decoding them needs, so the packet thread copies instead of building
 * objects, and the reader decodes (decodeRecords).
 */
export interface MappingRecords {
  bytes: Uint8Array;
  /** External address of each pool index (omitted on an event batch when unchanged since the last one). */
  pool?: string[];
  /** Engine time when the records were read (listings and lookups). */
  now?: number;
  /** FILTERs of record i, for the records that have some (listings and lookups only). */
  filters?: Record<number, Filter[]>;
  /** DESCRIPTION of record i, for the records that have one (listings and lookups only). */
  descriptions?: Record<number, string>;
  /** THIRD_PARTY_ID (hex) of record i's realm, for the records in one (listings and lookups only). */
  thirdPartyIds?: Record<number, string>;
}

/** Which mappings a listing keeps (every field optional). */
export interface RecordSelector {
  internalAddress?: string;
  /** Pool index of the external address. */
  pool?: number;
  protocol?: number;
  kind?: "dynamic" | "static" | "held";
}

const LIST_KINDS = { dynamic: W.LISTKIND_DYNAMIC, static: W.LISTKIND_STATIC, held: W.LISTKIND_HELD } as const;

/** One event-layout record at `at`; `pool` names pool indexes. */
function readEvent(view: DataView, bytes: Uint8Array, at: number, pool: (index: number) => string): MappingEvent {
  return {
    kind: EVENT_KINDS[view.getUint8(at + W.EV_KIND)] ?? "none",
    protocol: view.getUint8(at + W.EV_PROTOCOL),
    flags: view.getUint8(at + W.EV_FLAGS),
    family: view.getUint8(at + W.EV_FAMILY) ? 6 : 4,
    internalAddress: formatAddress16(bytes.subarray(at + W.EV_INTERNAL_ADDR, at + W.EV_INTERNAL_ADDR + 16)),
    realm: view.getUint32(at + W.EV_REALM, true),
    internalPort: view.getUint16(at + W.EV_INTERNAL_PORT, true),
    externalAddress: pool(view.getUint16(at + W.EV_POOL_INDEX, true)),
    externalPort: view.getUint16(at + W.EV_EXTERNAL_PORT, true),
    clientPort: view.getUint16(at + W.EV_CLIENT_PORT, true),
    mapExpiry: view.getUint32(at + W.EV_MAP_EXPIRY, true),
    outExpiry: view.getUint32(at + W.EV_OUT_EXPIRY, true),
    mapping: view.getUint32(at + W.EV_MAPPING, true),
    time: view.getUint32(at + W.EV_TIME, true),
  };
}

/** Decodes records; `pool` names the pool indexes when the records carry no names of their own. */
export function decodeRecords(r: MappingRecords, pool: string[] = r.pool ?? []): MappingEvent[] {
  const view = new DataView(r.bytes.buffer, r.bytes.byteOffset, r.bytes.byteLength);
  const name = (i: number) => pool[i] ?? `pool#${i}`;
  const out: MappingEvent[] = [];
  for (let at = 0; at + W.EVENT_SIZE <= r.bytes.length; at += W.EVENT_SIZE) out.push(readEvent(view, r.bytes, at, name));
  return out;
}

/** Kind and record id of each record, without decoding the rest. */
export function recordKinds(r: MappingRecords): { kind: number; mapping: number }[] {
  const view = new DataView(r.bytes.buffer, r.bytes.byteOffset, r.bytes.byteLength);
  const out = [];
  for (let at = 0; at + W.EVENT_SIZE <= r.bytes.length; at += W.EVENT_SIZE) out.push({ kind: view.getUint8(at + W.EV_KIND), mapping: view.getUint32(at + W.EV_MAPPING, true) });
  return out;
}

export interface Datagram {
  payload: Uint8Array;
  /** 16-byte source address (IPv4 v4-mapped), see src/net/address.ts. */
  source: Uint8Array;
  sourcePort: number;
  /** INGRESS_* bits from the host's interface/subnet classification. */
  ingress: number;
  overloaded?: boolean;
}

export type Verdict = "drop" | "reply" | "parsed";
const VERDICTS: Verdict[] = ["drop", "reply", "parsed"];

export interface SlotOutcome {
  verdict: Verdict;
  dropReason: number;
  result: number;
  /** Reply bytes: a view into module memory, valid until the slot is reused. */
  response: Uint8Array;
  version: number;
  opcode: number;
  parseFlags: number;
  lifetime: number;
  options: number;
  filterCount: number;
}

/** An unsolicited message for a mapping's client (Mapping Update, RFC 6887 §14.2). */
export interface Unsolicited {
  address: string;
  port: number;
  /** Bytes 8..11 hold the Epoch: rewrite them with the current one at each send. */
  payload: Uint8Array;
}

export interface PoolAddress {
  address: string;
  freeBlocks: number;
  /** Removed from the pool: nothing new is leased there. */
  retired: boolean;
}

export interface CodecStats {
  packets: bigint;
  parsed: bigint;
  pcpResults: bigint[];
  natPmpResults: bigint[];
  drops: bigint[];
}

/** Engine counters from a counters block (STATS_SIZE bytes at `at`). */
export function readEngineStats(view: DataView, at: number): Record<string, bigint> {
  const read = (o: number) => view.getBigUint64(at + o, true);
  return {
    mappings: read(W.STATS_MAPPINGS),
    held: read(W.STATS_HELD),
    subscribers: read(W.STATS_SUBSCRIBERS),
    blocks: read(W.STATS_BLOCKS),
    peers: read(W.STATS_PEERS),
    filters: read(W.STATS_FILTERS),
    created: read(W.STATS_CREATED),
    refreshed: read(W.STATS_REFRESHED),
    deleted: read(W.STATS_DELETED),
    expired: read(W.STATS_EXPIRED),
    released: read(W.STATS_RELEASED),
    eventsLost: read(W.STATS_EVENTS_LOST),
  };
}

/** Codec counters from a counters block (STATS_SIZE bytes at `at`). */
export function readCodecStats(view: DataView, at: number): CodecStats {
  const read = (offset: number, n: number) => Array.from({ length: n }, (_, i) => view.getBigUint64(at + offset + 8 * i, true));
  return {
    packets: view.getBigUint64(at + W.STATS_PACKETS, true),
    parsed: view.getBigUint64(at + W.STATS_PARSED, true),
    pcpResults: read(W.STATS_PCP_RESULT, W.RESULT_CODE_LIMIT),
    natPmpResults: read(W.STATS_NATPMP_RESULT, W.NATPMP_RESULT_CODE_LIMIT),
    drops: read(W.STATS_DROP, W.DROP_REASON_LIMIT),
  };
}

const modules = new Map<Build, WebAssembly.Module>();

export function wasmUrl(build: Build): URL {
  // src/engine/ and dist/engine/ are both two levels below the package root.
  return new URL(`../../build/${build}.wasm`, import.meta.url);
}

function compile(build: Build): WebAssembly.Module {
  let module = modules.get(build);
  if (!module) {
    let bytes: Uint8Array<ArrayBuffer>;
    try {
      bytes = new Uint8Array(readFileSync(wasmUrl(build)));
    } catch (cause) {
      throw new PcpdError(ErrorCodes.MODULE_UNAVAILABLE, `build/${build}.wasm not found: run npm run build`, { cause });
    }
    module = new WebAssembly.Module(bytes);
    modules.set(build, module);
  }
  return module;
}

export class PacketEngine {
  readonly exports: EngineExports;
  readonly slotCount = W.SLOT_COUNT;
  private readonly slots: number;
  private readonly statsAt: number;
  private bytes: Uint8Array;
  private view: DataView;
  private readonly poolNames: string[] = [];

  /** `config`: applied as by reconfigure (default: the schema's defaults); tables come with initEngine. */
  constructor(build: Build = "release", config: Config = defaultConfig()) {
    const instance = new WebAssembly.Instance(compile(build), {});
    this.exports = instance.exports as unknown as EngineExports;
    this.exports._initialize();
    this.slots = this.exports.slotsBase();
    this.statsAt = this.exports.statsBase();
    this.bytes = new Uint8Array(this.exports.memory.buffer);
    this.view = new DataView(this.exports.memory.buffer);
    this.reconfigure(config);
  }

  /** Views are rebuilt when linear memory has grown (its ArrayBuffer is then replaced). */
  private mem(): DataView {
    if (this.view.buffer !== this.exports.memory.buffer) {
      this.bytes = new Uint8Array(this.exports.memory.buffer);
      this.view = new DataView(this.exports.memory.buffer);
    }
    return this.view;
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

  slotAddress(index: number): number {
    return this.slots + index * W.SLOT_SIZE;
  }

  /** Copies one datagram into slot `index` (payload beyond SLOT_DATA_CAP is cut; its length is kept). */
  load(index: number, d: Datagram): void {
    this.loadSlot(index, d.payload, d.source, d.sourcePort, d.ingress, d.overloaded ?? false);
  }

  /** load() without the Datagram object: the UDP listener's per-packet path. */
  loadSlot(index: number, payload: Uint8Array, source: Uint8Array, sourcePort: number, ingress: number, overloaded: boolean): void {
    if (source.length !== 16) throw new PcpdError(ErrorCodes.BAD_DATAGRAM, "source address must be 16 bytes");
    const view = this.mem();
    const at = this.slotAddress(index);
    this.bytes.set(source, at + W.SLOT_SRC_ADDR);
    view.setUint16(at + W.SLOT_SRC_PORT, sourcePort, true);
    view.setUint16(at + W.SLOT_WIRE_LEN, Math.min(payload.length, 0xffff), true);
    view.setUint8(at + W.SLOT_INGRESS, ingress);
    view.setUint8(at + W.SLOT_HOST_FLAGS, overloaded ? W.HOST_OVERLOADED : 0);
    this.bytes.set(payload.length > W.SLOT_DATA_CAP ? payload.subarray(0, W.SLOT_DATA_CAP) : payload, at + W.SLOT_DATA);
  }

  /** The reply of slot `index` (a view into module memory, valid until the slot is reused), or undefined. */
  reply(index: number): Uint8Array | undefined {
    const view = this.mem();
    const at = this.slotAddress(index);
    if (view.getUint8(at + W.SLOT_VERDICT) !== W.VERDICT_REPLY) return undefined;
    return this.bytes.subarray(at + W.SLOT_DATA, at + W.SLOT_DATA + view.getUint16(at + W.SLOT_RESP_LEN, true));
  }

  /** Runs the codec over slots [0, count); returns how many are PARSED (awaiting the engine). */
  processBatch(count: number, epoch: number): number {
    if (count > W.SLOT_COUNT) throw new PcpdError(ErrorCodes.BATCH_TOO_LARGE, `batch of ${count} exceeds ${W.SLOT_COUNT} slots`);
    try {
      return this.exports.processBatch(count, epoch >>> 0);
    } catch (cause) {
      throw new PcpdError(ErrorCodes.ENGINE_TRAPPED, "packet engine trapped; discard this instance", { cause });
    }
  }

  outcome(index: number): SlotOutcome {
    const view = this.mem();
    const at = this.slotAddress(index);
    const length = view.getUint16(at + W.SLOT_RESP_LEN, true);
    return {
      verdict: VERDICTS[view.getUint8(at + W.SLOT_VERDICT)],
      dropReason: view.getUint8(at + W.SLOT_DROP_REASON),
      result: view.getUint16(at + W.SLOT_RESULT, true),
      response: this.bytes.subarray(at + W.SLOT_DATA, at + W.SLOT_DATA + length),
      version: view.getUint8(at + W.SLOT_VERSION),
      opcode: view.getUint8(at + W.SLOT_OPCODE),
      parseFlags: view.getUint16(at + W.SLOT_PARSE_FLAGS, true),
      lifetime: view.getUint32(at + W.SLOT_LIFETIME, true),
      options: view.getUint32(at + W.SLOT_OPTIONS, true),
      filterCount: view.getUint16(at + W.SLOT_FILTER_COUNT, true),
    };
  }

  /** Slot field reader for the engine's parsed record (offsets from abi.ts). */
  slotField16(index: number, field: number): number {
    return this.mem().getUint16(this.slotAddress(index) + field, true);
  }

  /** Wire bytes of slot `index` (request before finishing, reply after). */
  slotData(index: number): Uint8Array {
    const at = this.slotAddress(index) + W.SLOT_DATA;
    this.mem();
    return this.bytes.subarray(at, at + W.SLOT_DATA_CAP);
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
    if (!(portMin >= 1 && portMin <= 65535 && blockSize >= 1 && blocks >= 1 && maxBlocksPerSubscriber >= 1 &&
        maxBlocksPerSubscriber <= W.MAX_BLOCKS_PER_SUBSCRIBER && shards >= 1 && shard < shards && shards <= blocks)) {
      throw new PcpdError(ErrorCodes.BAD_CONFIG, `invalid pool layout: portMin ${portMin}, blockSize ${blockSize}, maxBlocksPerSubscriber ${maxBlocksPerSubscriber} (1..${W.MAX_BLOCKS_PER_SUBSCRIBER}), shard ${shard} of ${shards}`);
    }
    const status = this.applyConfig(c, { ...host, start: now }, W.CFG_PHASE_INIT);
    const { mappings, subscribers, peers, filters, descriptions, requesters, realms } = c.capacity;
    switch (status) {
      case W.APPLY_OK:
        break;
      case W.APPLY_INITIALISED:
        throw new PcpdError(ErrorCodes.BAD_CONFIG, "engine already initialised; build a new instance to resize");
      case W.APPLY_NO_MEMORY:
        throw new PcpdError(ErrorCodes.BAD_CONFIG, `capacity does not fit in WebAssembly memory: maxMappings ${mappings}, maxSubscribers ${subscribers}, maxPeers ${peers}, maxFilters ${filters} (each must be ≥ 1; about 16M mappings at most per engine)`);
      case W.APPLY_DESCRIPTIONS:
        throw new PcpdError(ErrorCodes.BAD_CONFIG, `room for ${descriptions} descriptions does not fit in WebAssembly memory`);
      case W.APPLY_REQUESTERS:
        throw new PcpdError(ErrorCodes.BAD_CONFIG, `room for ${requesters} THIRD_PARTY requesters does not fit in WebAssembly memory`);
      case W.APPLY_REALMS:
        throw new PcpdError(ErrorCodes.BAD_CONFIG, `room for ${realms} realms does not fit in WebAssembly memory`);
      case W.APPLY_POOL_ADDRESS:
        throw new PcpdError(ErrorCodes.BAD_CONFIG, `a pool address is a duplicate or over the limit of ${W.POOL_MAX_ADDRESSES}`);
      default:
        throw new PcpdError(ErrorCodes.BAD_CONFIG, "pool layout refused by the engine"); // checked above; kept as a backstop
    }
    const ids = c.pcp.thirdPartyId;
    if (ids.enabled && ids.ids !== "any") {
      for (const id of ids.ids) if (this.registerRealm(id) === 0) throw new PcpdError(ErrorCodes.BAD_CONFIG, `THIRD_PARTY_ID ${id}: no room (${realms} realms) or longer than ${W.REALM_ID_MAX} bytes`);
    }
  }

  writeScratch(offset: number, bytes: Uint8Array): void {
    this.mem();
    this.bytes.set(bytes, this.exports.scratchBase() + offset);
  }

  /** Codec and engine over slots [0, count); returns the number of replies. */
  serve(count: number, epoch: number, now: number): number {
    if (count > W.SLOT_COUNT) throw new PcpdError(ErrorCodes.BATCH_TOO_LARGE, `batch of ${count} exceeds ${W.SLOT_COUNT} slots`);
    try {
      return this.exports.serveRange(0, count, epoch >>> 0, now >>> 0);
    } catch (cause) {
      throw new PcpdError(ErrorCodes.ENGINE_TRAPPED, "packet engine trapped; discard this instance", { cause });
    }
  }

  /** Gratuitous PCP ANNOUNCE [RFC 6887 §14.1.3] carrying `epoch`. */
  announce(epoch: number): Uint8Array {
    const at = this.exports.scratchBase();
    const n = this.exports.encodeAnnounce(at, epoch >>> 0);
    this.mem();
    return this.bytes.slice(at, at + n);
  }

  /** NAT-PMP external-address announcement [RFC 6886 §3.2.1] for `ipv4` carrying `epoch`. */
  announceNatPmp(epoch: number, ipv4: string): Uint8Array {
    const at = this.exports.scratchBase();
    const a = toAddress16(ipv4);
    const n = this.exports.encodeNatPmpAnnounce(at, epoch >>> 0, ((a[12] << 24) | (a[13] << 16) | (a[14] << 8) | a[15]) >>> 0);
    this.mem();
    return this.bytes.slice(at, at + n);
  }

  expire(now: number, budget = 0xffffffff): number {
    return this.exports.expire(now >>> 0, budget >>> 0);
  }

  /** External address of pool entry `index` (an entry's address never changes). */
  poolAddress(index: number): string {
    let name = this.poolNames[index];
    if (name === undefined) {
      const at = this.exports.poolAddressAt(index);
      this.mem();
      name = this.poolNames[index] = formatAddress16(this.bytes.slice(at, at + 16));
    }
    return name;
  }

  /** External address of every pool entry, by index. */
  poolList(): string[] {
    return Array.from({ length: this.exports.poolSize() }, (_, i) => this.poolAddress(i));
  }

  private decodeEvent(at: number): MappingEvent {
    return readEvent(this.mem(), this.bytes, at, (i) => this.poolAddress(i));
  }

  /** Drops every pending event without decoding it (nobody is listening). */
  discardEvents(): void {
    const x = this.exports;
    x.eventsConsume((x.eventsHead() - x.eventsTail()) >>> 0);
  }

  /** Takes every pending event off the ring. */
  drainEvents(): MappingEvent[] {
    const x = this.exports;
    const out: MappingEvent[] = [];
    const base = x.eventsBase();
    for (let i = x.eventsTail() >>> 0; i !== x.eventsHead() >>> 0; i = (i + 1) >>> 0) {
      out.push(this.decodeEvent(base + (i & (W.EVENT_CAPACITY - 1)) * W.EVENT_SIZE));
    }
    x.eventsConsume(out.length);
    return out;
  }

  /** Takes every pending event off the ring as records (a copy; no pool names, no FILTERs). */
  drainRecords(): MappingRecords {
    const x = this.exports;
    const tail = x.eventsTail() >>> 0;
    const n = (x.eventsHead() - tail) >>> 0;
    const bytes = new Uint8Array(n * W.EVENT_SIZE);
    this.mem();
    const base = x.eventsBase();
    const first = tail & (W.EVENT_CAPACITY - 1);
    const straight = Math.min(n, W.EVENT_CAPACITY - first); // the ring wraps after this many
    bytes.set(this.bytes.subarray(base + first * W.EVENT_SIZE, base + (first + straight) * W.EVENT_SIZE), 0);
    bytes.set(this.bytes.subarray(base, base + (n - straight) * W.EVENT_SIZE), straight * W.EVENT_SIZE);
    x.eventsConsume(n);
    return { bytes };
  }

  /** Copies `n` event-layout records at `at` with the FILTERs of those that have some. */
  private records(at: number, n: number, now: number): MappingRecords {
    this.mem();
    const bytes = this.bytes.slice(at, at + n * W.EVENT_SIZE);
    const view = new DataView(bytes.buffer);
    const filters: Record<number, Filter[]> = {};
    const descriptions: Record<number, string> = {};
    const thirdPartyIds: Record<number, string> = {};
    for (let i = 0; i < n; i++) {
      const m = view.getUint32(i * W.EVENT_SIZE + W.EV_MAPPING, true);
      const list = this.filters(m);
      if (list.length > 0) filters[i] = list;
      const text = this.description(m);
      if (text !== undefined) descriptions[i] = text;
      const id = this.realmIdentifier(view.getUint32(i * W.EVENT_SIZE + W.EV_REALM, true));
      if (id !== undefined) thirdPartyIds[i] = id;
    }
    return { bytes, pool: this.poolList(), now, filters, descriptions, thirdPartyIds };
  }

  /** The live (or held) mapping of an internal endpoint (in a THIRD_PARTY_ID's realm, hex) as records (none or one). */
  lookupRecords(internalAddress: string, protocol: number, internalPort: number, family: 4 | 6, now: number, thirdPartyId?: string): MappingRecords {
    const realm = thirdPartyId === undefined ? 0 : this.realmOf(thirdPartyId);
    if (thirdPartyId !== undefined && realm === 0) return this.records(this.exports.scratchBase(), 0, now);
    this.writeScratch(0, toAddress16(internalAddress));
    return this.recordOf(this.exports.lookupMapping(protocol, internalPort, family === 6 ? 1 : 0, realm), now);
  }

  /** The mapping (live or held) owning an external address:port as records (none or one). */
  lookupExternalRecords(externalAddress: string, protocol: number, externalPort: number, now: number): MappingRecords {
    const pool = this.poolList().indexOf(externalAddress);
    return this.recordOf(pool < 0 ? 0 : this.exports.lookupExternal(pool, protocol, externalPort), now);
  }

  private recordOf(m: number, now: number): MappingRecords {
    const found = m !== 0 && this.exports.describeMapping(m) !== 0;
    return this.records(this.exports.scratchBase(), found ? 1 : 0, now);
  }

  /**
   * A listing page selected inside the engine: mappings with record ids from `from` on,
   * visiting at most `scan` ids, at most `limit` (≤ LIST_MAX) kept; `next` is the id to go
   * on from (0 when the table is done).
   */
  listRecords(from: number, limit: number, scan: number, select: RecordSelector, now: number): { records: MappingRecords; next: number } {
    let sel = 0;
    if (select.internalAddress !== undefined) {
      this.writeScratch(0, toAddress16(select.internalAddress));
      sel |= W.LISTSEL_INTERNAL;
    }
    if (select.pool !== undefined) sel |= W.LISTSEL_POOL;
    if (select.protocol !== undefined) sel |= W.LISTSEL_PROTOCOL;
    if (select.kind !== undefined) sel |= W.LISTSEL_KIND;
    const x = this.exports;
    const n = x.listScan(Math.max(1, from), scan, Math.min(limit, W.LIST_MAX), sel, select.protocol ?? 0, select.pool ?? 0, LIST_KINDS[select.kind ?? "dynamic"]);
    return { records: this.records(x.listBase(), n, now), next: x.listNext() };
  }

  /** The mapping record `m` in event form (kind "none"), or undefined. */
  describe(m: number): MappingEvent | undefined {
    if (!m || !this.exports.describeMapping(m)) return undefined;
    return this.decodeEvent(this.exports.scratchBase());
  }

  /** The live (or held) mapping of an internal endpoint. */
  lookup(internalAddress: string, protocol: number, internalPort: number, family: 4 | 6 = 4): MappingEvent | undefined {
    this.writeScratch(0, toAddress16(internalAddress));
    return this.describe(this.exports.lookupMapping(protocol, internalPort, family === 6 ? 1 : 0, 0));
  }

  /** Free blocks per pool address (gauge for pool usage). */
  poolUsage(): PoolAddress[] {
    const x = this.exports;
    return Array.from({ length: x.poolSize() }, (_, i) => ({ address: this.poolAddress(i), freeBlocks: x.poolFreeBlocks(i), retired: x.poolIsRetired(i) !== 0 }));
  }

  /** Adds an external address to the running pool (or brings a retired one back); false if it is already in service or the pool is full. */
  addPoolAddress(address: string): boolean {
    this.writeScratch(0, toAddress16(address));
    return this.exports.poolAdd() >= 0;
  }

  /**
   * Retires an external address: nothing new is leased there, its holds and static
   * mappings end; returns how many mappings rehome() has to move (0 if unknown or retired).
   */
  retirePoolAddress(address: string, now: number): number {
    const i = this.poolUsage().findIndex((p) => p.address === address && !p.retired);
    return i < 0 ? 0 : this.exports.poolRetire(i, now >>> 0);
  }

  /**
   * Moves up to `budget` mappings off the retired address; returns the Mapping Update
   * messages of each one moved, and whether mappings remain.
   */
  rehome(now: number, epoch: number, budget: number): { updates: { mapping: number; messages: Unsolicited[]; from: { protocol: number; pool: number; port: number } }[]; done: boolean } {
    const x = this.exports;
    const updates = [];
    for (let k = 0; k < budget; k++) {
      const n = x.rehomeNext(now >>> 0, epoch >>> 0) >>> 0;
      if (n === 0xffffffff) return { updates, done: true };
      const view = this.mem();
      const messages: Unsolicited[] = [];
      for (let i = 0; i < n; i++) {
        const at = this.slotAddress(i);
        const length = view.getUint16(at + W.SLOT_RESP_LEN, true);
        messages.push({
          address: formatAddress16(this.bytes.slice(at + W.SLOT_SRC_ADDR, at + W.SLOT_SRC_ADDR + 16)),
          port: view.getUint16(at + W.SLOT_SRC_PORT, true),
          payload: this.bytes.slice(at + W.SLOT_DATA, at + W.SLOT_DATA + length),
        });
      }
      const from = x.rehomeFrom() >>> 0;
      updates.push({ mapping: x.rehomeMapping(), messages, from: { protocol: from >>> 24, pool: (from >>> 16) & 0xff, port: from & 0xffff } });
    }
    return { updates, done: false };
  }

  /** The mapping (live or held) that owns an external address:port, or undefined. */
  lookupExternal(externalAddress: string, protocol: number, externalPort: number): MappingEvent | undefined {
    const pool = this.poolUsage().findIndex((p) => p.address === externalAddress);
    return pool < 0 ? undefined : this.describe(this.exports.lookupExternal(pool, protocol, externalPort));
  }

  /** Registers a THIRD_PARTY_ID (hex); its realm number, 0 if it does not fit. */
  registerRealm(hex: string): number {
    const length = this.scratchRealm(hex);
    return length === 0 ? 0 : this.exports.registerRealm(length);
  }

  /** The realm of a THIRD_PARTY_ID (hex) without registering it; 0 if unknown. */
  realmOf(hex: string): number {
    const length = this.scratchRealm(hex);
    return length === 0 ? 0 : this.exports.findRealm(length);
  }

  /** A THIRD_PARTY_ID in hex written to scratch; its length, 0 if it is not 1–REALM_ID_MAX bytes of hex. */
  private scratchRealm(hex: string): number {
    const id = Buffer.from(hex, "hex");
    if (id.length === 0 || id.length > W.REALM_ID_MAX || id.toString("hex") !== hex.toLowerCase()) return 0;
    this.writeScratch(0, id);
    return id.length;
  }

  /** Realm `r`'s THIRD_PARTY_ID as hex (undefined: realm 0). */
  realmIdentifier(r: number): string | undefined {
    const n = r === 0 ? 0 : this.exports.realmIdentifier(r);
    if (n === 0) return undefined;
    const at = this.exports.scratchBase();
    this.mem();
    return Buffer.from(this.bytes.subarray(at, at + n)).toString("hex");
  }

  /** Mapping `m`'s DESCRIPTION [RFC 7220], or undefined. */
  description(m: number): string | undefined {
    const n = this.exports.mappingDescription(m);
    if (n === 0) return undefined;
    const at = this.exports.descriptionBase();
    this.mem();
    return new TextDecoder().decode(this.bytes.subarray(at, at + n));
  }

  /** FILTERs of mapping `m` as the dataplane must enforce them. */
  filters(m: number): { prefixLength: number; port: number; address: string }[] {
    const out = [];
    for (let k = 0; this.exports.mappingFilter(m, k); k++) {
      const at = this.exports.scratchBase();
      const view = this.mem();
      out.push({
        prefixLength: view.getUint8(at),
        port: view.getUint16(at + 2, true),
        address: formatAddress16(this.bytes.slice(at + 4, at + 20)),
      });
    }
    return out;
  }

  addStatic(internalAddress: string, protocol: number, internalPort: number, externalAddress: string, externalPort: number): number {
    this.writeScratch(0, toAddress16(internalAddress));
    this.writeScratch(16, toAddress16(externalAddress));
    return this.exports.addStatic(protocol, internalPort, externalPort);
  }

  /**
   * Mirror of another shard's static mapping (answered here as the owner answers from the
   * static; see assembly/engine.ts): a live mapping of the endpoint refuses it
   * (CANNOT_PROVIDE_EXTERNAL), or with `replace` is ended. Returns a PCP result code.
   */
  addMirror(internalAddress: string, protocol: number, internalPort: number, externalAddress: string, externalPort: number, replace = false): number {
    this.writeScratch(0, toAddress16(internalAddress));
    this.writeScratch(16, toAddress16(externalAddress));
    return this.exports.mirrorAdd(protocol, internalPort, externalPort, replace ? 1 : 0);
  }

  /** Drops every static mirror. */
  clearMirrors(): void {
    this.exports.mirrorsClear();
  }

  mirrorCount(): number {
    return this.exports.mirrorCount();
  }

  /** Removes the endpoint's static mapping and its mirror here (either is a success); `hold` false: no hold-down for its port. */
  removeStatic(internalAddress: string, protocol: number, internalPort: number, family: 4 | 6 = 4, hold = true): number {
    this.writeScratch(0, toAddress16(internalAddress));
    return this.exports.removeStatic(protocol, internalPort, family === 6 ? 1 : 0, hold ? 1 : 0);
  }

  /** Ends every live mapping of a subscriber (in a THIRD_PARTY_ID's realm, hex); returns how many. */
  deleteSubscriber(internalAddress: string, thirdPartyId?: string): number {
    const realm = thirdPartyId === undefined ? 0 : this.realmOf(thirdPartyId);
    if (thirdPartyId !== undefined && realm === 0) return 0;
    this.writeScratch(0, toAddress16(internalAddress));
    return this.exports.deleteSubscriber(realm);
  }

  /** A subscriber's mappings and blocks (in a THIRD_PARTY_ID's realm, hex). */
  subscriberUsage(internalAddress: string, thirdPartyId?: string): { mappings: number; blocks: number } {
    const realm = thirdPartyId === undefined ? 0 : this.realmOf(thirdPartyId);
    if (thirdPartyId !== undefined && realm === 0) return { mappings: 0, blocks: 0 };
    this.writeScratch(0, toAddress16(internalAddress));
    return { mappings: this.exports.subscriberMappings(realm), blocks: this.exports.subscriberBlocks(realm) };
  }

  engineStats(): Record<string, bigint> {
    return readEngineStats(this.mem(), this.statsAt);
  }

  stats(): CodecStats {
    return readCodecStats(this.mem(), this.statsAt);
  }

  // ---- Persistence (src/persist/): records in the PREC_* layout; `wallOffset` = wall-clock seconds at engine time 0 ----

  private persisted(): Uint8Array {
    const at = this.exports.persistBase();
    this.mem();
    return this.bytes.slice(at, at + this.exports.persistBytes());
  }

  /** Journal records for every pending event (the ring is left as it is); copies, each ≤ PERSIST_BUFFER bytes. */
  persistPending(wallOffset: number): Uint8Array[] {
    const x = this.exports;
    const pending = (x.eventsHead() - x.eventsTail()) >>> 0;
    const out: Uint8Array[] = [];
    for (let done = 0; done < pending; ) {
      const n = x.persistEvents(done, pending - done, wallOffset >>> 0);
      if (n === 0) throw new PcpdError(ErrorCodes.ENGINE_TRAPPED, "a mapping record does not fit the persistence buffer");
      out.push(this.persisted());
      done += n;
    }
    return out;
  }

  /** The end of an external key (pool index, protocol, port): a record that moved away from it. */
  persistGone(pool: number, protocol: number, port: number): Uint8Array {
    this.exports.persistGone(pool, protocol, port);
    return this.persisted();
  }

  /** Snapshot chunk: records in use from id `from`, visiting at most `budget` ids; `next` 0 when the table is done. */
  persistTable(from: number, budget: number, wallOffset: number): { bytes: Uint8Array; next: number } {
    this.exports.persistTable(from, budget, wallOffset >>> 0);
    return { bytes: this.persisted(), next: this.exports.persistNext() };
  }

  /** Takes records back (at most PERSIST_BUFFER bytes of whole records); returns the bytes consumed (fewer: a malformed record). */
  restore(records: Uint8Array, wallOffset: number, now: number): number {
    if (records.length > W.PERSIST_BUFFER) throw new PcpdError(ErrorCodes.BAD_DATAGRAM, `${records.length} bytes of records exceed ${W.PERSIST_BUFFER}`);
    const at = this.exports.persistBase();
    this.mem();
    this.bytes.set(records, at);
    return this.exports.restoreRecords(records.length, wallOffset >>> 0, now >>> 0);
  }

  /** Records restore() did not take back, by reason. */
  restoreDropped(): Record<"expired" | "notInPool" | "conflict" | "noResources" | "malformed", number> {
    const x = this.exports;
    return {
      expired: x.restoreDropped(W.RESTORE_EXPIRED),
      notInPool: x.restoreDropped(W.RESTORE_NOT_IN_POOL),
      conflict: x.restoreDropped(W.RESTORE_CONFLICT),
      noResources: x.restoreDropped(W.RESTORE_NO_RESOURCES),
      malformed: x.restoreDropped(W.RESTORE_MALFORMED),
    };
  }

  /** Whether slot `index`'s reply must wait until its mapping is on disk (a check-pointed request). */
  replyWaitsForDisk(index: number): boolean {
    return (this.mem().getUint8(this.slotAddress(index) + W.SLOT_HOST_FLAGS) & W.HOST_CHECKPOINT) !== 0;
  }

  /** While down, every MAP, PEER and NAT-PMP request is answered NETWORK_FAILURE. */
  setDataplaneDown(down: boolean): void {
    this.exports.setDataplaneDown(down ? 1 : 0);
  }

  /** The counters block (STATS_SIZE bytes) as a view into module memory, for copying. */
  statsBytes(): Uint8Array {
    this.mem();
    return this.bytes.subarray(this.statsAt, this.statsAt + W.STATS_SIZE);
  }
}

let defaults: Config | undefined;

/** The schema's defaults (an empty document), parsed once. */
function defaultConfig(): Config {
  return (defaults ??= parseConfig({}));
}
