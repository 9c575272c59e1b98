// Methods on mappings and subscribers. Lookups and listings are tasks on a shard's worker
// that visit a bounded number of records and return raw records, decoded here (views.ts);
// changes of static mappings run one at a time (server.staticChange) so that the mirror
// re-synchronisation never interleaves with one.
import { isIPv6 } from "node:net";
import * as W from "../../wire.generated.js";
import { RpcError } from "../../errors.js";
import { PCP_RESULT_LABELS } from "../metrics.js";
import { RpcErrors, type Mapping } from "../protocol.js";
import { decodeCursor, encodeCursor, toMappings } from "../views.js";
import type { Handlers, MethodContext } from "./context.js";

type MappingMethods = Pick<
  Handlers,
  "mappings.list" | "mappings.get" | "mappings.addStatic" | "mappings.removeStatic" | "subscribers.usage" | "subscribers.deleteMappings"
>;

const RESULT_NAMES = new Map(PCP_RESULT_LABELS);
const refused = (result: number, why = "") => new RpcError(RpcErrors.REFUSED, `refused: ${RESULT_NAMES.get(result) ?? result}${why}`, { result });

/** Shard tasks one mappings.list call may run (each a bounded scan, src/shard/shard.ts). */
const LIST_TASKS = 16;

export function mappingMethods({ server }: MethodContext): MappingMethods {
  const shards = server.shardEndpoints.length;
  const everyShard = server.everyShard;
  return {
    "mappings.list": async (p) => {
      let { shard, record } = decodeCursor(p.cursor, shards);
      const out: Mapping[] = [];
      // One bounded scan per task; a page is filled from the following shards (and further
      // scans), so that a cursor is only returned while something may be left: at most
      // LIST_TASKS tasks per call, then the page may come back short with a cursor.
      for (let tasks = 0; shard < shards && out.length < p.limit && tasks < LIST_TASKS; tasks++) {
        const page = await server.task(shard, { kind: "list", from: record, limit: p.limit - out.length, select: p.filter });
        out.push(...toMappings(shard, page.records));
        record = page.next;
        if (record === 0) {
          shard++;
          record = 1;
        }
      }
      return { mappings: out, next: shard < shards ? encodeCursor(shard, record) : null };
    },
    "mappings.get": async (p) => {
      const found = await everyShard(
        "externalAddress" in p
          ? { kind: "lookupExternal", externalAddress: p.externalAddress, protocol: p.protocol, externalPort: p.externalPort }
          : {
              kind: "lookup",
              internalAddress: p.internalAddress,
              protocol: p.protocol,
              internalPort: p.internalPort,
              family: p.family ?? (isIPv6(p.internalAddress) ? 6 : 4),
              thirdPartyId: p.thirdPartyId,
            },
      );
      const shard = found.findIndex((r) => r.bytes.length > 0);
      return { mapping: shard < 0 ? null : toMappings(shard, found[shard])[0] };
    },
    "mappings.addStatic": (p) =>
      server.staticChange(async () => {
        // The shard owning the port's block holds the static; every other shard a mirror, so
        // the subscriber is answered from it whichever listen address it sends to.
        const shard = server.shardOfExternalPort(p.externalPort);
        const r = await server.task<"addStatic">(shard, { kind: "addStatic", ...p });
        const mapping = r.mapping ? toMappings(shard, r.mapping)[0] : undefined;
        if (r.result !== W.RESULT_SUCCESS || !mapping) throw refused(r.result);
        const mirrored = await Promise.all(
          Array.from({ length: shards }, (_, s) => (s === shard ? W.RESULT_SUCCESS : server.task<"addMirror">(s, { kind: "addMirror", ...p }))),
        );
        const refusedBy = mirrored.findIndex((result) => result !== W.RESULT_SUCCESS);
        if (refusedBy >= 0) {
          // A live mapping of the endpoint on another shard refuses it, as one on the owner
          // does: nothing is left behind (the owner's static and the mirrors laid go).
          await everyShard({
            kind: "removeStatic",
            internalAddress: p.internalAddress,
            protocol: p.protocol,
            internalPort: p.internalPort,
            family: isIPv6(p.externalAddress) ? 6 : 4,
            hold: false,
          });
          throw refused(mirrored[refusedBy], ` (the endpoint has a mapping on shard ${refusedBy})`);
        }
        return { mapping };
      }),
    "mappings.removeStatic": (p) =>
      server.staticChange(async () => {
        const results = await everyShard({
          kind: "removeStatic",
          internalAddress: p.internalAddress,
          protocol: p.protocol,
          internalPort: p.internalPort,
          family: p.family ?? 4,
        });
        if (!results.includes(W.RESULT_SUCCESS))
          throw new RpcError(RpcErrors.REFUSED, "no static mapping of that endpoint", { result: W.RESULT_NOT_AUTHORIZED });
        return { removed: true as const };
      }),
    "subscribers.usage": async (p) => {
      const usage = await everyShard({ kind: "subscriberUsage", internalAddress: p.internalAddress, thirdPartyId: p.thirdPartyId });
      return { shards: usage.map((u, shard) => ({ shard, ...u })) };
    },
    "subscribers.deleteMappings": (p) =>
      server.staticChange(async () => {
        const counts = await everyShard({ kind: "deleteSubscriber", internalAddress: p.internalAddress, thirdPartyId: p.thirdPartyId });
        return { deleted: counts.reduce((a, b) => a + b, 0) };
      }),
  };
}
