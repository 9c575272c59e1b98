// The control channel client SDK against a fake server (ws on 127.0.0.31).
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ControlClient, ControlClientError, ControlError, type SubscriptionItem } from "../../src/client/control-client.js";
import { defaultTokenFile, defaultTokenFiles, findTokenFile, readTokenFile, removeTokenFile, writeTokenFile } from "../../src/client/token-file.js";
import { RpcErrors, type MappingEventNotice, type RpcRequest } from "../../src/control/protocol.js";
import { closedPort, selfSignedCertificate, startFakeControlServer, startMuteServer, type FakeControlServer } from "../helpers/fake-control-server.js";
import { waitFor } from "../helpers/wait.js";

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function fake(options: Parameters<typeof startFakeControlServer>[0] = {}): Promise<FakeControlServer> {
  const server = await startFakeControlServer(options);
  cleanups.push(() => server.close());
  return server;
}

async function connect(server: { url: string }, options: Partial<Parameters<typeof ControlClient.connect>[1]> = {}): Promise<ControlClient> {
  const client = await ControlClient.connect(server.url, { token: "secret", timeoutMs: 2000, ...options });
  cleanups.push(() => client.close());
  return client;
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected a rejection");
}

const notice = (kind: MappingEventNotice["kind"], port: number): MappingEventNotice => ({
  shard: 0,
  kind,
  time: 12,
  mapping: {
    id: port,
    kind: "dynamic",
    protocol: 6,
    family: 4,
    internalAddress: "10.0.0.1",
    internalPort: port,
    externalAddress: "203.0.113.1",
    externalPort: 2000 + port,
    inbound: true,
    outbound: false,
    natPmp: false,
    thirdParty: false,
    preferFailure: false,
    mapExpiry: 3612,
    outExpiry: 0,
  },
});

