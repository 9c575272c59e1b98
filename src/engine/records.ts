// Record decoding: the layouts the module writes for the host (event-layout mapping
// records, counter blocks) read into objects. Pure functions over bytes, so the packet
// thread copies records and whoever reads them decodes (src/server/, src/control/).
import * as W from "../wire.generated.js";
import { formatAddress16 } from "../net/address.js";

export interface MappingEvent {
  kind: "create" | "refresh" | "delete" | "expire" | "release" | "update" | "block-lease" | "block-release" | "none";
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
  /** Remote peer of a PEER [RFC 6887 §12]: the one the event is about, else the latest; port 0 = none. */
  peerAddress: string;
  peerPort: number;
  /** How many PEER records (remote peers) the mapping has. */
  peerCount: number;
}
export const EVENT_KINDS: MappingEvent["kind"][] = ["none", "create", "refresh", "delete", "expire", "release", "update", "block-lease", "block-release"];
/** Port-block records (EVENT_BLOCK_*): externalPort is the block's first port, internalPort its size. */
export const BLOCK_KINDS: ReadonlySet<string> = new Set(["block-lease", "block-release"]);

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

export const LIST_KINDS = { dynamic: W.LISTKIND_DYNAMIC, static: W.LISTKIND_STATIC, held: W.LISTKIND_HELD } as const;

/** One event-layout record at `at`; `pool` names pool indexes. */
export function readEvent(view: DataView, bytes: Uint8Array, at: number, pool: (index: number) => string): MappingEvent {
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
    peerAddress: formatAddress16(bytes.subarray(at + W.EV_PEER_ADDR, at + W.EV_PEER_ADDR + 16)),
    peerPort: view.getUint16(at + W.EV_PEER_PORT, true),
    peerCount: view.getUint16(at + W.EV_PEER_COUNT, true),
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
  for (let at = 0; at + W.EVENT_SIZE <= r.bytes.length; at += W.EVENT_SIZE)
    out.push({ kind: view.getUint8(at + W.EV_KIND), mapping: view.getUint32(at + W.EV_MAPPING, true) });
  return out;
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
    requestersShared: read(W.STATS_REQUESTERS_SHARED),
    requestersUnrecorded: read(W.STATS_REQUESTERS_UNRECORDED),
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
