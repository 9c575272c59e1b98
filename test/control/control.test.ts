// The control channel end to end: a running server (worker pool, real UDP sockets) and
// its uWebSockets.js control channel, driven over real WebSocket connections.
import dgram from "node:dgram";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pino } from "pino";
import WebSocket from "ws";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import * as W from "../../src/wire.generated.js";
import { parseConfig, type Config } from "../../src/config/schema.js";
import { startServer, type RunningServer } from "../../src/server/server.js";
import { startControl, type RunningControl } from "../../src/control/server.js";
import { RpcErrors } from "../../src/control/protocol.js";
import { mapRequest, nonceOf, thirdParty } from "../helpers/packets.js";
import { waitFor, withTimeout } from "../helpers/wait.js";
import { tempDir } from "../helpers/temp.js";

const UDP = "127.0.0.41"; // the server's PCP address
const AFTR = "127.0.0.42"; // a trusted THIRD_PARTY source standing for many subscribers
const ADMIN = "admin-token-0123456789abcdef";
const READER = "reader-token-0123456789abcdef";
const log = pino({ level: "silent" });

function configWith(over: Record<string, unknown> = {}): Config {
  return parseConfig({
    listen: { addresses: [UDP], port: 0 },
    thirdPartySources: [`${AFTR}/32`],
    rateLimit: { global: { rate: 1e6, burst: 1e6 } },
    control: {
      address: "127.0.0.1",
      port: 0,
      tokens: [
        { token: ADMIN, role: "admin" },
        { token: READER, role: "read" },
      ],
      eventBufferBytes: 4096,
      requestsPerSecond: 2000,
    },
    log: { level: "silent" },
    persistence: { enabled: false },
    ...over,
  });
}

let server: RunningServer;
let control: RunningControl;
let reloads = 0;

beforeAll(async () => {
  const config = configWith();
  server = await startServer(config, log);
  control = await startControl({
    config: config.control,
    server,
    log,
    version: "test",
    rateIntervalMs: 250,
    reloadConfig: async () => {
      reloads++;
      return server.reload(configWith({ natPmp: "silent" }));
    },
  });
});
afterAll(async () => {
  await control.stop();
  await server.stop();
});

const url = () => `ws://127.0.0.1:${control.port}/control`;

interface Client {
  ws: WebSocket;
  call(method: string, params?: unknown): Promise<any>;
  /** Sends raw text; resolves with the reply carrying `id` (null for errors before an id is known). */
  raw(text: string | Buffer, id?: number | null): Promise<any>;
  notes: any[];
}

