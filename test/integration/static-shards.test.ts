// Issue #12 item 12: a static mapping is honoured by every shard that can receive its
// subscriber's requests. Default two-worker layout: listen address i → shard i mod 2, the
// static lives in the shard owning its external port's block, and the subscriber talks to
// the other shard, which answers from its mirror (src/server/static-mirrors.ts): PCP MAP
// and NAT-PMP get the static's external address:port with lifetime 2^32−1 (nonce echoed),
// deletes are refused with NOT_AUTHORIZED [RFC 6887 §11.3, §15.1; RFC 6886 §3.3].
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pino } from "pino";
import WebSocket from "ws";
import * as W from "../../src/wire.generated.js";
import { parseConfig, type Config } from "../../src/config/schema.js";
import { startServer, type RunningServer } from "../../src/server/server.js";
import { startControl, type RunningControl } from "../../src/control/server.js";
import { RpcErrors } from "../../src/control/protocol.js";
import { assigned, mapRequest, natPmpMap, nonceOf, peerRequest, u16, u32 } from "../helpers/packets.js";
import { exchange } from "../helpers/udp.js";
import { waitFor } from "../helpers/wait.js";

const A = "127.0.0.61"; // listen address 0 → shard 0; also the IPv4 subscriber
const V6 = "::1"; // listen address 1 → shard 1; also the IPv6 subscriber
const EXT = "203.0.113.5";
const EXT6 = "2001:db8:5::1";
const TOKEN = "admin-token-static-shards-0123456789";
const log = pino({ level: "silent" });
// Blocks of 512 from 1024, split by block number: an odd block is shard 1's, an even one shard 0's.
const ODD_BLOCK_PORT = 1024 + 512 + 22;
const EVEN_BLOCK_PORT = 1024 + 2 * 512 + 22;
const STATIC = 0xffffffff;

function configWith(over: Record<string, unknown> = {}): Config {
  return parseConfig({
    listen: { addresses: [A, V6], port: 0 },
    workers: 2,
    pool: { addresses: [EXT, EXT6] },
    rateLimit: { global: { rate: 1e6, burst: 1e6 } },
    control: { address: "127.0.0.1", port: 0, tokens: [{ token: TOKEN, role: "admin" }], requestsPerSecond: 2000 },
    log: { level: "silent" },
    persistence: { enabled: false },
    ...over,
  });
}

interface Running {
  server: RunningServer;
  control: RunningControl;
  call(method: string, params?: unknown): Promise<any>;
  stop(): Promise<void>;
}

async function start(config: Config): Promise<Running> {
  const server = await startServer(config, log);
  const control = await startControl({ config: config.control, server, log, version: "test", reloadConfig: async () => [] });
  const ws = new WebSocket(`ws://127.0.0.1:${control.port}/control`, { headers: { Authorization: `Bearer ${TOKEN}` } });
  await new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject));
  const waiting = new Map<number, (m: unknown) => void>();
  ws.on("message", (data) => {
    const m = JSON.parse(data.toString());
    waiting.get(m.id)?.(m);
  });
  let id = 0;
  return {
    server,
    control,
    call: (method, params) =>
      new Promise((resolve) => {
        const i = ++id;
        waiting.set(i, resolve);
        ws.send(JSON.stringify({ jsonrpc: "2.0", id: i, method, params }));
      }),
    async stop() {
      ws.close();
      await control.stop();
      await server.stop();
    },
  };
}

let r: Running;
const portOf = (address: string) => r.server.addresses.find((e) => e.address === address)!.port;
const send = (address: string, payload: Uint8Array) => exchange(address, address, portOf(address), payload).then((x) => x.reply);
const map = (client: string, internalPort: number, o: { lifetime?: number; nonce?: number; externalAddress?: string } = {}) =>
  send(
    client,
    mapRequest({ client, internalPort, lifetime: o.lifetime ?? 600, nonce: nonceOf(o.nonce ?? 7), externalAddress: o.externalAddress ?? "0.0.0.0" }),
  );
