// The configuration region (CFG section of assembly/abi.ts) from a parsed Config. The
// generated part (src/config-region.generated.ts) copies every field whose CFG line names
// a Config path; this part writes the `host` fields: values derived from several settings
// (option bits, bitmaps, pool addresses, PREFIX64 bytes) and the per-shard ones (seed,
// shard index and count, start time), which are not in the document.
import * as W from "../wire.generated.js";
import { writeConfigFields } from "../config-region.generated.js";
import { poolAddresses, type Config } from "./schema.js";
import { encodePrefix64Options } from "../net/prefix64.js";
import { toAddress16 } from "../net/address.js";

/** Per-shard and per-instance values that are not in the configuration document. */
export interface HostValues {
  /** PRNG seed for block and port choice (0 = fixed default; the server passes a random one). */
  seed?: bigint;
  /** This engine leases only blocks b with b % shards == shard (one shard per engine worker). */
  shard?: number;
  shards?: number;
  /** Engine time at start (set by initEngine). */
  start?: number;
  /** Prefetch of the next slot's mapping while serving: 0 off, 1 on, 2 auto (default; benchmarks compare the others). */
  prefetch?: 0 | 1 | 2;
  /**
   * OPTBIT_* mask instead of the one the pcp.* switches give: for codec tests of masks no
   * document can express (PREFIX64 processed with no prefix configured).
   */
  options?: number;
}

/** OPTBIT_* of the options this server processes; others behave as unknown options. */
export function enabledOptions(c: Config): number {
  let options = 0;
  if (c.pcp.thirdParty) options |= W.OPTBIT_THIRD_PARTY;
  if (c.pcp.preferFailure) options |= W.OPTBIT_PREFER_FAILURE;
  if (c.pcp.filter) options |= W.OPTBIT_FILTER;
  if (c.pcp.prefix64.length > 0) options |= W.OPTBIT_PREFIX64;
  if (c.pcp.description) options |= W.OPTBIT_DESCRIPTION;
  if (c.pcp.checkpointRequired) options |= W.OPTBIT_CHECKPOINT_REQUIRED;
  if (c.pcp.thirdPartyId.enabled) options |= W.OPTBIT_THIRD_PARTY_ID;
  if (c.pcp.portSet.enabled) options |= W.OPTBIT_PORT_SET;
  return options;
}

function setBit(bytes: Uint8Array, at: number, n: number): void {
  bytes[at + (n >> 3)] |= 1 << (n & 7);
}

/** The region (CFG_SIZE bytes) for `c`; throws for what does not fit it (pool addresses, PREFIX64 bytes). */
export function encodeConfig(c: Config, host: HostValues = {}): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(W.CFG_SIZE);
  const view = new DataView(bytes.buffer);
  writeConfigFields(view, 0, c);
  view.setUint32(W.CFG_ENABLED_OPTIONS, host.options ?? enabledOptions(c), true);
  view.setUint32(W.CFG_PORT_SET_MAX, c.pcp.portSet.enabled ? c.pcp.portSet.maxSize : 1, true);
  view.setUint8(W.CFG_COALESCE_REFRESHES, !c.persistence.enabled || c.persistence.refreshes === "coalesced" ? 1 : 0);
  view.setUint8(W.CFG_PREFETCH_MODE, host.prefetch ?? 2);
  // Port-block records only when a logging sink logs blocks (they cost event-ring space otherwise).
  const { syslog, ipfix } = c.logging;
  view.setUint8(W.CFG_BLOCK_EVENTS, (syslog.enabled && syslog.records === "blocks") || (ipfix.enabled && ipfix.records === "blocks") ? 1 : 0);
  // Check-pointing needs somewhere durable to put the mapping: the disk or the HA stream [RFC 7767 §3].
  view.setUint8(W.CFG_CHECKPOINTS_ON, c.persistence.enabled || c.ha.enabled ? 1 : 0);
  view.setUint32(W.CFG_MAX_REALMS, c.pcp.thirdPartyId.enabled ? c.capacity.realms : 0, true);
  view.setUint8(W.CFG_ANY_REALM, c.pcp.thirdPartyId.ids === "any" ? 1 : 0);
  view.setUint32(W.CFG_SHARD_COUNT, host.shards ?? 1, true);
  view.setUint32(W.CFG_SHARD_INDEX, host.shard ?? 0, true);
  view.setUint32(W.CFG_START_TIME, (host.start ?? 0) >>> 0, true);
  const activity = c.dataplane.activity; // only a dataplane that can answer turns tracking on
  const tracking = activity.enabled && c.dataplane.backend !== "none";
  view.setUint32(W.CFG_ACTIVITY_IDLE_UDP, tracking ? activity.udpIdle : 0, true);
  view.setUint32(W.CFG_ACTIVITY_IDLE_TCP, tracking ? activity.tcpIdle : 0, true);
  view.setUint32(W.CFG_ACTIVITY_WAIT, activity.waitSeconds, true);
  view.setBigUint64(W.CFG_SEED, BigInt.asUintN(64, host.seed ?? 0n), true);
  for (const p of c.protocols) setBit(bytes, W.CFG_PROTOCOLS, p & 0xff);
  for (const port of c.pool.excludedPorts) setBit(bytes, W.CFG_EXCLUDED, port & 0xffff);
  const prefix64 = encodePrefix64Options(c.pcp.prefix64);
  view.setUint32(W.CFG_PREFIX64_LENGTH, prefix64.length, true);
  bytes.set(prefix64, W.CFG_PREFIX64);
  const pool = poolAddresses(c.pool.addresses);
  view.setUint32(W.CFG_POOL_COUNT, pool.length, true);
  for (const [i, a] of pool.entries()) bytes.set(toAddress16(a), W.CFG_POOL + 16 * i);
  return bytes;
}
