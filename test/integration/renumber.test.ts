// Renumbering a running server (SIGHUP reload of pool.addresses) on real sockets: the
// client of a mapping on a removed address receives Mapping Update messages — the MAP
// response with its new external address, three times (0, ≥ 250 ms, then ≥ 500 ms more),
// each with the current Epoch, which was reset (checklist 120, 126) — and no more copies
// once it has refreshed. An added address serves new subscribers at once.
import dgram from "node:dgram";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pino } from "pino";
import * as W from "../../src/wire.generated.js";
import { parseConfig } from "../../src/config/schema.js";
import { startServer, type RunningServer } from "../../src/server/server.js";
import { TestTime } from "../../src/core/clock.js";
import { announceRequest, assigned, mapRequest, nonceOf, thirdParty } from "../helpers/packets.js";
import { formatAddress16 } from "../../src/net/address.js";
import { exchange } from "../helpers/udp.js";
import { waitFor } from "../helpers/wait.js";

const SERVER = "127.0.0.13";
const CLIENT = "127.0.0.13"; // a subscriber on the same loopback address (its own port)
const OLD = "198.51.100.1";
const NEW = "198.51.100.2";
const REQUESTER = "127.0.0.15"; // a THIRD_PARTY server asking for other subscribers' mappings
const base = {
  listen: { addresses: [SERVER], port: 0 },
  subscribers: ["127.0.0.0/8"],
  thirdPartySources: [`${REQUESTER}/32`],
  log: { level: "silent" },
  persistence: { enabled: false },
};
let server: RunningServer;
/** Engine time and Epochs move when the test says (src/core/clock.ts); the copies' gaps are real time. */
const clock = new TestTime();

beforeAll(async () => {
  server = await startServer(parseConfig({ ...base, pool: { addresses: [OLD] } }), pino({ level: "silent" }), undefined, { testClock: clock });
});
afterAll(() => server.stop());

interface Seen {
  at: number;
  data: Buffer;
}

/** A client socket on `address` keeping every datagram it receives. */
async function collector(address: string): Promise<{ socket: dgram.Socket; seen: Buffer[] }> {
  const socket = dgram.createSocket("udp4");
  const seen: Buffer[] = [];
  socket.on("message", (data) => seen.push(data));
  await new Promise<void>((resolve) => socket.bind(0, address, resolve));
  return { socket, seen };
}

