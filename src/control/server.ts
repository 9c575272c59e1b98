// The control channel: JSON-RPC 2.0 over WebSocket on uWebSockets.js (protocol.ts), with
// /metrics (Prometheus text) and /healthz on the same port. Bound to a management address
// (loopback by default); every WebSocket is authenticated at the upgrade by a bearer token
// whose role (read or admin) decides which methods it may call. Bad input gets a precise
// JSON-RPC error and never reaches the packet path. Counters, Epochs and pool gauges are
// read from the shards' shared-memory boards; lookups and listings are tasks on a shard's
// worker that visit a bounded number of records and return raw records decoded here.
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { isIPv6 } from "node:net";
import { createRequire } from "node:module";
import type { Logger } from "pino";
import type { TemplatedApp, WebSocket as UwsSocket, us_listen_socket } from "uWebSockets.js";
import * as W from "../wire.generated.js";
import type { Config } from "../config/schema.js";
import type { RunningServer } from "../server/server.js";
import type { ShardStats } from "../shard/tasks.js";
import { mappingKind, selects } from "../shard/tasks.js";
import { decodeRecords, type Filter, type MappingEvent, type MappingRecords } from "../engine/packet-engine.js";
import { defaultTokenFile, writeTokenFile } from "../client/token-file.js";
import type { DataplaneConsumer } from "../dataplane/event-stream.js";
import { DROP_REASON_LABELS, Metrics, NATPMP_RESULT_LABELS, PCP_RESULT_LABELS } from "./metrics.js";
import {
  ADMIN_METHODS,
  CONTROL_PATH,
  NOTIFY_DROPPED,
  NOTIFY_EVENTS,
  PROTOCOL,
  Params,
  RpcErrors,
  type Mapping,
  type MappingEventNotice,
  type MappingFilter,
  type Method,
  type Results,
  type Role,
  type RpcFailure,
} from "./protocol.js";

const require = createRequire(import.meta.url);

/**
 * The uWebSockets.js alias package falls back, with only a console warning, to a slow
 * JavaScript implementation when its native addon does not load; the fallback has no
 * SSLApp. Refuse to run on it.
 */
export function loadUws(): typeof import("uWebSockets.js") {
  const uws = require("uWebSockets.js") as typeof import("uWebSockets.js");
  if (typeof uws.SSLApp !== "function" || typeof uws.us_socket_local_port !== "function") {
    throw new Error(`uWebSockets.js native addon did not load for ${process.platform}-${process.arch} ABI ${process.versions.modules}; the control channel will not run on the JavaScript fallback`);
  }
  return uws;
}

class RpcError extends Error {
  constructor(readonly code: number, message: string, readonly data?: unknown) {
    super(message);
  }
}

interface Connection {
  role: Role;
  open: boolean;
  tokens: number;
  last: number;
  subscription?: { filter: MappingFilter; kinds?: Set<string> };
  /** Events dropped since the subscriber last caught up. */
  dropped: number;
  /** This connection consumes dataplane operations (dataplane.backend "events"). */
  dataplane?: DataplaneConsumer;
}

export interface ControlOptions {
  config: Config["control"];
  server: RunningServer;
  log: Logger;
  version: string;
  /** Re-reads the configuration source and applies it (the CLI's SIGHUP path). */
  reloadConfig: () => Promise<string[]>;
  /** Sampling interval of the rates in stats.get (default RATE_INTERVAL_MS). */
  rateIntervalMs?: number;
}

export interface RunningControl {
  port: number;
  /** The generated admin token's file, when no token was configured. */
  tokenFile?: string;
  stop(): Promise<void>;
}

const digest = (s: string) => createHash("sha256").update(s).digest();
/** Sampling interval of the rates in stats.get. */
export const RATE_INTERVAL_MS = 10_000;
const RESULT_NAMES = new Map(PCP_RESULT_LABELS);

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
  };
}

/** Mappings from a shard's records (a listing page or a lookup). */
function toMappings(shard: number, r: MappingRecords): Mapping[] {
  return decodeRecords(r).map((m, i) => toMapping(shard, m, r.filters?.[i] ?? [], r.now ?? m.time, r.descriptions?.[i], r.thirdPartyIds?.[i]));
}

function toNotice(shard: number, e: MappingEvent): MappingEventNotice {
  const { filters: _none, shard: _shard, expiresIn: _later, ...mapping } = toMapping(shard, e, [], e.time);
  return { shard, kind: e.kind as MappingEventNotice["kind"], mapping, time: e.time };
}