function connect(token?: string): Promise<Client> {
  const ws = new WebSocket(url(), token ? { headers: { Authorization: `Bearer ${token}` } } : {});
  const waiting = new Map<unknown, (m: unknown) => void>();
  const notes: any[] = [];
  ws.on("message", (data) => {
    const m = JSON.parse(data.toString());
    if (m.id === undefined) notes.push(m);
    else waiting.get(m.id)?.(m);
  });
  let id = 0;
  const client: Client = {
    ws,
    notes,
    call: (method, params) =>
      new Promise((resolve) => {
        const i = ++id;
        waiting.set(i, resolve);
        ws.send(JSON.stringify({ jsonrpc: "2.0", id: i, method, params }));
      }),
    raw: (text, id = null) =>
      new Promise((resolve) => {
        waiting.set(id, resolve);
        ws.send(text);
      }),
  };
  return new Promise((resolve, reject) => {
    ws.once("open", () => resolve(client));
    ws.once("unexpected-response", (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    ws.once("error", reject);
  });
}

/**
 * MAP requests through the trusted third party: `n` subscribers 10.9.x.y, `perSub` ports
 * each, at most 64 outstanding (so no socket buffer overflows); every one answered.
 */
async function populate(n: number, perSub: number): Promise<void> {
  const socket = dgram.createSocket("udp4");
  await new Promise<void>((resolve) => socket.bind(0, AFTR, resolve));
  const port = server.addresses[0].port;
  const total = n * perSub;
  let sent = 0;
  let answered = 0;
  const sendNext = () => {
    const s = Math.floor(sent / perSub);
    const k = sent % perSub;
    sent++;
    socket.send(mapRequest({ client: AFTR, internalPort: 1000 + k, nonce: nonceOf(s), lifetime: 3600 }, [thirdParty(`10.9.${s >> 8}.${s & 255}`)]), port, UDP);
  };
  const done = new Promise<void>((resolve) =>
    socket.on("message", (m) => {
      expect(m[3]).toBe(W.RESULT_SUCCESS);
      if (++answered === total) resolve();
      else if (sent < total) sendNext();
    }),
  );
  while (sent < Math.min(64, total)) sendNext();
  try {
    await withTimeout(done, 30_000, () => `${answered} of ${total} MAP requests answered`);
  } finally {
    socket.close();
  }
}

describe("authentication and roles", () => {
  it("takes a token in the subprotocols (as a browser sends it), answers pcpd-control and never echoes the token", async () => {
    const offer = (token: string) => ["pcpd-control", `pcpd-bearer.${Buffer.from(token).toString("base64url")}`];
    const ws = new WebSocket(url(), offer(READER));
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
    });
    expect(ws.protocol).toBe("pcpd-control");
    ws.close();
    for (const protocols of [offer("wrong-token-0123456789abcdef"), ["pcpd-control"], ["pcpd-control", "pcpd-bearer."]]) {
      const refused = new WebSocket(url(), protocols);
      await expect(new Promise((_resolve, reject) => refused.once("error", reject))).rejects.toThrow("Unexpected server response: 401");
    }
  });

  it("refuses an upgrade without a token or with a wrong one (401)", async () => {
    await expect(connect()).rejects.toThrow("HTTP 401");
    await expect(connect("wrong-token-0123456789abcdef")).rejects.toThrow("HTTP 401");
  });

  it("a read token may read but not change anything", async () => {
    const c = await connect(READER);
    expect((await c.call("server.info")).result).toMatchObject({ protocol: "pcpd-control/2", role: "read", workers: 1 });
    const r = await c.call("mappings.addStatic", {
      internalAddress: "192.0.2.7",
      protocol: 6,
      internalPort: 22,
      externalAddress: "203.0.113.2",
      externalPort: 2222,
    });
    expect(r.error.code).toBe(RpcErrors.FORBIDDEN);
    c.ws.close();
  });
});

describe("bad input gets a precise error and harms nothing", () => {
  it("malformed JSON, invalid requests, unknown methods, wrong parameter types, binary frames", async () => {
    const c = await connect(ADMIN);
    expect((await c.raw("{not json")).error.code).toBe(RpcErrors.PARSE_ERROR);
    expect((await c.raw(JSON.stringify([1, 2]))).error.code).toBe(RpcErrors.INVALID_REQUEST);
    const noVersion = await c.raw(JSON.stringify({ id: 5, method: "server.info" }), 5); // answered with its id
    expect(noVersion.error).toMatchObject({ code: RpcErrors.INVALID_REQUEST, message: expect.stringContaining('"jsonrpc": "2.0"') });
    const unknown = await c.call("mappings.frobnicate");
    expect(unknown.error).toMatchObject({ code: RpcErrors.METHOD_NOT_FOUND, message: 'unknown method "mappings.frobnicate"' });
    const types = await c.call("mappings.get", { internalAddress: "192.0.2.1", protocol: "tcp", internalPort: 80 });
    expect(types.error.code).toBe(RpcErrors.INVALID_PARAMS);
    const extra = await c.call("epoch.reset", { shard: 0, force: true });
    expect(extra.error.code).toBe(RpcErrors.INVALID_PARAMS);
    expect(extra.error.message).toMatch(/force|unrecognized/i);
    expect((await c.raw(Buffer.from([1, 2, 3]))).error.code).toBe(RpcErrors.INVALID_REQUEST);
    expect((await c.call("server.health")).result.status).toBe("ok"); // the connection still serves
    c.ws.close();
  });

  it("an oversized message closes that connection and no other", async () => {
    const other = await connect(ADMIN);
    const c = await connect(ADMIN);
    const closed = new Promise<number>((resolve) => c.ws.on("close", (code) => resolve(code)));
    c.ws.send(JSON.stringify({ jsonrpc: "2.0", id: 1, method: "server.info", params: { pad: "x".repeat(70_000) } }));
    expect([1006, 1009]).toContain(await closed); // uWS drops the connection at once
    expect((await other.call("server.health")).result.status).toBe("ok");
    other.ws.close();
  });
});