describe("renumbering by configuration reload", () => {
  it("items 120, 126: Mapping Update to the client, three times, epoch reset; a refresh stops the copies", async () => {
    const port = server.addresses[0].port;
    const socket = dgram.createSocket("udp4");
    const seen: Seen[] = [];
    const t0 = performance.now();
    socket.on("message", (data) => seen.push({ at: performance.now() - t0, data }));
    await new Promise<void>((resolve) => socket.bind(0, CLIENT, resolve));
    const request = mapRequest({ client: CLIENT, internalPort: 7000, lifetime: 3600, nonce: nonceOf(5) });
    try {
      socket.send(request, port, SERVER);
      await waitFor(() => seen.length >= 1);
      clock.advance(100); // the Epoch passes 100, so a reset shows
      expect(server.epochs()[0]).toBeGreaterThanOrEqual(100);
      expect(seen).toHaveLength(1);
      const before = assigned({ response: seen[0].data });
      expect(before.address).toBe(OLD);
      const epochBefore = (await exchange("127.0.0.14", SERVER, port, announceRequest({ client: "127.0.0.14" }))).reply.readUInt32BE(W.HDR_EPOCH);
      expect(epochBefore).toBeGreaterThanOrEqual(100);

      const restart = await server.reload(parseConfig({ ...base, pool: { addresses: [NEW] } }));
      expect(restart).toEqual([]);
      // Scheduled by the reload itself; the third copy is ≥ 750 ms away.
      expect((await server.task(0, { kind: "mappingUpdates" })).pending).toBe(1);
      await waitFor(() => seen.length >= 4, { message: () => `${seen.length - 1} copies` });
      const updates = seen.slice(1);
      expect(updates).toHaveLength(3);
      for (const u of updates) {
        expect([u.data[1], u.data[3]]).toEqual([W.R_BIT | W.OP_MAP, W.RESULT_SUCCESS]);
        expect(assigned({ response: u.data }).address).toBe(NEW);
        expect(Array.from(u.data.subarray(W.MP_NONCE, W.MP_NONCE + 12))).toEqual(nonceOf(5));
        expect(u.data.readUInt32BE(W.HDR_EPOCH)).toBeLessThan(epochBefore); // reset to 0, not continued
      }
      // Receive-side times (exact sender timing: test/shard/mapping-update.test.ts).
      expect(updates[1].at - updates[0].at).toBeGreaterThanOrEqual(200);
      expect(updates[2].at - updates[1].at).toBeGreaterThanOrEqual(450);
      // The client's refresh finds the mapping at its new address.
      const refresh = await exchange(CLIENT, SERVER, port, request);
      expect(assigned({ response: refresh.reply })).toEqual(assigned({ response: updates[0].data }));
      // A new subscriber is served from the new address.
      const fresh = await exchange("127.0.0.14", SERVER, port, mapRequest({ client: "127.0.0.14" }));
      expect(assigned({ response: fresh.reply }).address).toBe(NEW);
      const stats = await server.stats();
      expect(stats.shards[0].pool).toEqual([
        expect.objectContaining({ address: OLD, retired: true }),
        expect.objectContaining({ address: NEW, retired: false }),
      ]);
    } finally {
      socket.close();
    }
  });

  it("the copies stop once the client refreshes", async () => {
    const port = server.addresses[0].port;
    const { socket, seen } = await collector(CLIENT);
    const request = mapRequest({ client: CLIENT, internalPort: 7100, lifetime: 3600, nonce: nonceOf(6) });
    try {
      socket.send(request, port, SERVER);
      await waitFor(() => seen.length >= 1);
      expect(assigned({ response: seen[0] }).address).toBe(NEW);
      await server.reload(parseConfig({ ...base, pool: { addresses: [OLD] } })); // NEW retired, OLD back
      await waitFor(() => seen.length >= 2); // the first copy, sent at once
      // The client refreshes (from another port of its, so the reply cannot be taken for a copy).
      const refresh = await exchange(CLIENT, SERVER, port, request, 10_000);
      expect(refresh.reply[1]).toBe(W.R_BIT | W.OP_MAP);
      expect(assigned({ response: refresh.reply }).address).toBe(OLD);
      const copiesAtRefresh = seen.length - 1;
      // Every Mapping Update schedule over (the other re-homed mappings' copies all sent,
      // this one's ended by the refresh): nothing more can arrive.
      await waitFor(async () => (await server.everyShard({ kind: "mappingUpdates" })).every((u) => u.pending === 0), {
        message: () => `${seen.length - 1} copies`,
      });
      // At most a copy already on its way when the refresh was answered; never all three.
      expect(seen.length - 1).toBeLessThanOrEqual(Math.min(copiesAtRefresh + 1, 2));
    } finally {
      socket.close();
    }
  });

  it("issue #12 item 13: a THIRD_PARTY mapping's update goes to the address:port its request came from, three times, with THIRD_PARTY", async () => {
    const port = server.addresses[0].port;
    const { socket, seen } = await collector(REQUESTER);
    const wait = (n: number) => waitFor(() => seen.length >= n, { message: () => `${seen.length} of ${n} datagrams` });
    try {
      socket.send(mapRequest({ client: REQUESTER, internalPort: 7200, lifetime: 3600, nonce: nonceOf(7) }, [thirdParty("10.1.2.3")]), port, SERVER);
      await wait(1);
      expect([seen[0][3], assigned({ response: seen[0] }).address]).toEqual([W.RESULT_SUCCESS, OLD]);
      await server.reload(parseConfig({ ...base, pool: { addresses: [NEW] } })); // OLD retired
      await wait(4);
      const updates = seen.slice(1);
      expect(updates).toHaveLength(3);
      for (const u of updates) {
        expect([u[1], u[3], assigned({ response: u }).address]).toEqual([W.R_BIT | W.OP_MAP, W.RESULT_SUCCESS, NEW]);
        expect(Array.from(u.subarray(W.MP_NONCE, W.MP_NONCE + 12))).toEqual(nonceOf(7));
        expect([u.length, u[W.MAP_MIN_SIZE], formatAddress16(u.subarray(W.MAP_MIN_SIZE + 4, W.MAP_MIN_SIZE + 20))]).toEqual([
          W.MAP_MIN_SIZE + 20,
          W.OPTION_THIRD_PARTY,
          "10.1.2.3",
        ]);
      }
    } finally {
      socket.close();
    }
  });
});
