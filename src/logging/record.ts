// Log records for traceability (docs/logging.md): what a carrier needs to answer "who held
// external address:port at time T" — one record per mapping creation, deletion, expiry and
// re-homing, or (port-block logging, RFC 7422) one per port-block lease and release.
import { BLOCK_KINDS, EVENT_KINDS } from "../engine/records.js";
import { formatAddress16 } from "../net/address.js";
import type { Config } from "../config/schema.js";
import * as W from "../wire.generated.js";

export type LogEventName = "create" | "delete" | "expire" | "update" | "block-lease" | "block-release";

export interface LogRecord {
  event: LogEventName;
  /** Wall-clock milliseconds when the main thread received the event (within one batch of it). */
  time: number;
  /** MAP (inbound), PEER (outbound only) or a port block. */
  type: "map" | "peer" | "block";
  /** IP protocol number (0 for a block: every protocol). */
  protocol: number;
  internalAddress: string;
  /** The subscriber's THIRD_PARTY_ID realm identifier (hex), if in one [RFC 7843]. */
  thirdPartyId?: string;
  /** The engine's realm index for it (0: none); IPFIX vrfId. */
  realm: number;
  internalPort: number;
  externalAddress: string;
  /** The mapping's external port; for a block its first port. */
  externalPort: number;
  /** For a block: its last port. */
  lastPort?: number;
  /** Seconds left at the event (0 for endings and blocks). */
  lifetime: number;
  /** A PEER's remote peer [RFC 6887 §12], when the event layout carries it. */
  remoteAddress?: string;
  remotePort?: number;
  /** How the mapping was made. */
  source: "pcp" | "natpmp" | "static";
}

/** What a sink logs: per-mapping events or port blocks (logging.*.records). */
export type RecordMode = "mappings" | "blocks";

const MAPPING_EVENTS: ReadonlySet<string> = new Set(["create", "delete", "expire", "update"]);

const EVENT_CODES: Record<LogEventName, number> = {
  create: W.EVENT_CREATE,
  delete: W.EVENT_DELETE,
  expire: W.EVENT_EXPIRE,
  update: W.EVENT_UPDATE,
  "block-lease": W.EVENT_BLOCK_LEASE,
  "block-release": W.EVENT_BLOCK_RELEASE,
};

/**
 * The EVENT_* kinds (a bit each) some enabled sink logs: the only records a logged shard
 * copies and posts for the log (src/shard/shard.ts), so refreshes never leave its thread.
 */
export function loggedKinds(c: Config["logging"]): number {
  let bits = 0;
  for (const sink of [c.syslog, c.ipfix])
    if (sink.enabled) for (const [kind, code] of Object.entries(EVENT_CODES)) if (logged(sink.records, kind)) bits |= 1 << code;
  return bits;
}

/** Whether a sink in `mode` logs an event of `kind`. */
export function logged(mode: RecordMode, kind: string): boolean {
  return mode === "blocks" ? BLOCK_KINDS.has(kind) : MAPPING_EVENTS.has(kind);
}

/**
 * The log record of the event-layout record at `at` (one `logged` by some sink), received
 * at wall time `time`, read from the bytes (no decoded event in between: only the fields a
 * log record has, the remote peer formatted only when there is one). Every record has
 * every field, in one order (absent ones undefined): one object shape for the whole log,
 * so the sinks' reads stay monomorphic.
 */
export function logRecordAt(view: DataView, bytes: Uint8Array, at: number, pool: (index: number) => string, time: number, thirdPartyId?: string): LogRecord {
  const event = EVENT_KINDS[view.getUint8(at + W.EV_KIND)] as LogEventName;
  const internalAddress = addressAt(bytes, at + W.EV_INTERNAL_ADDR);
  const externalAddress = pool(view.getUint16(at + W.EV_POOL_INDEX, true));
  const externalPort = view.getUint16(at + W.EV_EXTERNAL_PORT, true);
  const realm = view.getUint32(at + W.EV_REALM, true);
  const id = thirdPartyId || undefined;
  if (BLOCK_KINDS.has(event)) {
    // Block records: externalPort the first port, internalPort the block's size (abi.ts EVENT_BLOCK_*).
    const size = Math.max(1, view.getUint16(at + W.EV_INTERNAL_PORT, true));
    return record(
      event,
      time,
      "block",
      0,
      internalAddress,
      id,
      realm,
      0,
      externalAddress,
      externalPort,
      externalPort + size - 1,
      0,
      undefined,
      undefined,
      "pcp",
    );
  }
  const flags = view.getUint8(at + W.EV_FLAGS);
  const ending = event === "delete" || event === "expire";
  const expiry = Math.max(view.getUint32(at + W.EV_MAP_EXPIRY, true), view.getUint32(at + W.EV_OUT_EXPIRY, true));
  const lifetime = ending || expiry === 0 ? 0 : Math.max(0, expiry - view.getUint32(at + W.EV_TIME, true));
  // A PEER's remote peer [RFC 6887 §12]: zeros (port 0) when the mapping has none.
  const peerPort = view.getUint16(at + W.EV_PEER_PORT, true);
  const peer = peerPort === 0 ? undefined : addressAt(bytes, at + W.EV_PEER_ADDR);
  return record(
    event,
    time,
    (flags & W.MAPF_INBOUND) !== 0 ? "map" : "peer",
    view.getUint8(at + W.EV_PROTOCOL),
    internalAddress,
    id,
    realm,
    view.getUint16(at + W.EV_INTERNAL_PORT, true),
    externalAddress,
    externalPort,
    undefined,
    lifetime,
    peer,
    peer === undefined ? undefined : peerPort,
    flags & W.MAPF_STATIC ? "static" : flags & W.MAPF_NATPMP ? "natpmp" : "pcp",
  );
}

/** The 16-byte address at `at` as text (formatAddress16); an IPv4 one without a view allocated per record. */
function addressAt(bytes: Uint8Array, at: number): string {
  let v4 = bytes[at + 10] === 0xff && bytes[at + 11] === 0xff;
  for (let i = 0; i < 10 && v4; i++) v4 = bytes[at + i] === 0;
  return v4 ? `${bytes[at + 12]}.${bytes[at + 13]}.${bytes[at + 14]}.${bytes[at + 15]}` : formatAddress16(bytes.subarray(at, at + 16));
}

function record(
  event: LogEventName,
  time: number,
  type: LogRecord["type"],
  protocol: number,
  internalAddress: string,
  thirdPartyId: string | undefined,
  realm: number,
  internalPort: number,
  externalAddress: string,
  externalPort: number,
  lastPort: number | undefined,
  lifetime: number,
  remoteAddress: string | undefined,
  remotePort: number | undefined,
  source: LogRecord["source"],
): LogRecord {
  return {
    event,
    time,
    type,
    protocol,
    internalAddress,
    thirdPartyId,
    realm,
    internalPort,
    externalAddress,
    externalPort,
    lastPort,
    lifetime,
    remoteAddress,
    remotePort,
    source,
  };
}

export const PROTOCOL_NAMES: Record<number, string> = { 0: "all", 6: "tcp", 17: "udp", 132: "sctp", 33: "dccp" };