describe("methods", () => {
  it("static mappings: add, get by either side, remove; refusals carry the PCP result", async () => {
    const c = await connect(ADMIN);
    const added = await c.call("mappings.addStatic", {
      internalAddress: "192.0.2.7",
      protocol: 6,
      internalPort: 22,
      externalAddress: "203.0.113.2",
      externalPort: 2222,
    });
    expect(added.result.mapping).toMatchObject({
      kind: "static",
      internalAddress: "192.0.2.7",
      externalAddress: "203.0.113.2",
      externalPort: 2222,
      inbound: true,
    });
    const clash = await c.call("mappings.addStatic", {
      internalAddress: "192.0.2.8",
      protocol: 6,
      internalPort: 22,
      externalAddress: "203.0.113.2",
      externalPort: 2222,
    });
    expect(clash.error).toMatchObject({ code: RpcErrors.REFUSED, data: { result: W.RESULT_CANNOT_PROVIDE_EXTERNAL } });
    expect((await c.call("mappings.get", { externalAddress: "203.0.113.2", protocol: 6, externalPort: 2222 })).result.mapping.internalAddress).toBe(
      "192.0.2.7",
    );
    expect((await c.call("mappings.get", { internalAddress: "192.0.2.7", protocol: 6, internalPort: 22 })).result.mapping.externalPort).toBe(2222);
    expect((await c.call("mappings.removeStatic", { internalAddress: "192.0.2.7", protocol: 6, internalPort: 22 })).result).toEqual({ removed: true });
    expect((await c.call("mappings.removeStatic", { internalAddress: "192.0.2.7", protocol: 6, internalPort: 22 })).error.code).toBe(RpcErrors.REFUSED);
    c.ws.close();
  });

  it("lists a table in pages with filters; subscriber usage and deletion; stats", async () => {
    await populate(60, 40); // 2400 mappings
    const c = await connect(READER);
    const seen = new Set<string>();
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = (await c.call("mappings.list", { filter: { kind: "dynamic" }, limit: 1000, ...(cursor ? { cursor } : {}) })).result;
      for (const m of page.mappings) seen.add(`${m.internalAddress}:${m.internalPort}`);
      cursor = page.next ?? undefined;
      pages++;
    } while (cursor && pages < 20);
    expect(seen.size).toBe(2400);
    expect(pages).toBeGreaterThanOrEqual(3);
    const one = (await c.call("mappings.list", { filter: { internalAddress: "10.9.0.5", protocol: 6 }, limit: 1000 })).result;
    expect(one.mappings).toHaveLength(40);
    expect(one.mappings.every((m: { thirdParty: boolean }) => m.thirdParty)).toBe(true);
    expect((await c.call("mappings.list", { cursor: "bogus" })).error.code).toBe(RpcErrors.INVALID_PARAMS);
    expect((await c.call("subscribers.usage", { internalAddress: "10.9.0.5" })).result.shards).toEqual([{ shard: 0, mappings: 40, blocks: 1 }]);
    const stats = (await c.call("stats.get")).result;
    expect(stats.engine.mappings).toBe(2400);
    // Rates: refreshes at about 200/s for 1.2 s, so the last 250 ms sample interval lies
    // inside them. The 5 ms waits pace the traffic (the behaviour measured), they
    // synchronise nothing; the rate reported is checked against the rate achieved, which a
    // loaded machine lowers.
    const socket = dgram.createSocket("udp4");
    await new Promise<void>((resolve) => socket.bind(0, AFTR, resolve));
    const t0 = performance.now();
    let sent = 0;
    for (; performance.now() - t0 < 1200; sent++) {
      socket.send(mapRequest({ client: AFTR, internalPort: 1000, nonce: nonceOf(0), lifetime: 3600 }, [thirdParty("10.9.0.0")]), server.addresses[0].port, UDP);
      await new Promise((r) => setTimeout(r, 5));
    }
    const achieved = sent / ((performance.now() - t0) / 1000);
    socket.close();
    const rates = (await c.call("stats.get")).result.rates;
    expect(rates.intervalSeconds).toBeGreaterThanOrEqual(0.2);
    expect(rates.packets).toBeGreaterThan(achieved / 3);
    expect(rates.packets).toBeLessThan(achieved * 3);
    expect(rates.refreshed).toBeGreaterThan(achieved / 3);
    expect(rates.created).toBe(0);
    expect(stats.pcpResults.SUCCESS).toBeGreaterThanOrEqual(2400);
    expect(stats.shards[0]).toMatchObject({ shard: 0, mappings: 2400 });
    c.ws.close();
    const admin = await connect(ADMIN);
    expect((await admin.call("subscribers.deleteMappings", { internalAddress: "10.9.0.5" })).result).toEqual({ deleted: 40 });
    expect((await admin.call("subscribers.usage", { internalAddress: "10.9.0.5" })).result.shards[0].mappings).toBe(0);
    admin.ws.close();
  });

  it("configuration view (secrets redacted) and reload", async () => {
    const c = await connect(ADMIN);
    const view = (await c.call("config.get")).result.config;
    expect(view.listen.addresses).toEqual([UDP]);
    expect(JSON.stringify(view)).not.toContain(ADMIN);
    expect(view.control.tokens[0]).toEqual({ role: "admin", token: "<redacted>" });
    expect((await c.call("config.reload")).result).toEqual({ restartNeededFor: [] });
    expect(reloads).toBe(1);
    expect(server.config().natPmp).toBe("silent");
    c.ws.close();
  });

  it("epoch: per shard, and a forced reset restarts the shard's Epoch", async () => {
    await waitFor(() => server.epochs()[0] >= 1); // so that a reset shows
    const c = await connect(ADMIN);
    const before = (await c.call("epoch.get")).result.shards[0].epoch;
    expect(before).toBeGreaterThanOrEqual(1);
    const reset = (await c.call("epoch.reset", { shard: 0 })).result;
    expect(reset.shard).toBe(0);
    expect(reset.epoch).toBeLessThan(before);
    expect((await c.call("epoch.reset", { shard: 7 })).error.code).toBe(RpcErrors.INVALID_PARAMS);
    expect((await c.call("stats.get")).result.engine.mappings).toBe(0); // the reset shard starts empty
    c.ws.close();
  });
});