const addStatic = (internalAddress: string, internalPort: number, externalAddress: string, externalPort: number) =>
  r.call("mappings.addStatic", { internalAddress, protocol: W.PROTO_TCP, internalPort, externalAddress, externalPort });
async function statics(): Promise<any[]> {
  const out = [];
  let cursor: string | undefined;
  for (let page = 0; page < 20; page++) {
    const { result, error } = await r.call("mappings.list", { filter: { kind: "static" }, limit: 100, cursor });
    if (error) throw new Error(`mappings.list: ${error.message}`);
    out.push(...result.mappings);
    if (result.next === null) break;
    cursor = result.next;
  }
  return out;
}
const shardMappings = () => r.server.stats().shards.map((s) => Number(s.engine.mappings));

/** Asks until `ok` holds for the reply (a restarted shard rebinds and resynchronises); bounded. */
const until = (ask: () => Promise<Buffer>, ok: (reply: Buffer) => boolean) =>
  waitFor(
    async () => {
      const reply = await ask().catch(() => undefined);
      return reply && ok(reply) ? reply : undefined;
    },
    { timeout: 20_000, interval: 50 },
  );

beforeAll(async () => {
  r = await start(configWith());
  expect(r.server.shardEndpoints.map((e) => e.map((x) => x.address))).toEqual([[A], [V6]]);
});
afterAll(() => r.stop());

