// Every JSON-RPC error code of the control channel (RpcErrors, docs/errors.md) is
// reachable: each is provoked over a real connection to a running server, and the codes
// seen must be all of RpcErrors, so a code added without a way to reach it fails here.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pino } from "pino";
import WebSocket from "ws";
import { parseConfig, type Config } from "../../src/config/schema.js";
import { ConfigError, ErrorCodes, HaError, PcpdError, RpcError, ShardUnavailableError } from "../../src/errors.js";
import type { HaController } from "../../src/ha/types.js";
import { rpcCodeOf } from "../../src/control/dispatch.js";
import { startServer, type RunningServer } from "../../src/server/server.js";
import { startControl, type RunningControl } from "../../src/control/server.js";
import { RpcErrors } from "../../src/control/protocol.js";
import { waitFor } from "../helpers/wait.js";

const UDP = "127.0.0.147";
const ADMIN = "errors-admin-token-0123456789";
const READER = "errors-reader-token-0123456789";
const log = pino({ level: "silent" });

function configWith(over: Record<string, unknown> = {}): Config {
  return parseConfig({
    listen: { addresses: [UDP], port: 0 },
    control: {
      address: "127.0.0.1",
      port: 0,
      tokens: [
        { token: ADMIN, role: "admin" },
        { token: READER, role: "read" },
      ],
      requestsPerSecond: 50,
    },
    log: { level: "silent" },
    persistence: { enabled: false },
    // Not enabled: the groups only name what ha.switchover may be asked about (a fake controller answers).
    ha: { groups: [{ name: "east", addresses: [UDP] }] },
    ...over,
  });
}

let server: RunningServer;
let control: RunningControl;
/** What the next config.reload does. */
let reload: () => Promise<string[]> = async () => [];

beforeAll(async () => {
  const config = configWith();
  server = await startServer(config, log);
  control = await startControl({ config: config.control, server, log, version: "test", reloadConfig: () => reload() });
});
afterAll(async () => {
  await control?.stop();
  await server?.stop();
});

interface Reply {
  id: number | string | null;
  result?: unknown;
  error?: { code: number; message: string; data?: unknown };
}

/** A connection whose replies are collected; `next(n)` waits for n of them. */
async function connect(token: string) {
  const ws = new WebSocket(`ws://127.0.0.1:${control.port}/control`, { headers: { Authorization: `Bearer ${token}` } });
  const replies: Reply[] = [];
  ws.on("message", (d) => {
    const m = JSON.parse(d.toString());
    if (m.id !== undefined) replies.push(m);
  });
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  let id = 0;
  return {
    ws,
    replies,
    send(method: string, params?: unknown): number {
      ws.send(JSON.stringify({ jsonrpc: "2.0", id: ++id, method, params }));
      return id;
    },
    async call(method: string, params?: unknown): Promise<Reply> {
      const i = this.send(method, params);
      return this.reply(i);
    },
    async raw(frame: string | Buffer): Promise<Reply> {
      const before = replies.length;
      ws.send(frame);
      await waitFor(() => replies.length > before, { message: () => `no reply to ${String(frame)}` });
      return replies[before];
    },
    async reply(i: number): Promise<Reply> {
      await waitFor(() => replies.some((r) => r.id === i), { message: () => `no reply to request ${i}` });
      return replies.find((r) => r.id === i)!;
    },
  };
}