describe("live events", () => {
  /** The events of a connection's `events.mappings` frames, in order. */
  const eventsOf = (notes: any[]) => notes.filter((n) => n.method === "events.mappings").flatMap((n) => n.params.events);

  it("a subscriber gets the mapping events it filtered for", async () => {
    const c = await connect(READER);
    expect((await c.call("events.subscribe", { filter: { internalAddress: "10.9.1.1" }, kinds: ["create"] })).result).toEqual({ subscribed: true });
    await populate(300, 1); // 10.9.0.0 … 10.9.1.43: one of them is 10.9.1.1
    await waitFor(() => c.notes.length > 0);
    expect((await c.call("events.unsubscribe")).result).toEqual({ subscribed: false }); // notes sent before it have arrived
    expect(c.notes.map((n) => n.method)).toEqual(["events.mappings"]);
    expect(eventsOf(c.notes).map((e) => [e.kind, e.mapping.internalAddress])).toEqual([["create", "10.9.1.1"]]);
    c.ws.close();
  });

  it("events come several to a frame (at most 256), every one once, filtered on protocol, external address and kind", async () => {
    const all = await connect(READER);
    const one = await connect(READER);
    const none = await connect(READER);
    const external = (await all.call("stats.get")).result.shards[0].pool[0].address;
    await all.call("events.subscribe", { filter: { protocol: 6, kind: "dynamic" }, kinds: ["refresh", "create"] });
    await one.call("events.subscribe", { filter: { externalAddress: external } });
    await none.call("events.subscribe", { filter: { protocol: 17 }, kinds: ["create"] }); // populate maps TCP only
    await populate(300, 2); // 300 refreshes (port 1000, mapped by the previous test's run) and 300 creates
    await waitFor(() => eventsOf(all.notes).length >= 600, { message: () => `${eventsOf(all.notes).length} of 600 events` });
    for (const c of [all, one, none]) await c.call("events.unsubscribe"); // every note sent before has arrived
    const events = eventsOf(all.notes);
    expect(events).toHaveLength(600);
    const frames = all.notes.filter((n) => n.method === "events.mappings");
    expect(frames.length).toBeLessThan(events.length / 4);
    for (const f of frames) expect(f.params.events.length).toBeLessThanOrEqual(256);
    const key = (e: any) => `${e.kind} ${e.mapping.internalAddress} ${e.mapping.internalPort}`;
    expect(new Set(events.map(key)).size).toBe(600);
    expect(events.every((e) => e.mapping.protocol === 6 && e.mapping.kind === "dynamic" && e.shard === 0)).toBe(true);
    const onExternal = events.filter((e) => e.mapping.externalAddress === external).map(key);
    expect(onExternal.length).toBeGreaterThan(0);
    expect(eventsOf(one.notes).map(key)).toEqual(onExternal);
    expect(none.notes).toEqual([]);
    for (const c of [all, one, none]) c.ws.close();
  });

  it("a slow subscriber loses events with a notice, not memory; a fast one on the same server gets them all", async () => {
    const slow = await connect(READER);
    const fast = await connect(READER);
    await slow.call("events.subscribe", {});
    // The fast one follows the last subscriber populate makes: once it has that one's 30
    // creates, every event has been offered to the slow one (one shard: events in order).
    await fast.call("events.subscribe", { filter: { internalAddress: "10.9.3.231" } });
    (slow.ws as unknown as { _socket: { pause(): void } })._socket.pause(); // stops reading: the kernel buffers, then the server's, fill
    await populate(1000, 30); // 30000 new mappings (subscribers 10.9.0.0 … 10.9.3.231), ~12 MB of events
    const creates = (list: any[]) => eventsOf(list).filter((e) => e.kind === "create");
    await waitFor(() => creates(fast.notes).length >= 30, { message: () => `${creates(fast.notes).length} of 30` });
    (slow.ws as unknown as { _socket: { resume(): void } })._socket.resume();
    const dropped = () => slow.notes.filter((n) => n.method === "events.dropped");
    const lost = () => dropped().reduce((a, n) => a + n.params.dropped, 0);
    // Every create is delivered or counted: the 600 first ports the previous tests mapped are refreshes.
    await waitFor(() => creates(slow.notes).length + lost() >= 30000 - 600, {
      timeout: 30_000,
      message: () => `${creates(slow.notes).length} delivered + ${lost()} lost`,
    });
    expect(dropped().length).toBeGreaterThanOrEqual(1);
    expect(lost()).toBeGreaterThan(0);
    expect(creates(slow.notes).length + lost()).toBe(30000 - 600);
    expect(creates(fast.notes)).toHaveLength(30);
    slow.ws.close();
    fast.ws.close();
  });

  it("a sampled subscription (latest) gets the newest events of each interval and its total; the shards stream nothing for it", async () => {
    const sample = await connect(READER);
    const one = await connect(READER);
    expect((await sample.call("events.subscribe", { kinds: ["refresh"], latest: { count: 5, intervalMs: 250 } })).result).toEqual({ subscribed: true });
    // Filtered in the shard, over every record of the interval: all of one subscriber's.
    await one.call("events.subscribe", { filter: { internalAddress: "10.9.0.7" }, latest: { count: 10, intervalMs: 250 } });
    let posted = 0;
    server.onEvents(() => posted++); // the shards' event messages (the full stream's path)
    await populate(100, 3); // 300 refreshes (ports 1000–1002 of 10.9.0.0 … 10.9.0.99, mapped by the tests before)
    const frames = (c: Client) => c.notes.filter((n) => n.method === "events.mappings");
    const total = (c: Client) => frames(c).reduce((a, n) => a + n.params.total, 0);
    await waitFor(() => total(sample) >= 300 && eventsOf(one.notes).length >= 3, { message: () => `${total(sample)} of 300 counted` });
    for (const c of [sample, one]) await c.call("events.unsubscribe");
    expect(total(sample)).toBe(300);
    expect(posted).toBe(0);
    for (const f of frames(sample)) expect(f.params.events.length).toBeLessThanOrEqual(5);
    const sampled = eventsOf(sample.notes);
    expect(sampled.length).toBeGreaterThan(0);
    expect(sampled.every((e) => e.kind === "refresh" && e.mapping.protocol === 6 && e.shard === 0)).toBe(true);
    expect(
      eventsOf(one.notes)
        .map((e) => `${e.kind} ${e.mapping.internalAddress}:${e.mapping.internalPort}`)
        .sort(),
    ).toEqual(["refresh 10.9.0.7:1000", "refresh 10.9.0.7:1001", "refresh 10.9.0.7:1002"]);
    expect(total(one)).toBe(300); // the total is before the filter
    // The params are checked: a count above the limit is refused.
    expect((await sample.call("events.subscribe", { latest: { count: 5000 } })).error.code).toBe(RpcErrors.INVALID_PARAMS);
    for (const c of [sample, one]) c.ws.close();
  });
});