describe("static mappings on every shard (issue #12 item 12)", () => {
  it("IPv4, PCP: the other shard answers MAP with the static (lifetime 2^32−1, nonce echoed) and refuses its delete", async () => {
    const added = await addStatic(A, 22, EXT, ODD_BLOCK_PORT);
    expect(added.result.mapping).toMatchObject({ kind: "static", shard: 1, externalPort: ODD_BLOCK_PORT });
    const before = shardMappings();
    const reply = await map(A, 22, { nonce: 9 });
    expect(reply[3]).toBe(W.RESULT_SUCCESS);
    expect(assigned({ response: reply })).toEqual({ address: EXT, port: ODD_BLOCK_PORT });
    expect(u32(reply, W.HDR_LIFETIME)).toBe(STATIC);
    expect(Array.from(reply.subarray(W.MP_NONCE, W.MP_NONCE + 12))).toEqual(nonceOf(9));
    // Another nonce gets the same answer: the nonce is not stored.
    expect(assigned({ response: await map(A, 22, { nonce: 10 }) }).port).toBe(ODD_BLOCK_PORT);
    const del = await map(A, 22, { lifetime: 0, nonce: 9 });
    expect(del[3]).toBe(W.RESULT_NOT_AUTHORIZED);
    // Nothing was created, leased or listed on the answering shard.
    expect(shardMappings()).toEqual(before);
    expect((await r.call("subscribers.usage", { internalAddress: A })).result.shards).toEqual([
      { shard: 0, mappings: 0, blocks: 0 },
      { shard: 1, mappings: 1, blocks: 1 },
    ]);
    expect(await statics()).toHaveLength(1);
    // PEER for the endpoint leaves on the static's address:port, nothing recorded here.
    const peer = await send(A, peerRequest({ client: A, protocol: W.PROTO_TCP, internalPort: 22, lifetime: 300 }));
    expect([peer[3], assigned({ response: peer }).port]).toEqual([W.RESULT_SUCCESS, ODD_BLOCK_PORT]);
    expect(shardMappings()).toEqual(before);
  });

  it("IPv4, NAT-PMP: map returns the static's port with lifetime 2^32−1; delete (one, or all) is NOT_AUTHORIZED", async () => {
    const reply = await send(A, natPmpMap(W.NATPMP_OP_MAP_TCP, 22, 0, 3600));
    expect([u16(reply, 2), u16(reply, 8), u16(reply, 10), u32(reply, 12)]).toEqual([W.NATPMP_RESULT_SUCCESS, 22, ODD_BLOCK_PORT, STATIC]);
    expect(u16(await send(A, natPmpMap(W.NATPMP_OP_MAP_TCP, 22, 0, 0)), 2)).toBe(W.NATPMP_RESULT_NOT_AUTHORIZED);
    expect(u16(await send(A, natPmpMap(W.NATPMP_OP_MAP_TCP, 0, 0, 0)), 2)).toBe(W.NATPMP_RESULT_NOT_AUTHORIZED);
    expect(assigned({ response: await map(A, 22) }).port).toBe(ODD_BLOCK_PORT); // still there
  });

  it("IPv6 subscriber (IPv4 and IPv6 external): answered by the other shard from the mirror; delete refused", async () => {
    expect((await addStatic(V6, 8022, EXT, EVEN_BLOCK_PORT)).result.mapping).toMatchObject({ shard: 0 });
    expect((await addStatic(V6, 8023, EXT6, EVEN_BLOCK_PORT + 1)).result.mapping).toMatchObject({ shard: 0 });
    const v4 = await map(V6, 8022, { externalAddress: "0.0.0.0" });
    expect([v4[3], u32(v4, W.HDR_LIFETIME)]).toEqual([W.RESULT_SUCCESS, STATIC]);
    expect(assigned({ response: v4 })).toEqual({ address: EXT, port: EVEN_BLOCK_PORT });
    const v6 = await map(V6, 8023, { externalAddress: "::" });
    expect([v6[3], u32(v6, W.HDR_LIFETIME)]).toEqual([W.RESULT_SUCCESS, STATIC]);
    expect(assigned({ response: v6 })).toEqual({ address: EXT6, port: EVEN_BLOCK_PORT + 1 });
    expect((await map(V6, 8022, { lifetime: 0 }))[3]).toBe(W.RESULT_NOT_AUTHORIZED);
    expect((await map(V6, 8023, { lifetime: 0, externalAddress: "::" }))[3]).toBe(W.RESULT_NOT_AUTHORIZED);
    expect(shardMappings()).toEqual([2, 1]); // the three statics, nothing else
  });

  it("a live dynamic mapping of the endpoint on another shard refuses the static (CANNOT_PROVIDE_EXTERNAL); nothing is left behind", async () => {
    const dynamic = await map(A, 23, { lifetime: 600 });
    expect(dynamic[3]).toBe(W.RESULT_SUCCESS);
    const refused = await addStatic(A, 23, EXT, ODD_BLOCK_PORT + 1); // owner shard 1; the mapping is on shard 0
    expect(refused.error).toMatchObject({ code: RpcErrors.REFUSED, data: { result: W.RESULT_CANNOT_PROVIDE_EXTERNAL } });
    expect((await statics()).filter((m: any) => m.internalPort === 23)).toEqual([]);
    expect((await r.call("mappings.get", { externalAddress: EXT, protocol: W.PROTO_TCP, externalPort: ODD_BLOCK_PORT + 1 })).result.mapping).toBeNull();
    const again = await map(A, 23, { lifetime: 600 });
    expect(assigned({ response: again })).toEqual(assigned({ response: dynamic })); // untouched
    expect(u32(again, W.HDR_LIFETIME)).toBe(600);
    expect((await map(A, 23, { lifetime: 0 }))[3]).toBe(W.RESULT_SUCCESS);
  });

  it("a shard restart lays the mirrors down again; the owner's restart without persistence loses the static and its mirrors", async () => {
    const thread = r.server.threads()[0];
    await r.server.replaceWorker(0); // the mirror shard's thread dies
    const back = await until(
      () => map(A, 22),
      (reply) => reply[3] === W.RESULT_SUCCESS && u32(reply, W.HDR_LIFETIME) === STATIC,
    );
    expect(r.server.threads()[0]).not.toBe(thread);
    expect(assigned({ response: back }).port).toBe(ODD_BLOCK_PORT);
    await r.server.replaceWorker(1); // the owner's thread dies: its table (and the static) start empty
    const dynamic = await until(
      () => map(A, 22),
      (reply) => reply[3] === W.RESULT_SUCCESS && u32(reply, W.HDR_LIFETIME) !== STATIC,
    );
    expect(dynamic).toBeDefined();
    expect((await map(A, 22, { lifetime: 0 }))[3]).toBe(W.RESULT_SUCCESS);
  });

  it("removeStatic removes the static and its mirrors: the endpoint is mapped dynamically again", async () => {
    expect((await addStatic(A, 24, EXT, ODD_BLOCK_PORT + 2)).result.mapping).toMatchObject({ shard: 1 });
    expect(u32(await map(A, 24), W.HDR_LIFETIME)).toBe(STATIC);
    expect((await r.call("mappings.removeStatic", { internalAddress: A, protocol: W.PROTO_TCP, internalPort: 24 })).result).toEqual({ removed: true });
    const dynamic = await map(A, 24, { lifetime: 600 });
    expect([dynamic[3], u32(dynamic, W.HDR_LIFETIME)]).toEqual([W.RESULT_SUCCESS, 600]);
    expect(assigned({ response: dynamic }).port).not.toBe(ODD_BLOCK_PORT + 2);
    expect((await map(A, 24, { lifetime: 0 }))[3]).toBe(W.RESULT_SUCCESS);
    expect((await r.call("mappings.removeStatic", { internalAddress: A, protocol: W.PROTO_TCP, internalPort: 24 })).error.code).toBe(RpcErrors.REFUSED);
  });
});