describe("connect", () => {
  it("sends the bearer token on the upgrade request", async () => {
    const server = await fake({ handler: () => ({ result: { status: "ok", shards: [] } }) });
    const client = await connect(server);
    expect(server.upgrades).toHaveLength(1);
    expect(server.upgrades[0].authorization).toBe("Bearer secret");
    expect(client.connected).toBe(true);
    expect(await client.call("server.health", {})).toEqual({ status: "ok", shards: [] });
  });

  it("surfaces a 401 refusal as UNAUTHORIZED", async () => {
    const server = await fake();
    const e = await rejection(ControlClient.connect(server.url, { token: "wrong", timeoutMs: 2000 }));
    expect(e).toBeInstanceOf(ControlClientError);
    expect((e as ControlClientError).code).toBe("UNAUTHORIZED");
    expect((e as ControlClientError).status).toBe(401);
    expect(e.message).toContain("HTTP 401 Unauthorized");
    expect(server.upgrades[0].authorization).toBe("Bearer wrong");
  });

  it("surfaces a 403 refusal as FORBIDDEN and other statuses as HTTP_ERROR", async () => {
    const forbidden = await fake({ refuseWith: 403 });
    const e = (await rejection(ControlClient.connect(forbidden.url, { token: "secret", timeoutMs: 2000 }))) as ControlClientError;
    expect([e.code, e.status]).toEqual(["FORBIDDEN", 403]);
    const server = await fake();
    const wrongPath = server.url.replace("/control", "/nope");
    const e2 = (await rejection(ControlClient.connect(wrongPath, { token: "secret", timeoutMs: 2000 }))) as ControlClientError;
    expect([e2.code, e2.status]).toEqual(["HTTP_ERROR", 404]);
  });

  it("reports a refused connection", async () => {
    const port = await closedPort();
    const e = (await rejection(ControlClient.connect(`ws://127.0.0.31:${port}/control`, { token: "t", timeoutMs: 2000 }))) as ControlClientError;
    expect(e).toBeInstanceOf(ControlClientError);
    expect(e.code).toBe("CONNECT_FAILED");
    expect(e.message).toContain("connection refused");
  });

  it("times out when the server never answers the upgrade", async () => {
    const mute = await startMuteServer("silent");
    cleanups.push(() => mute.close());
    const started = Date.now();
    const e = (await rejection(ControlClient.connect(mute.url, { token: "t", timeoutMs: 200 }))) as ControlClientError;
    expect(e.code).toBe("TIMEOUT");
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it("refuses a token that cannot go in a header, and a bad URL", async () => {
    expect(((await rejection(ControlClient.connect("ws://127.0.0.31:1/control", { token: "a\nb" }))) as ControlClientError).code).toBe("BAD_ARGUMENT");
    expect(((await rejection(ControlClient.connect("not a url", { token: "t" }))) as ControlClientError).code).toBe("BAD_ARGUMENT");
  });
});

describe("TLS", () => {
  const certificate = selfSignedCertificate(mkdtempSync(join(tmpdir(), "pcpctl-tls-")));

  it.skipIf(!certificate)("connects to wss:// with the server's CA, and says why not without it", async () => {
    const server = await fake({ tls: certificate!, handler: () => ({ result: { shards: [] } }) });
    expect(server.url).toMatch(/^wss:/);
    const client = await connect(server, { ca: certificate!.cert });
    expect(await client.call("epoch.get", {})).toEqual({ shards: [] });
    const e = (await rejection(ControlClient.connect(server.url, { token: "secret", timeoutMs: 2000 }))) as ControlClientError;
    expect(e.code).toBe("CONNECT_FAILED");
    expect(e.message).toMatch(/self-signed certificate.*give the server's CA certificate/);
    const insecure = await connect(server, { rejectUnauthorized: false });
    expect(insecure.connected).toBe(true);
  });
});

describe("calls", () => {
  it("sends JSON-RPC 2.0 requests with distinct ids and matches out-of-order responses", async () => {
    const held: RpcRequest[] = [];
    const server = await fake({
      handler: (req) => {
        held.push(req);
        return undefined; // answered below, in reverse order
      },
    });
    const client = await connect(server);
    const info = client.call("epoch.get", {});
    const reset = client.call("epoch.reset", { shard: 1 });
    const list = client.call("mappings.list", { limit: 5 });
    await server.waitForRequests(3);
    expect(held.map((r) => [r.jsonrpc, r.method, r.params])).toEqual([
      ["2.0", "epoch.get", {}],
      ["2.0", "epoch.reset", { shard: 1 }],
      ["2.0", "mappings.list", { limit: 5 }],
    ]);
    expect(new Set(held.map((r) => r.id)).size).toBe(3);
    expect(client.pendingCalls).toBe(3);
    const ws = server.sockets[0];
    const answer = (req: RpcRequest, result: unknown) => ws.send(JSON.stringify({ jsonrpc: "2.0", id: req.id, result }));
    answer(held[2], { mappings: [], next: null });
    answer(held[0], { shards: [{ shard: 0, epoch: 7 }] });
    answer(held[1], { shard: 1, epoch: 0 });
    expect(await list).toEqual({ mappings: [], next: null });
    expect(await info).toEqual({ shards: [{ shard: 0, epoch: 7 }] });
    expect(await reset).toEqual({ shard: 1, epoch: 0 });
    expect(client.pendingCalls).toBe(0);
  });

  it("turns error responses into ControlError with code, message and data", async () => {
    const server = await fake({
      handler: (req) =>
        req.method === "epoch.reset"
          ? { error: { code: RpcErrors.FORBIDDEN, message: "epoch.reset needs the admin role", data: { role: "read" } } }
          : { error: { code: RpcErrors.REFUSED, message: "refused", data: 8 } },
    });
    const client = await connect(server);
    const e = await rejection(client.call("epoch.reset", { shard: 0 }));
    expect(e).toBeInstanceOf(ControlError);
    const ce = e as ControlError;
    expect([ce.code, ce.message, ce.data, ce.method, ce.codeName]).toEqual([
      RpcErrors.FORBIDDEN,
      "epoch.reset needs the admin role",
      { role: "read" },
      "epoch.reset",
      "FORBIDDEN",
    ]);
    const e2 = (await rejection(
      client.call("mappings.addStatic", { internalAddress: "10.0.0.1", protocol: 6, internalPort: 80, externalAddress: "203.0.113.1", externalPort: 8080 }),
    )) as ControlError;
    expect([e2.code, e2.data, e2.codeName]).toEqual([RpcErrors.REFUSED, 8, "REFUSED"]);
  });

  it("times a call out, and ignores its late answer", async () => {
    const held: RpcRequest[] = [];
    const server = await fake({
      handler: (req) => {
        if (req.method === "config.reload") {
          held.push(req);
          return undefined;
        }
        return { result: { shards: [] } };
      },
    });
    const client = await connect(server);
    const e = (await rejection(client.call("config.reload", {}, { timeoutMs: 100 }))) as ControlClientError;
    expect(e).toBeInstanceOf(ControlClientError);
    expect(e.code).toBe("TIMEOUT");
    expect(client.pendingCalls).toBe(0);
    server.sockets[0].send(JSON.stringify({ jsonrpc: "2.0", id: held[0].id, result: { restartNeededFor: [] } }));
    // The connection still works and the late answer went nowhere.
    expect(await client.call("epoch.get", {})).toEqual({ shards: [] });
  });

  it("rejects pending calls when the server closes the connection, and later calls at once", async () => {
    const server = await fake({ handler: () => undefined });
    const client = await connect(server);
    const closed = new Promise<[number, string]>((resolve) => client.once("close", (code, reason) => resolve([code, reason])));
    const a = client.call("server.info", {});
    const b = client.call("stats.get", {});
    await server.waitForRequests(2);
    server.sockets[0].close(1001, "stopping");
    const [ea, eb] = [await rejection(a), await rejection(b)] as ControlClientError[];
    expect([ea.code, eb.code]).toEqual(["CLOSED", "CLOSED"]);
    expect(ea.message).toContain("1001 stopping");
    expect(await closed).toEqual([1001, "stopping"]);
    expect(client.connected).toBe(false);
    expect(((await rejection(client.call("server.info", {}))) as ControlClientError).code).toBe("CLOSED");
  });

  it("rejects pending calls on close()", async () => {
    const server = await fake({ handler: () => undefined });
    const client = await connect(server);
    const a = client.call("server.info", {});
    await server.waitForRequests(1);
    await client.close();
    expect(((await rejection(a)) as ControlClientError).code).toBe("CLOSED");
    await client.close(); // idempotent
  });

  it("ignores garbage, notifications it does not know and responses to unknown ids", async () => {
    const server = await fake({
      handler: (_req, ws) => {
        ws.send("not json");
        ws.send(JSON.stringify({ jsonrpc: "2.0", id: 9999, result: 1 }));
        ws.send(JSON.stringify({ jsonrpc: "2.0", id: null, error: { code: -32700, message: "parse error" } }));
        ws.send(JSON.stringify({ jsonrpc: "2.0", method: "something.new", params: { a: 1 } }));
        return { result: { shards: [] } };
      },
    });
    const client = await connect(server);
    const seen: [string, unknown][] = [];
    client.on("notification", (method, params) => seen.push([method, params]));
    expect(await client.call("epoch.get", {})).toEqual({ shards: [] });
    expect(seen).toEqual([["something.new", { a: 1 }]]);
  });

  it("drops a connection whose server stops answering pings", async () => {
    const deaf = await startMuteServer("deaf");
    cleanups.push(() => deaf.close());
    const client = await ControlClient.connect(deaf.url, { token: "t", timeoutMs: 1000, keepAliveMs: 100 });
    cleanups.push(() => client.close());
    const pending = client.call("server.info", {}, { timeoutMs: 5000 });
    const e = (await rejection(pending)) as ControlClientError;
    expect(e.code).toBe("CLOSED");
  });
});

describe("events", () => {
  function subscribingServer() {
    return fake({
      handler: (req, ws) => {
        if (req.method === "events.subscribe") {
          // An event may race ahead of the subscribe response: it must be kept.
          ws.send(JSON.stringify({ jsonrpc: "2.0", method: "events.mappings", params: { events: [notice("create", 1)] } }));
          return { result: { subscribed: true } };
        }
        if (req.method === "events.unsubscribe") return { result: { subscribed: false } };
        return { error: { code: -32601, message: "no" } };
      },
    });
  }

  it("unpacks events.mappings batches and delivers them with events.dropped in order, and unsubscribes when the loop ends", async () => {
    const server = await subscribingServer();
    const client = await connect(server);
    const emitted: MappingEventNotice[] = [];
    const droppedEmitted: number[] = [];
    client.on("mapping", (e) => emitted.push(e));
    client.on("dropped", (n) => droppedEmitted.push(n));
    const subscription = await client.subscribe({ internalAddress: "10.0.0.1", protocol: 6 }, ["create", "delete"]);
    expect(server.requests[0].method).toBe("events.subscribe");
    expect(server.requests[0].params).toEqual({ filter: { internalAddress: "10.0.0.1", protocol: 6 }, kinds: ["create", "delete"] });
    const frames: string[] = [];
    client.on("notification", (method) => frames.push(method));
    server.notify("events.mappings", { events: [notice("refresh", 2), notice("refresh", 4)] });
    server.notify("events.mappings", { notEvents: [notice("refresh", 9)] }); // not a batch: ignored
    server.notify("events.dropped", { dropped: 5 });
    server.notify("events.mappings", { events: [notice("delete", 3)] });
    const items: SubscriptionItem[] = [];
    for await (const item of subscription) {
      items.push(item);
      if (items.length === 5) break;
    }
    expect(items).toEqual([
      { type: "event", event: notice("create", 1) },
      { type: "event", event: notice("refresh", 2) },
      { type: "event", event: notice("refresh", 4) },
      { type: "dropped", dropped: 5, source: "server" },
      { type: "event", event: notice("delete", 3) },
    ]);
    expect(emitted.map((e) => e.kind)).toEqual(["create", "refresh", "refresh", "delete"]);
    expect(frames).toEqual(["events.mappings", "events.mappings", "events.dropped", "events.mappings"]); // once per frame
    expect(droppedEmitted).toEqual([5]);
    await server.waitForRequests(2);
    expect(server.requests[1]).toMatchObject({ method: "events.unsubscribe", params: {} });
    expect(subscription.ended).toBe(true);
  });

  it("subscribes with an empty filter and no kinds by default", async () => {
    const server = await subscribingServer();
    const client = await connect(server);
    await client.subscribe();
    expect(server.requests[0].params).toEqual({ filter: {} });
    await client.subscribe({}, ["create"], { latest: { count: 50 } }); // sampled
    expect(server.requests[1].params).toEqual({ filter: {}, kinds: ["create"], latest: { count: 50 } });
  });

  it("ends the iterator on unsubscribe() and on close(); throws CLOSED when the connection is lost", async () => {
    const server = await subscribingServer();
    const client = await connect(server);
    const first = await client.subscribe();
    const drained = (async () => {
      const got: SubscriptionItem[] = [];
      for await (const item of first) got.push(item);
      return got;
    })();
    await client.unsubscribe();
    expect(await drained).toHaveLength(1);
    expect(server.requests.map((r) => r.method)).toEqual(["events.subscribe", "events.unsubscribe"]);

    // A second subscribe replaces (and ends) the first.
    const a = await client.subscribe({ kind: "static" });
    const b = await client.subscribe({ kind: "dynamic" });
    expect(a.ended).toBe(true);
    expect(b.ended).toBe(false);

    // Connection lost: the live iterator throws once the buffered items are read.
    const iter = b[Symbol.asyncIterator]();
    expect((await iter.next()).value).toEqual({ type: "event", event: notice("create", 1) });
    const next = iter.next();
    server.sockets[0].terminate();
    const e = (await rejection(next)) as ControlClientError;
    expect(e.code).toBe("CLOSED");
    expect((await iter.next()).done).toBe(true);

    // close() ends a live iterator normally.
    const client2 = await connect(server);
    const sub2 = await client2.subscribe();
    await client2.close();
    const got: SubscriptionItem[] = [];
    for await (const item of sub2) got.push(item);
    expect(got).toHaveLength(1);
  });

  it("counts what overflows a slow reader's buffer as dropped by the client", async () => {
    const server = await subscribingServer();
    const client = await connect(server);
    const subscription = await client.subscribe({}, undefined, { highWaterMark: 3 });
    let deleted = false; // the last notice has reached the client (and its subscription, in the same call)
    client.on("mapping", (e: MappingEventNotice) => (deleted ||= e.kind === "delete"));
    server.notify("events.mappings", { events: [2, 3, 4].map((i) => notice("refresh", i)) });
    server.notify("events.mappings", { events: [notice("refresh", 5), notice("refresh", 6), notice("delete", 7)] });
    await waitFor(() => deleted);
    const items: SubscriptionItem[] = [];
    for await (const item of subscription) {
      items.push(item);
      if (items.length === 4) break;
    }
    // create 1, refresh 2, refresh 3 fit; 4, 5, 6 and delete 7 were dropped here.
    expect(items).toEqual([
      { type: "event", event: notice("create", 1) },
      { type: "event", event: notice("refresh", 2) },
      { type: "event", event: notice("refresh", 3) },
      { type: "dropped", dropped: 4, source: "client" },
    ]);
  });

  it("rejects subscribe() with the server's error and leaves no subscription", async () => {
    const server = await fake({ handler: () => ({ error: { code: RpcErrors.INVALID_PARAMS, message: "filter.internalAddress: must be an IP address" } }) });
    const client = await connect(server);
    const e = (await rejection(client.subscribe({ internalAddress: "x" }))) as ControlError;
    expect(e.code).toBe(RpcErrors.INVALID_PARAMS);
    expect(e.codeName).toBe("INVALID_PARAMS");
  });
});

describe("token file", () => {
  it("lives in XDG_RUNTIME_DIR/pcpd when set, else in a per-user directory under tmpdir; keyed by the control port", () => {
    expect(defaultTokenFile(5380, { XDG_RUNTIME_DIR: "/run/user/1000" })).toBe("/run/user/1000/pcpd/control-5380.token");
    expect(defaultTokenFile(5381, {})).toBe(join(tmpdir(), `pcpd-${process.getuid!()}`, "control-5381.token"));
    expect(defaultTokenFile(5380, { XDG_RUNTIME_DIR: "" })).toBe(join(tmpdir(), `pcpd-${process.getuid!()}`, "control-5380.token"));
    expect(defaultTokenFile(undefined, {})).toBe(join(tmpdir(), `pcpd-${process.getuid!()}`, "control.token")); // before 0.2
  });

  it("is looked for in XDG_RUNTIME_DIR, then under tmpdir, then unkeyed (a server before 0.2)", () => {
    const dir = mkdtempSync(join(tmpdir(), "pcpctl-token-"));
    const fallback = join(tmpdir(), `pcpd-${process.getuid!()}`, "control-7.token");
    expect(defaultTokenFiles(7, { XDG_RUNTIME_DIR: dir })).toEqual([join(dir, "pcpd", "control-7.token"), fallback]);
    expect(defaultTokenFiles(7, {})).toEqual([fallback]);
    mkdirSync(join(dir, "pcpd"));
    writeFileSync(join(dir, "pcpd", "control.token"), "x");
    expect(findTokenFile(7, { XDG_RUNTIME_DIR: dir })).toBe(join(dir, "pcpd", "control.token"));
    writeFileSync(join(dir, "pcpd", "control-7.token"), "x");
    expect(findTokenFile(7, { XDG_RUNTIME_DIR: dir })).toBe(join(dir, "pcpd", "control-7.token"));
    expect(findTokenFile(8, { XDG_RUNTIME_DIR: dir })).toBe(join(dir, "pcpd", "control.token"));
  });

  it("is removed only while it holds the token it was written with", () => {
    const dir = mkdtempSync(join(tmpdir(), "pcpctl-token-"));
    const path = join(dir, "pcpd", "control-7.token");
    writeTokenFile(path, "mine");
    writeTokenFile(path, "theirs"); // another instance wrote its own since
    expect(removeTokenFile(path, "mine")).toBe(false);
    expect(readTokenFile(path)).toBe("theirs");
    expect(removeTokenFile(path, "theirs")).toBe(true);
    expect(existsSync(path)).toBe(false);
    expect(removeTokenFile(path, "theirs")).toBe(false);
  });

  it("is not written into a directory other users can write to", () => {
    const dir = mkdtempSync(join(tmpdir(), "pcpctl-token-"));
    mkdirSync(join(dir, "shared"));
    chmodSync(join(dir, "shared"), 0o777);
    expect(() => writeTokenFile(join(dir, "shared", "control.token"), "abc")).toThrow(/writable by other users/);
    // A readable one (say /run/pcpd, 0755) is fine: the file itself is 0600.
    mkdirSync(join(dir, "run"));
    chmodSync(join(dir, "run"), 0o755);
    writeTokenFile(join(dir, "run", "control.token"), "abc");
    expect(statSync(join(dir, "run", "control.token")).mode & 0o777).toBe(0o600);
  });

  it("is written 0600 in a 0700 directory and read back trimmed", () => {
    const dir = mkdtempSync(join(tmpdir(), "pcpctl-token-"));
    const path = join(dir, "pcpd", "control.token");
    writeTokenFile(path, "abc123");
    expect(readFileSync(path, "utf8")).toBe("abc123\n");
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, "pcpd")).mode & 0o777).toBe(0o700);
    expect(readTokenFile(path)).toBe("abc123");
    writeFileSync(path, "  \n");
    expect(() => readTokenFile(path)).toThrow(/empty/);
  });
});
