// The process bench/store-faults.bench.ts kills: a packet engine creating mappings as fast
// as a packet path would (64 per event-loop turn), each batch's records handed to one of
// the two designs — `journal` (src/persist ShardStore, group commit 20 ms + fdatasync,
// snapshots) or `lmdb` (lmdb-store.ts) — and each batch acknowledged on stdout right after
// (as a reply would leave): "A <first index> <count> <ms since the epoch> <external ports, base64 u32>".
//   write <design> <dir>             until SIGTERM (clean close, exit 0) or SIGKILL
//   restore <design> <dir> <count>   one JSON line: restore time, damage reported, what came back
import { pino } from "pino";
import type { PacketEngine } from "../../src/engine/packet-engine.js";
import { engineConfig, engineFrom } from "../../test/helpers/engine-config.js";
import { ShardStore, wallSeconds } from "../../src/persist/store.js";
import { assigned, mapRequest, nonceOf, serveOne } from "../../test/helpers/packets.js";
import { LmdbStore } from "./lmdb-store.js";

const T0 = 100;
const BATCH = 64;
const [command, design, dir, countArg] = process.argv.slice(2);
const log = pino({ level: "silent" });

function engine(): PacketEngine {
  const addresses = Array.from({ length: 8 }, (_, i) => `203.0.113.${i + 1}`);
  const config = engineConfig({
    capacity: { mappings: 450_000, subscribers: 10_000 },
    quotas: { mappingsPerSubscriber: 50 },
    pool: { addresses, blockSize: 64 },
  });
  return engineFrom(config, T0, { seed: 7n }, "release");
}

const client = (i: number) => {
  const s = Math.floor(i / 50);
  return { address: `10.${(s >> 16) & 255}.${(s >> 8) & 255}.${s & 255}`, port: 1024 + (i % 50) };
};

const options = {
  directory: dir,
  shard: 0,
  shards: 1,
  commitIntervalMs: 20,
  fsync: true,
  snapshotIntervalSeconds: 3600,
  snapshotJournalBytes: 512 << 20,
  maxBacklogBytes: 256 << 20,
};

async function write(): Promise<void> {
  const e = engine();
  const wallOffset = wallSeconds() - T0;
  let append: (parts: Uint8Array[]) => void;
  let close: () => Promise<unknown>;
  if (design === "journal") {
    const store = new ShardStore(options, () => 1000, log);
    await store.restore(e, wallOffset, T0);
    store.start({ engine: e, wallOffset });
    append = (parts) => store.append(parts);
    close = () => store.close();
    setInterval(() => process.stdout.write(`S ${JSON.stringify(store.status())}\n`), 200).unref();
  } else {
    const store = new LmdbStore(`${dir}/state.mdb`);
    // lmdb-js rejects a failed commit on promises of its own as well: counted, not fatal.
    process.on("unhandledRejection", (e) => {
      store.writeErrors++;
      store.lastError = (e as Error).message;
    });
    append = (parts) => store.append(parts);
    close = () => store.flushed().then(() => store.close());
    setInterval(() => process.stdout.write(`S ${JSON.stringify({ writeErrors: store.writeErrors, reason: store.lastError })}\n`), 200).unref();
  }
  let stopping = false;
  process.on("SIGTERM", () => {
    stopping = true;
    void close().then(() => process.exit(0));
  });
  const ports = new Uint32Array(BATCH);
  for (let first = 0; !stopping && first + BATCH <= 400_000; first += BATCH) {
    for (let k = 0; k < BATCH; k++) {
      const c = client(first + k);
      const out = serveOne(e, mapRequest({ client: c.address, internalPort: c.port, lifetime: 3600, nonce: nonceOf(first + k) }), T0, { source: c.address });
      const a = out.response.length > 0 && out.response[3] === 0 ? assigned(out) : undefined;
      ports[k] = a ? (Number(a.address.split(".")[3]) << 16) | a.port : 0;
    }
    append(e.persistPending(wallOffset));
    e.drainEvents();
    process.stdout.write(`A ${first} ${BATCH} ${performance.timeOrigin + performance.now()} ${Buffer.from(ports.buffer).toString("base64")}\n`);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

async function restore(): Promise<void> {
  const count = Number(countArg);
  const e = engine();
  const wallOffset = wallSeconds() - T0;
  const t0 = performance.now();
  let result: Record<string, unknown>;
  try {
    if (design === "journal") {
      const r = await new ShardStore(options, () => 0, log).restore(e, wallOffset, T0);
      result = {
        damageReported: r.damage.length > 0 || r.fallback !== undefined,
        stateLost: r.stateLost,
        damage: r.damage.map((d) => `${d.kind} ${d.file}@${d.offset}+${d.bytes}: ${d.reason}`),
        fallback: r.fallback?.file ?? null,
      };
    } else {
      const store = new LmdbStore(`${dir}/state.mdb`);
      const dropped = () => Object.values(e.restoreDropped()).reduce((a, b) => a + b, 0);
      store.restore(e, wallOffset, T0);
      await store.close();
      result = { damageReported: false, stateLost: false, droppedByEngine: dropped() };
    }
  } catch (err) {
    result = { error: (err as Error).message };
  }
  const ms = performance.now() - t0;
  const found = new Uint32Array(count);
  for (let i = 0; i < count; i++) {
    const c = client(i);
    const m = e.lookup(c.address, 6, c.port);
    if (m) found[i] = (Number(m.externalAddress.split(".")[3]) << 16) | m.externalPort;
  }
  process.stdout.write(JSON.stringify({ ms, ...result, found: Buffer.from(found.buffer).toString("base64") }) + "\n");
}

await (command === "write" ? write() : restore());
