// Log records for traceability (docs/logging.md): what a carrier needs to answer "who held
// external address:port at time T" — one record per mapping creation, deletion, expiry and
// re-homing, or (port-block logging, RFC 7422) one per port-block lease and release.
import { BLOCK_KINDS, type MappingEvent } from "../engine/records.js";
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

/** Whether a sink in `mode` logs an event of `kind`. */
export function logged(mode: RecordMode, kind: string): boolean {
  return mode === "blocks" ? BLOCK_KINDS.has(kind) : MAPPING_EVENTS.has(kind);
}

/** Remote-peer fields, present once the event layout carries them. */
type PeerFields = { peerAddress?: string; peerPort?: number };

/** The log record of event `e` (one `logged` by some sink), received at wall time `time`. */
export function toLogRecord(e: MappingEvent & PeerFields, time: number, thirdPartyId?: string): LogRecord {
  const base = { time, internalAddress: e.internalAddress, realm: e.realm, externalAddress: e.externalAddress, ...(thirdPartyId ? { thirdPartyId } : {}) };
  if (BLOCK_KINDS.has(e.kind)) {
    // Block records: externalPort the first port, internalPort the block's size (abi.ts EVENT_BLOCK_*).
    const size = Math.max(1, e.internalPort);
    return {
      ...base,
      event: e.kind as LogEventName,
      type: "block",
      protocol: 0,
      internalPort: 0,
      externalPort: e.externalPort,
      lastPort: e.externalPort + size - 1,
      lifetime: 0,
      source: "pcp",
    };
  }
  const inbound = (e.flags & W.MAPF_INBOUND) !== 0;
  const ending = e.kind === "delete" || e.kind === "expire";
  const expiry = Math.max(e.mapExpiry, e.outExpiry);
  const out: LogRecord = {
    ...base,
    event: e.kind as LogEventName,
    type: inbound ? "map" : "peer",
    protocol: e.protocol,
    internalPort: e.internalPort,
    externalPort: e.externalPort,
    lifetime: ending || expiry === 0 ? 0 : Math.max(0, expiry - e.time),
    source: e.flags & W.MAPF_STATIC ? "static" : e.flags & W.MAPF_NATPMP ? "natpmp" : "pcp",
  };
  if (e.peerPort && e.peerAddress) {
    out.remoteAddress = e.peerAddress;
    out.remotePort = e.peerPort;
  }
  return out;
}

export const PROTOCOL_NAMES: Record<number, string> = { 0: "all", 6: "tcp", 17: "udp", 132: "sctp", 33: "dccp" };