describe("every JSON-RPC error code of the control channel is reachable", () => {
  it("each code provoked over a real connection, with its documented data", async () => {
    const seen = new Map<number, Reply["error"]>();
    const expectCode = (r: Reply, code: number) => {
      expect(r.error, JSON.stringify(r)).toMatchObject({ code });
      seen.set(code, r.error);
    };
    const admin = await connect(ADMIN);
    const reader = await connect(READER);

    expectCode(await admin.raw("{not json"), RpcErrors.PARSE_ERROR);
    expectCode(await admin.raw(JSON.stringify({ jsonrpc: "2.0", method: "server.info" })), RpcErrors.INVALID_REQUEST);
    expectCode(await admin.call("server.frobnicate"), RpcErrors.METHOD_NOT_FOUND);
    expectCode(await admin.call("mappings.list", { limit: 0 }), RpcErrors.INVALID_PARAMS);
    expectCode(await reader.call("epoch.reset", { shard: 0 }), RpcErrors.FORBIDDEN);
    const refused = await admin.call("mappings.removeStatic", { internalAddress: "192.0.2.7", protocol: 6, internalPort: 22 });
    expectCode(refused, RpcErrors.REFUSED);
    expect(refused.error!.data).toEqual({ result: expect.any(Number) });

    // Invalid configuration: refused with its issues, the running one stays.
    reload = async () => {
      throw new ConfigError(["pool.blockSize: too small"]);
    };
    const rejected = await admin.call("config.reload");
    expectCode(rejected, RpcErrors.CONFIG_REJECTED);
    expect(rejected.error!.data).toEqual({ issues: ["pool.blockSize: too small"] });
    // Any other failure of a method is INTERNAL_ERROR with its message.
    reload = async () => {
      throw new Error("the shards did not take the new configuration");
    };
    const internal = await admin.call("config.reload");
    expectCode(internal, RpcErrors.INTERNAL_ERROR);
    expect(internal.error!.message).toBe("the shards did not take the new configuration");

    // dataplane.backend is "none" here.
    const off = await admin.call("dataplane.subscribe", {});
    expectCode(off, RpcErrors.NOT_ENABLED);
    expect(off.error!.message).toContain('not "events"');

    // HA: a switchover asked of a standby, or one that started and was never completed.
    let failure: HaError = new HaError(ErrorCodes.HA_NOT_ACTIVE, "east", "pcpd-1 is not the active of group east (standby); the holder is pcpd-2");
    const ha: HaController = {
      status: async () => ({ node: "pcpd-1", cluster: "pcpd", nats: "connected", groups: [] }),
      switchover: async () => {
        throw failure;
      },
    };
    server.ha = ha;
    const standby = await admin.call("ha.switchover", { group: "east" });
    expectCode(standby, RpcErrors.NOT_ACTIVE);
    expect(standby.error!.data).toEqual({ error: "HA_NOT_ACTIVE", group: "east" });
    failure = new HaError(ErrorCodes.HA_SWITCHOVER_FAILED, "east", "switchover of group east failed: no node took the group within 30000 ms");
    const late = await admin.call("ha.switchover", { group: "east", to: "pcpd-3" });
    expectCode(late, RpcErrors.SWITCHOVER_FAILED);
    expect(late.error!.data).toEqual({ error: "HA_SWITCHOVER_FAILED", group: "east" });
    server.ha = undefined;

    // A second Epoch reset of a shard while its first runs: the shard is unavailable.
    const first = admin.send("epoch.reset", { shard: 0 });
    const second = admin.send("epoch.reset", { shard: 0 });
    const busy = await admin.reply(second);
    expectCode(busy, RpcErrors.UNAVAILABLE);
    expect(busy.error!.data).toEqual({ error: "SHARD_RESETTING", shard: 0 });
    expect((await admin.reply(first)).result).toEqual({ shard: 0, epoch: expect.any(Number) });

    // Over the connection's request rate (50 per second, a burst of 100).
    const limited = await connect(READER);
    const ids = Array.from({ length: 150 }, () => limited.send("server.health"));
    await waitFor(() => limited.replies.length === ids.length, { message: () => `${limited.replies.length} replies` });
    const over = limited.replies.find((r) => r.error?.code === RpcErrors.RATE_LIMITED);
    expect(over).toBeDefined();
    expectCode(over!, RpcErrors.RATE_LIMITED);

    for (const c of [admin, reader, limited]) c.ws.close();
    expect([...seen.keys()].sort()).toEqual(Object.values(RpcErrors).sort());
  });
});

describe("server errors escaping a method", () => {
  it("a shard that cannot take a request is UNAVAILABLE, an invalid configuration CONFIG_REJECTED, HA failures by kind, anything else INTERNAL_ERROR", () => {
    for (const code of [ErrorCodes.SHARD_RESETTING, ErrorCodes.SERVER_STOPPING, ErrorCodes.SHARD_LOST] as const) {
      expect(rpcCodeOf(new ShardUnavailableError(code, 1, "x"))).toBe(RpcErrors.UNAVAILABLE);
    }
    expect(rpcCodeOf(new ConfigError(["a: b"]))).toBe(RpcErrors.CONFIG_REJECTED);
    expect(rpcCodeOf(new HaError(ErrorCodes.HA_UNKNOWN_GROUP, "g", "x"))).toBe(RpcErrors.INVALID_PARAMS);
    expect(rpcCodeOf(new HaError(ErrorCodes.HA_NOT_ACTIVE, "g", "x"))).toBe(RpcErrors.NOT_ACTIVE);
    expect(rpcCodeOf(new HaError(ErrorCodes.HA_SWITCHOVER_FAILED, "g", "x"))).toBe(RpcErrors.SWITCHOVER_FAILED);
    expect(rpcCodeOf(new RpcError(RpcErrors.REFUSED, "no", { result: 2 }))).toBe(RpcErrors.REFUSED);
    expect(rpcCodeOf(new PcpdError(ErrorCodes.NFT_FAILED, "nft exited 1"))).toBeUndefined();
    expect(rpcCodeOf(new Error("boom"))).toBeUndefined();
  });
});
