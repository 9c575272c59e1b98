// listen.reusePort on real workers: two shards serve one address:port through one
// SO_REUSEPORT group; every subscriber reaches the same shard every time (its mappings are
// there and nowhere else: refreshes find them), and a replaced worker adopts the same
// group member, so the steering stays as it was. Port 25030.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pino } from "pino";
import * as W from "../../src/wire.generated.js";
import { parseConfig } from "../../src/config/schema.js";
import { startServer, type RunningServer } from "../../src/server/server.js";
import { ioChoice, steerIndex } from "../../src/io/native.js";
import { toAddress16 } from "../../src/net/address.js";
import { mapRequest } from "../helpers/packets.js";
import { exchange } from "../helpers/udp.js";
import { waitFor } from "../helpers/wait.js";

const PORT = 25030;
const SOURCES = Array.from({ length: 12 }, (_, i) => `127.0.3.${20 + i}`);
let server: RunningServer;

beforeAll(async () => {
  expect(ioChoice().path).toBe("batched");
  server = await startServer(
    parseConfig({ listen: { addresses: ["127.0.0.1"], port: PORT, reusePort: true }, workers: 2, log: { level: "silent" }, persistence: { enabled: false } }),
    pino({ level: "silent" }),
  );
});
afterAll(() => server?.stop());

const map = (from: string) => exchange(from, "127.0.0.1", PORT, mapRequest({ client: from, internalPort: 4000, lifetime: 600 })).then((r) => r.reply);

/** The shards holding `source`'s mapping of internal port 4000. */
async function holders(source: string): Promise<number[]> {
  const found = await server.everyShard({ kind: "lookup", internalAddress: source, protocol: W.PROTO_TCP, internalPort: 4000, family: 4 });
  return found.flatMap((r, shard) => (r.bytes.length > 0 ? [shard] : []));
}

/** Where each source's mapping is, checked against the steering program's choice. */
async function steered(): Promise<number[][]> {
  const shards = await Promise.all(SOURCES.map(holders));
  SOURCES.forEach((source, i) => {
    expect(shards[i], source).toEqual([steerIndex(toAddress16(source), 2)]);
  });
  return shards;
}

describe("listen.reusePort: two workers on one address:port", () => {
  it("each subscriber's requests reach the shard the steering program names, every time", async () => {
    expect(server.addresses).toEqual([{ address: "127.0.0.1", port: PORT }]);
    const external = new Map<string, string>();
    for (let round = 0; round < 3; round++) {
      for (const source of SOURCES) {
        const reply = await map(source);
        expect(reply[3]).toBe(W.RESULT_SUCCESS);
        // The same external port each round: a refresh of the one mapping, not a new one elsewhere.
        const port = `${reply.readUInt16BE(W.MP_EXTERNAL_PORT)}`;
        if (round === 0) external.set(source, port);
        else expect(port, source).toBe(external.get(source));
      }
    }
    const shards = await steered();
    expect(new Set(shards.map((s) => s[0])).size).toBe(2); // both shards serve someone
  });

  it("a replaced worker adopts its group member: the same subscribers reach it, their mappings restart there", async () => {
    const victim = steerIndex(toAddress16(SOURCES[0]), 2);
    const before = server.threads()[victim];
    await server.replaceWorker(victim);
    // Serving again once its new thread started (a loaded machine takes seconds).
    await waitFor(
      () => {
        const now = server.threads()[victim];
        return now !== undefined && now !== before ? true : undefined;
      },
      { timeout: 30_000, interval: 50 },
    );
    for (const source of SOURCES) expect((await map(source))[3]).toBe(W.RESULT_SUCCESS);
    await steered();
  });
});
