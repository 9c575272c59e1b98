// Static mappings across shards. A static mapping lives in the shard that owns its
// external port's block (it leases the port, journals the record, programs the
// dataplane), but its subscriber may send to any listen address, hence to any shard.
// Every other shard holds a mirror of it (the engine's static mirrors) and
// answers from it as the owner answers from the static [RFC 6887 §11.3, §15.1; RFC 6886].
//
// Mirrors are not persisted: they are laid down again from the owners' records whenever
// those may have changed behind the control channel's back — at server start (each owner
// has restored its statics from its files) and when a shard restarts (the restarted owner
// restored its own, or lost them without persistence; the restarted mirror shard starts
// empty). A re-synchronisation replaces each shard's mirrors by the statics of the others;
// a dynamic mapping of a static's endpoint found then is ended (the static is older).
import { decodeRecords } from "../engine/packet-engine.js";
import type { RunTask as Run, StaticEntry } from "../shard/tasks.js";

/** The static mappings a shard owns (listing pages, each a bounded scan). */
export async function staticsOf(run: Run, shard: number): Promise<StaticEntry[]> {
  const out: StaticEntry[] = [];
  let from = 1;
  do {
    const page = await run(shard, { kind: "list", from, limit: 1000, select: { kind: "static" } });
    for (const m of decodeRecords(page.records)) {
      out.push({
        internalAddress: m.internalAddress,
        protocol: m.protocol,
        internalPort: m.internalPort,
        externalAddress: m.externalAddress,
        externalPort: m.externalPort,
      });
    }
    from = page.next;
  } while (from !== 0);
  return out;
}

/** Replaces every shard's mirrors by the statics the other shards own; returns the mirrors laid down. */
export async function syncMirrors(run: Run, shards: number): Promise<number> {
  if (shards < 2) return 0;
  const owned = await Promise.all(Array.from({ length: shards }, (_, shard) => staticsOf(run, shard)));
  const laid = await Promise.all(owned.map((_, shard) => run(shard, { kind: "setMirrors", statics: owned.filter((_, s) => s !== shard).flat() })));
  return laid.reduce((a, b) => a + b, 0);
}