describe("static mappings across a server restart with persistence (issue #12 item 12)", () => {
  it("the owner restores its static from its files (server restart, then its own shard restart); the other shard mirrors it again", async () => {
    const dir = mkdtempSync(join(tmpdir(), "pcpd-static-"));
    const config = configWith({ persistence: { enabled: true, directory: dir } });
    const first = r;
    try {
      r = await start(config);
      expect((await addStatic(A, 25, EXT, ODD_BLOCK_PORT + 3)).result.mapping).toMatchObject({ shard: 1 });
      await r.stop();
      r = await start(config);
      const reply = await map(A, 25);
      expect([reply[3], u32(reply, W.HDR_LIFETIME), assigned({ response: reply }).port]).toEqual([W.RESULT_SUCCESS, STATIC, ODD_BLOCK_PORT + 3]);
      expect((await map(A, 25, { lifetime: 0 }))[3]).toBe(W.RESULT_NOT_AUTHORIZED);
      expect(u16(await send(A, natPmpMap(W.NATPMP_OP_MAP_TCP, 25, 0, 0)), 2)).toBe(W.NATPMP_RESULT_NOT_AUTHORIZED);
      // The owner's thread dies: it restores the static from its files, the mirror stays answered.
      const thread = r.server.threads()[1];
      await r.server.replaceWorker(1);
      await waitFor(() => r.server.threads()[1] !== undefined && r.server.threads()[1] !== thread, { timeout: 20_000 });
      const after = await until(
        () => map(A, 25),
        (x) => x[3] === W.RESULT_SUCCESS,
      );
      expect([u32(after, W.HDR_LIFETIME), assigned({ response: after }).port]).toEqual([STATIC, ODD_BLOCK_PORT + 3]);
      // The owner lists it again once its restore has finished.
      const listed = await waitFor(
        () =>
          statics().then(
            (l) => (l.length > 0 ? l : undefined),
            () => undefined,
          ),
        { timeout: 20_000, interval: 50 },
      );
      expect(listed.map((m) => [m.shard, m.internalPort])).toEqual([[1, 25]]);
      await r.stop();
    } finally {
      r = first;
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