/** The configuration as shown to operators: secrets replaced. */
function redacted(c: Config): unknown {
  return {
    ...c,
    control: {
      ...c.control,
      tokens: c.control.tokens.map((t) => ({ role: t.role, ...(t.tokenEnv ? { tokenEnv: t.tokenEnv } : { token: "<redacted>" }) })),
      tls: c.control.tls ? { ...c.control.tls, passphrase: c.control.tls.passphrase ? "<redacted>" : undefined } : undefined,
    },
  };
}

const totalPackets = (stats: Awaited<ReturnType<RunningServer["stats"]>>) => stats.shards.reduce((n, s) => n + Number(s.codec.packets), 0);

const encodeCursor = (shard: number, record: number) => `${shard}:${record}`;
function decodeCursor(cursor: string | undefined, shards: number): { shard: number; record: number } {
  if (cursor === undefined) return { shard: 0, record: 1 };
  const m = /^(\d+):(\d+)$/.exec(cursor);
  if (!m || Number(m[1]) >= shards) throw new RpcError(RpcErrors.INVALID_PARAMS, "cursor: not a cursor returned by mappings.list");
  return { shard: Number(m[1]), record: Number(m[2]) };
}

export async function startControl(o: ControlOptions): Promise<RunningControl> {
  const uws = loadUws();
  const { config: c, server, log } = o;
  const startedAt = new Date();

  // Tokens: configured ones (inline or from the environment), else one generated admin token.
  const tokens: { hash: Buffer; role: Role }[] = [];
  for (const t of c.tokens) {
    const value = t.token ?? process.env[t.tokenEnv!];
    if (!value || value.length < 16) throw new Error(`control.tokens: environment variable ${t.tokenEnv} is unset or shorter than 16 characters`);
    tokens.push({ hash: digest(value), role: t.role });
  }
  let tokenFile: string | undefined;
  if (tokens.length === 0) {
    const token = randomBytes(32).toString("base64url");
    tokenFile = c.tokenFile ?? defaultTokenFile();
    writeTokenFile(tokenFile, token);
    tokens.push({ hash: digest(token), role: "admin" });
  }
  /** Constant-time: every configured token is compared, by digest (equal lengths). */
  const roleOf = (header: string): Role | undefined => {
    const m = /^Bearer (\S+)$/i.exec(header);
    if (!m) return undefined;
    const h = digest(m[1]);
    let role: Role | undefined;
    for (const t of tokens) if (timingSafeEqual(h, t.hash) && role !== "admin") role = t.role;
    return role;
  };

  const metrics = new Metrics();

  // Rates for stats.get: counters sampled every rateIntervalMs; sums over the shards (a
  // shard restart in the interval can make one negative: reported as 0).
  type Sample = { at: number; packets: number; created: number; refreshed: number; deleted: number; expired: number };
  const samples: Sample[] = [];
  const sample = async () => {
    const st = server.stats();
    const n = (k: string) => Number(st.engine[k] ?? 0n);
    samples.push({ at: performance.now(), packets: totalPackets(st), created: n("created"), refreshed: n("refreshed"), deleted: n("deleted"), expired: n("expired") });
    if (samples.length > 2) samples.shift();
  };
  const sampler = setInterval(() => void sample().catch(() => undefined), o.rateIntervalMs ?? RATE_INTERVAL_MS);
  sampler.unref();
  void sample().catch(() => undefined);
  const rates = (): Results["stats.get"]["rates"] => {
    if (samples.length < 2) return null;
    const [a, b] = samples;
    const seconds = (b.at - a.at) / 1000;
    const per = (k: Exclude<keyof Sample, "at">) => Math.max(0, (b[k] - a[k]) / seconds);
    return { intervalSeconds: Math.round(seconds * 10) / 10, packets: per("packets"), created: per("created"), refreshed: per("refreshed"), deleted: per("deleted"), expired: per("expired") };
  };
  const sockets = new Set<UwsSocket<Connection>>();
  const subscribers = new Set<UwsSocket<Connection>>();

  /** Sends one message; false if uWS dropped it (over maxBackpressure) or the socket is gone. */
  const sendJson = (ws: UwsSocket<Connection>, message: unknown): boolean => {
    if (!ws.getUserData().open) return false;
    return ws.send(JSON.stringify(message), false) !== 2; // 2 = dropped by uWS
  };
  /** A reply that could not be queued: the client reads too slowly to be answered, so it is closed. */
  const reply = (ws: UwsSocket<Connection>, message: unknown): void => {
    if (!sendJson(ws, message) && ws.getUserData().open) ws.end(1013, "client too slow: reply dropped");
  };

  // ---- live events: fan-out with per-subscriber backpressure ----
  const poolNames: string[][] = []; // per shard, as its event messages last named them
  server.onEvents((m) => {
    if (m.events.pool) poolNames[m.shard] = m.events.pool;
    if (subscribers.size === 0) return;
    const events = decodeRecords(m.events, poolNames[m.shard]);
    for (const ws of subscribers) {
      const conn = ws.getUserData();
      const sub = conn.subscription!;
      const list = events.filter((e) => (!sub.kinds || sub.kinds.has(e.kind)) && selects(sub.filter, e));
      // Checked per event: one batch (a mass expiry, a renumbering chunk) can be large.
      for (let i = 0; i < list.length; i++) {
        if (ws.getBufferedAmount() > c.eventBufferBytes || !sendJson(ws, { jsonrpc: "2.0", method: NOTIFY_EVENTS, params: toNotice(m.shard, list[i]) })) {
          conn.dropped += list.length - i; // told in one events.dropped notice once it drains
          break;
        }
      }
    }
  });
  const updateStreaming = async () => {
    await server.setEvents(subscribers.size > 0);
  };

  // ---- methods ----
  const shards = server.shardEndpoints.length;
  const everyShard = server.everyShard;
  const handlers: { [M in Method]: (params: any, conn: Connection, ws: UwsSocket<Connection>) => Promise<Results[M]> } = {
    "server.info": async (_p, conn) => {
      const epochs = server.epochs();
      return {
        protocol: PROTOCOL,
        version: o.version,
        node: process.version,
        startedAt: startedAt.toISOString(),
        uptimeSeconds: Math.floor((Date.now() - startedAt.getTime()) / 1000),
        workers: shards,
        shards: server.shardEndpoints.map((listen, shard) => ({ shard, thread: server.threads()[shard] ?? null, listen, epoch: epochs[shard] })),
        role: conn.role,
      };
    },
    "server.health": async () => {
      const persistence = server.stats().shards.map((s) => s.persistence ?? null);
      const up = server.threads().map((t, shard) => ({ shard, up: t !== undefined, persistence: persistence[shard] ?? null }));
      return { status: up.every((s) => s.up && (s.persistence?.state ?? "ok") === "ok") ? "ok" : "degraded", shards: up };
    },
    "stats.get": async () => {
      const stats = server.stats();
      /** Counter `code` summed over the shards, under its name, for every named code. */
      const named = (labels: readonly [number, string][], pick: (s: ShardStats) => bigint[]) => {
        const out: Record<string, number> = {};
        for (const [code, name] of labels) {
          let total = 0;
          for (const s of stats.shards) total += Number(pick(s)[code] ?? 0n);
          out[name] = total;
        }
        return out;
      };
      const engine: Record<string, number> = {};
      for (const k in stats.engine) engine[k] = Number(stats.engine[k]);
      return {
        engine,
        pcpResults: named(PCP_RESULT_LABELS, (s) => s.codec.pcpResults),
        natPmpResults: named(NATPMP_RESULT_LABELS, (s) => s.codec.natPmpResults),
        drops: named(DROP_REASON_LABELS, (s) => s.codec.drops),
        packets: totalPackets(stats),
        rates: rates(),
        shards: stats.shards.map((s) => ({
          shard: s.shard,
          epoch: s.epoch,
          packets: Number(s.codec.packets),
          mappings: Number(s.engine.mappings),
          subscribers: Number(s.engine.subscribers),
          pool: s.pool,
          persistence: s.persistence ?? null,
        })),
        dataplane: server.dataplane() ?? null,
      };
    },
    "mappings.list": async (p: { filter: MappingFilter; cursor?: string; limit: number }) => {
      let { shard, record } = decodeCursor(p.cursor, shards);
      const out: Mapping[] = [];
      // One bounded scan per task; a page may come back short with a cursor to go on from.
      const page = await server.task(shard, { kind: "list", from: record, limit: p.limit, select: p.filter });
      out.push(...toMappings(shard, page.records));
      record = page.next;
      if (record === 0) {
        shard++;
        record = 1;
      }
      return { mappings: out, next: shard < shards ? encodeCursor(shard, record) : null };
    },
    "mappings.get": async (p) => {
      const found = await everyShard(
        "externalAddress" in p
          ? { kind: "lookupExternal", externalAddress: p.externalAddress, protocol: p.protocol, externalPort: p.externalPort }
          : { kind: "lookup", internalAddress: p.internalAddress, protocol: p.protocol, internalPort: p.internalPort, family: p.family ?? (isIPv6(p.internalAddress) ? 6 : 4), thirdPartyId: p.thirdPartyId },
      );
      const shard = found.findIndex((r) => r.bytes.length > 0);
      return { mapping: shard < 0 ? null : toMappings(shard, found[shard])[0] };
    },
    "mappings.addStatic": (p) => server.staticChange(async () => {
      // The shard owning the port's block holds the static; every other shard a mirror, so
      // the subscriber is answered from it whichever listen address it sends to.
      const shard = server.shardOfExternalPort(p.externalPort);
      const r = await server.task<"addStatic">(shard, { kind: "addStatic", ...p });
      const mapping = r.mapping ? toMappings(shard, r.mapping)[0] : undefined;
      if (r.result !== W.RESULT_SUCCESS || !mapping) throw new RpcError(RpcErrors.REFUSED, `refused: ${RESULT_NAMES.get(r.result) ?? r.result}`, { result: r.result });
      const mirrored = await Promise.all(Array.from({ length: shards }, (_, s) => (s === shard ? W.RESULT_SUCCESS : server.task<"addMirror">(s, { kind: "addMirror", ...p }))));
      const refusedBy = mirrored.findIndex((result) => result !== W.RESULT_SUCCESS);
      if (refusedBy >= 0) {
        // A live mapping of the endpoint on another shard refuses it, as one on the owner
        // does: nothing is left behind (the owner's static and the mirrors laid go).
        await everyShard({ kind: "removeStatic", internalAddress: p.internalAddress, protocol: p.protocol, internalPort: p.internalPort, family: isIPv6(p.externalAddress) ? 6 : 4, hold: false });
        const result = mirrored[refusedBy];
        throw new RpcError(RpcErrors.REFUSED, `refused: ${RESULT_NAMES.get(result) ?? result} (the endpoint has a mapping on shard ${refusedBy})`, { result });
      }
      return { mapping };
    }),
    "mappings.removeStatic": (p) => server.staticChange(async () => {
      const results = await everyShard({ kind: "removeStatic", internalAddress: p.internalAddress, protocol: p.protocol, internalPort: p.internalPort, family: p.family ?? 4 });
      if (!results.includes(W.RESULT_SUCCESS)) throw new RpcError(RpcErrors.REFUSED, "no static mapping of that endpoint", { result: W.RESULT_NOT_AUTHORIZED });
      return { removed: true as const };
    }),
    "subscribers.usage": async (p) => {
      const usage = await everyShard({ kind: "subscriberUsage", internalAddress: p.internalAddress, thirdPartyId: p.thirdPartyId });
      return { shards: usage.map((u, shard) => ({ shard, ...u })) };
    },
    "subscribers.deleteMappings": (p) => server.staticChange(async () => {
      const counts = await everyShard({ kind: "deleteSubscriber", internalAddress: p.internalAddress, thirdPartyId: p.thirdPartyId });
      return { deleted: counts.reduce((a, b) => a + b, 0) };
    }),
    "epoch.get": async () => ({ shards: server.epochs().map((epoch, shard) => ({ shard, epoch })) }),
    "epoch.reset": async (p: { shard: number }) => {
      if (p.shard >= shards) throw new RpcError(RpcErrors.INVALID_PARAMS, `shard: ${p.shard} does not exist (0..${shards - 1})`);
      return { shard: p.shard, epoch: await server.resetShard(p.shard) };
    },
    "config.get": async () => ({ config: redacted(server.config()) }),
    "config.reload": async () => {
      try {
        return { restartNeededFor: await o.reloadConfig() };
      } catch (e) {
        throw new RpcError(RpcErrors.REFUSED, `configuration reload refused: ${(e as Error).message}`); // the running one stays
      }
    },
    "events.subscribe": async (p: { filter: MappingFilter; kinds?: string[] }, conn, ws) => {
      conn.subscription = { filter: p.filter, kinds: p.kinds ? new Set(p.kinds) : undefined };
      subscribers.add(ws);
      await updateStreaming();
      return { subscribed: true as const };
    },
    "events.unsubscribe": async (_p, conn, ws) => {
      conn.subscription = undefined;
      subscribers.delete(ws);
      await updateStreaming();
      return { subscribed: false as const };
    },
    "dataplane.subscribe": async (_p, conn, ws) => {
      const stream = server.dataplaneStream;
      if (!stream) throw new RpcError(RpcErrors.REFUSED, `dataplane.backend is "${server.config().dataplane.backend}", not "events"`);
      if (!conn.dataplane) {
        // A consumer that cannot take a transaction would miss it: it is disconnected, and
        // starts again from a reset when it subscribes again.
        conn.dataplane = {
          send: (method, params) => {
            if (ws.getBufferedAmount() <= c.eventBufferBytes && sendJson(ws, { jsonrpc: "2.0", method, params })) return true;
            if (conn.open) ws.end(1013, "dataplane consumer too slow: subscribe again for a reset");
            return false;
          },
        };
        stream.add(conn.dataplane);
      }
      return { subscribed: true as const };
    },
    "dataplane.unsubscribe": async (_p, conn) => {
      if (conn.dataplane) server.dataplaneStream?.remove(conn.dataplane);
      conn.dataplane = undefined;
      return { subscribed: false as const };
    },
  };

  const failure = (id: RpcFailure["id"], code: number, message: string, data?: unknown): RpcFailure => ({ jsonrpc: "2.0", id, error: data === undefined ? { code, message } : { code, message, data } });

  async function dispatch(text: string, conn: Connection, ws: UwsSocket<Connection>): Promise<unknown> {
    let request: { jsonrpc?: unknown; id?: unknown; method?: unknown; params?: unknown };
    try {
      request = JSON.parse(text);
    } catch (e) {
      return failure(null, RpcErrors.PARSE_ERROR, `not JSON: ${(e as Error).message}`);
    }
    if (typeof request !== "object" || request === null || Array.isArray(request)) return failure(null, RpcErrors.INVALID_REQUEST, "a request is one JSON object (batches are not supported)");
    const id = typeof request.id === "number" || typeof request.id === "string" ? request.id : null;
    if (request.jsonrpc !== "2.0" || id === null || typeof request.method !== "string") {
      return failure(id, RpcErrors.INVALID_REQUEST, 'a request needs "jsonrpc": "2.0", an "id" (number or string) and a "method" (string)');
    }
    const method = request.method as Method;
    if (!Object.hasOwn(Params, method)) return failure(id, RpcErrors.METHOD_NOT_FOUND, `unknown method ${JSON.stringify(request.method)}`);
    if (ADMIN_METHODS.has(method) && conn.role !== "admin") return failure(id, RpcErrors.FORBIDDEN, `${method} needs the admin role`);
    const parsed = Params[method].safeParse(request.params ?? {});
    if (!parsed.success) {
      return failure(id, RpcErrors.INVALID_PARAMS, parsed.error.issues.map((i) => `${i.path.length ? i.path.join(".") : "params"}: ${i.message}`).join("; "));
    }
    try {
      return { jsonrpc: "2.0", id, result: await handlers[method](parsed.data, conn, ws) };
    } catch (e) {
      if (e instanceof RpcError) return failure(id, e.code, e.message, e.data);
      log.error({ method, error: (e as Error).message }, "control method failed");
      return failure(id, RpcErrors.INTERNAL_ERROR, (e as Error).message);
    }
  }

  // ---- the uWS app ----
  const app: TemplatedApp = c.tls ? uws.SSLApp({ cert_file_name: c.tls.cert, key_file_name: c.tls.key, passphrase: c.tls.passphrase }) : uws.App();
  app.ws<Connection>(CONTROL_PATH, {
    maxPayloadLength: c.maxMessageBytes, // larger frames close the connection (code 1009)
    maxBackpressure: c.eventBufferBytes * 4, // above this uWS drops sends; events stop well before
    idleTimeout: 120,
    sendPingsAutomatically: true,
    upgrade: (res, req, context) => {
      const role = roleOf(req.getHeader("authorization"));
      if (!role) {
        res.writeStatus("401 Unauthorized").writeHeader("WWW-Authenticate", 'Bearer realm="pcpd-control"').end("a valid bearer token is required\n");
        return;
      }
      res.upgrade<Connection>(
        { role, open: true, tokens: c.requestsPerSecond * 2, last: performance.now(), dropped: 0 },
        req.getHeader("sec-websocket-key"),
        req.getHeader("sec-websocket-protocol"),
        req.getHeader("sec-websocket-extensions"),
        context,
      );
    },
    open: (ws) => {
      sockets.add(ws);
    },
    message: (ws, message, isBinary) => {
      const conn = ws.getUserData();
      const now = performance.now();
      conn.tokens = Math.min(c.requestsPerSecond * 2, conn.tokens + ((now - conn.last) / 1000) * c.requestsPerSecond);
      conn.last = now;
      const text = Buffer.from(message).toString("utf8"); // copied: uWS reuses the buffer after this call
      if (conn.tokens < 1) {
        let id: RpcFailure["id"] = null;
        try {
          const r = JSON.parse(text);
          if (typeof r?.id === "number" || typeof r?.id === "string") id = r.id;
        } catch {
          // answered with a null id
        }
        reply(ws, failure(id, RpcErrors.RATE_LIMITED, `over ${c.requestsPerSecond} requests per second on this connection`));
        return;
      }
      conn.tokens -= 1;
      if (isBinary) {
        reply(ws, failure(null, RpcErrors.INVALID_REQUEST, "binary frames are not accepted; send JSON text"));
        return;
      }
      void dispatch(text, conn, ws).then((response) => reply(ws, response));
    },
    drain: (ws) => {
      const conn = ws.getUserData();
      if (conn.dropped > 0 && ws.getBufferedAmount() < c.eventBufferBytes / 2) {
        if (sendJson(ws, { jsonrpc: "2.0", method: NOTIFY_DROPPED, params: { dropped: conn.dropped } })) conn.dropped = 0;
      }
    },
    close: (ws) => {
      const conn = ws.getUserData();
      conn.open = false;
      sockets.delete(ws);
      if (subscribers.delete(ws)) void updateStreaming().catch(() => undefined);
      if (conn.dataplane) server.dataplaneStream?.remove(conn.dataplane);
    },
  });
  const respond = (res: import("uWebSockets.js").HttpResponse, work: () => Promise<{ status: string; type: string; body: string }>) => {
    let aborted = false;
    res.onAborted(() => (aborted = true));
    work().then(
      (r) => !aborted && res.cork(() => res.writeStatus(r.status).writeHeader("Content-Type", r.type).end(r.body)),
      (e) => !aborted && res.cork(() => res.writeStatus("500 Internal Server Error").end(`${(e as Error).message}\n`)),
    );
  };
  app.get("/metrics", (res) =>
    respond(res, async () => {
      const stats = server.stats();
      metrics.update(stats, { shardsUp: server.threads().map((t) => t !== undefined), dataplane: server.dataplane() });
      return { status: "200 OK", type: metrics.contentType, body: await metrics.render() };
    }),
  );
  app.get("/healthz", (res) =>
    respond(res, async () => {
      const up = server.threads().every((t) => t !== undefined);
      if (!up) return { status: "503 Service Unavailable", type: "text/plain", body: "degraded: a shard is restarting\n" };
      // Persistence failing: still 200 — the process serves, and restarting it would lose
      // the only complete copy of the state (memory); the body says what is wrong.
      const failing = server.stats().shards.filter((s) => s.persistence && s.persistence.state !== "ok");
      const body = failing.map((s) => `degraded: shard ${s.shard} persistence ${s.persistence!.state} (${s.persistence!.reason}), ${s.persistence!.backlogBytes} bytes waiting for the disk\n`).join("");
      return { status: "200 OK", type: "text/plain", body: body || "ok\n" };
    }),
  );
  app.any("/*", (res) => {
    res.writeStatus("404 Not Found").end("not found\n");
  });

  const listenSocket = await new Promise<us_listen_socket>((resolve, reject) =>
    app.listen(c.address, c.port, (s) => (s ? resolve(s) : reject(new Error(`control channel: cannot listen on ${c.address}:${c.port}`)))),
  );
  const port = uws.us_socket_local_port(listenSocket);
  log.info({ control: `${c.tls ? "wss" : "ws"}://${isIPv6(c.address) ? `[${c.address}]` : c.address}:${port}${CONTROL_PATH}`, tokenFile }, "control channel listening");
  return {
    port,
    tokenFile,
    async stop() {
      clearInterval(sampler);
      uws.us_listen_socket_close(listenSocket);
      for (const ws of sockets) ws.end(1001, "server stopping");
      sockets.clear();
      subscribers.clear();
    },
  };
}