describe("HTTP endpoints", () => {
  it("/metrics parses as Prometheus text; /healthz answers ok", async () => {
    const base = `http://127.0.0.1:${control.port}`;
    const text = await (await fetch(`${base}/metrics`)).text();
    const families = parsePrometheusTextFormat(text) as { name: string; type: string; metrics: { value?: string; labels?: Record<string, string> }[] }[];
    const mappings = families.find((f) => f.name === "pcpd_mappings")!;
    expect(mappings.type).toBe("GAUGE");
    expect(mappings.metrics[0].labels).toEqual({ shard: "0" });
    expect(families.find((f) => f.name === "pcpd_packets_total")!.type).toBe("COUNTER");
    const health = await fetch(`${base}/healthz`);
    expect([health.status, await health.text()]).toEqual([200, "ok\n"]);
    expect((await fetch(`${base}/nothing`)).status).toBe(404);
  });
});

describe("per-connection rate limit", () => {
  it("requests over the connection's rate get RATE_LIMITED; the connection stays", async () => {
    const config = configWith({ listen: { addresses: ["127.0.0.43"], port: 0 } });
    const s = await startServer(config, log);
    const ctl = await startControl({ config: { ...config.control, requestsPerSecond: 5 }, server: s, log, version: "test", reloadConfig: async () => [] });
    try {
      const ws = new WebSocket(`ws://127.0.0.1:${ctl.port}/control`, { headers: { Authorization: `Bearer ${ADMIN}` } });
      await new Promise((r) => ws.once("open", r));
      const replies: any[] = [];
      ws.on("message", (d) => replies.push(JSON.parse(d.toString())));
      for (let i = 1; i <= 30; i++) ws.send(JSON.stringify({ jsonrpc: "2.0", id: i, method: "server.health" }));
      await waitFor(() => replies.length >= 30, { message: () => `${replies.length} replies` });
      expect(replies).toHaveLength(30);
      const limited = replies.filter((r) => r.error?.code === RpcErrors.RATE_LIMITED);
      expect(limited.length).toBeGreaterThanOrEqual(15);
      expect(limited.every((r) => typeof r.id === "number")).toBe(true);
      ws.close();
    } finally {
      await ctl.stop();
      await s.stop();
    }
  });
});

