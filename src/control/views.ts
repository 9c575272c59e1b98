// What the control channel shows of the server's state: mappings decoded from a shard's
// raw records, event notices, the redacted configuration, and the listing cursor.
import * as W from "../wire.generated.js";
import type { Config } from "../config/schema.js";
import { mappingKind } from "../shard/tasks.js";
import { decodeRecords, type Filter, type MappingEvent, type MappingRecords } from "../engine/packet-engine.js";
import { RpcError } from "../errors.js";
import { RpcErrors, type Mapping, type MappingEventNotice } from "./protocol.js";

function toMapping(shard: number, m: MappingEvent, filters: Filter[], now: number, description?: string, thirdPartyId?: string): Mapping {
  return {
    shard,
    id: m.mapping,
    kind: mappingKind(m.flags),
    protocol: m.protocol,
    family: m.family,
    internalAddress: m.internalAddress,
    internalPort: m.internalPort,
    externalAddress: m.externalAddress,
    externalPort: m.externalPort,
    inbound: (m.flags & (W.MAPF_INBOUND | W.MAPF_STATIC)) !== 0, // a static mapping forwards inbound traffic
    outbound: (m.flags & W.MAPF_OUTBOUND) !== 0,
    natPmp: (m.flags & W.MAPF_NATPMP) !== 0,
    thirdParty: (m.flags & W.MAPF_THIRD_PARTY) !== 0,
    preferFailure: (m.flags & W.MAPF_PREFER_FAILURE) !== 0,
    mapExpiry: m.mapExpiry,
    outExpiry: m.outExpiry,
    expiresIn: m.flags & W.MAPF_STATIC ? null : Math.max(0, Math.max(m.mapExpiry, m.outExpiry) - now),
    filters,
    ...(description !== undefined ? { description } : {}),
    ...(thirdPartyId !== undefined ? { thirdPartyId } : {}),
    ...(m.peerCount > 0 ? { peer: { address: m.peerAddress, port: m.peerPort, count: m.peerCount } } : {}),
  };
}

/** Mappings from a shard's records (a listing page or a lookup). */
export function toMappings(shard: number, r: MappingRecords): Mapping[] {
  return decodeRecords(r).map((m, i) => toMapping(shard, m, r.filters?.[i] ?? [], r.now ?? m.time, r.descriptions?.[i], r.thirdPartyIds?.[i]));
}

export function toNotice(shard: number, e: MappingEvent): MappingEventNotice {
  const { filters: _none, shard: _shard, expiresIn: _later, ...mapping } = toMapping(shard, e, [], e.time);
  return { shard, kind: e.kind as MappingEventNotice["kind"], mapping, time: e.time };
}

/**
 * toNotice's JSON text, written directly: the event fan-out's per-event work (several
 * times cheaper than building the objects and stringifying them). Same fields in the same
 * order; test/control/views.test.ts holds the two equal, so a field added to the notice
 * must be added here too. Addresses are this server's own formatting (digits, hex, dots,
 * colons): nothing to escape.
 */
export function noticeJson(shard: number, e: MappingEvent): string {
  const f = e.flags;
  return (
    `{"shard":${shard},"kind":"${e.kind}","mapping":{"id":${e.mapping},"kind":"${mappingKind(f)}","protocol":${e.protocol},"family":${e.family},` +
    `"internalAddress":"${e.internalAddress}","internalPort":${e.internalPort},"externalAddress":"${e.externalAddress}","externalPort":${e.externalPort},` +
    `"inbound":${(f & (W.MAPF_INBOUND | W.MAPF_STATIC)) !== 0},"outbound":${(f & W.MAPF_OUTBOUND) !== 0},"natPmp":${(f & W.MAPF_NATPMP) !== 0},` +
    `"thirdParty":${(f & W.MAPF_THIRD_PARTY) !== 0},"preferFailure":${(f & W.MAPF_PREFER_FAILURE) !== 0},"mapExpiry":${e.mapExpiry},"outExpiry":${e.outExpiry}},"time":${e.time}}`
  );
}

/** The configuration as shown to operators: secrets replaced. */
export function redacted(c: Config): unknown {
  return {
    ...c,
    control: {
      ...c.control,
      tokens: c.control.tokens.map((t) => ({ role: t.role, ...(t.tokenEnv ? { tokenEnv: t.tokenEnv } : { token: "<redacted>" }) })),
      tls: c.control.tls ? { ...c.control.tls, passphrase: c.control.tls.passphrase ? "<redacted>" : undefined } : undefined,
    },
  };
}

/** A listing position: the shard, and the record to go on from in it. */
export const encodeCursor = (shard: number, record: number) => `${shard}:${record}`;
export function decodeCursor(cursor: string | undefined, shards: number): { shard: number; record: number } {
  if (cursor === undefined) return { shard: 0, record: 1 };
  const m = /^(\d+):(\d+)$/.exec(cursor);
  if (!m || Number(m[1]) >= shards) throw new RpcError(RpcErrors.INVALID_PARAMS, "cursor: not a cursor returned by mappings.list");
  return { shard: Number(m[1]), record: Number(m[2]) };
}