describe("TLS and the native addon", () => {
  it("serves wss:// with the configured certificate", async (ctx) => {
    const { execFileSync } = await import("node:child_process");
    const { readFileSync } = await import("node:fs");
    const { join } = await import("node:path");
    const dir = tempDir("pcpd-tls");
    try {
      execFileSync(
        "openssl",
        [
          "req",
          "-x509",
          "-newkey",
          "rsa:2048",
          "-nodes",
          "-keyout",
          join(dir, "key.pem"),
          "-out",
          join(dir, "cert.pem"),
          "-days",
          "1",
          "-subj",
          "/CN=localhost",
          "-addext",
          "subjectAltName=IP:127.0.0.1",
        ],
        { stdio: "ignore" },
      );
    } catch {
      return ctx.skip("openssl is not available to make a test certificate");
    }
    const config = configWith({ listen: { addresses: ["127.0.0.44"], port: 0 } });
    const s = await startServer(config, log);
    const ctl = await startControl({
      config: { ...config.control, tls: { cert: join(dir, "cert.pem"), key: join(dir, "key.pem") } },
      server: s,
      log,
      version: "test",
      reloadConfig: async () => [],
    });
    try {
      const ws = new WebSocket(`wss://127.0.0.1:${ctl.port}/control`, {
        headers: { Authorization: `Bearer ${READER}` },
        ca: readFileSync(join(dir, "cert.pem")),
      });
      await new Promise((resolve, reject) => {
        ws.once("open", resolve);
        ws.once("error", reject);
      });
      const reply = new Promise<any>((resolve) => ws.once("message", (d) => resolve(JSON.parse(d.toString()))));
      ws.send(JSON.stringify({ jsonrpc: "2.0", id: 1, method: "server.health" }));
      expect((await reply).result.status).toBe("ok");
      ws.close();
      // Plain ws:// to the TLS port fails.
      await expect(
        new Promise((resolve, reject) => {
          const plain = new WebSocket(`ws://127.0.0.1:${ctl.port}/control`, { headers: { Authorization: `Bearer ${READER}` } });
          plain.once("open", resolve);
          plain.once("error", reject);
        }),
      ).rejects.toThrow();
    } finally {
      await ctl.stop();
      await s.stop();
    }
  });

  it("refuses to run on the uWebSockets.js JavaScript fallback", async () => {
    const { execFileSync } = await import("node:child_process");
    const out = execFileSync(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        "import('./dist/control/server.js').then((m) => { try { m.loadUws(); console.log('loaded'); } catch (e) { console.log(e.message); } })",
      ],
      {
        env: { ...process.env, UWS_USE_FALLBACK: "1" },
        cwd: new URL("../..", import.meta.url).pathname,
      },
    ).toString();
    expect(out).toContain("native addon did not load");
  });
});
