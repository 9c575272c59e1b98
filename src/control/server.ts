// The control channel: JSON-RPC 2.0 over WebSocket on uWebSockets.js (protocol.ts), with
// /metrics (Prometheus text) and /healthz on the same port. Bound to a management address
// (loopback by default); every WebSocket is authenticated at the upgrade by a bearer token
// (auth.ts) whose role (read or admin) decides which methods it may call. The dashboard's
// static files are served under /dashboard (dashboard.ts). Bad input gets a
// precise JSON-RPC error (dispatch.ts) and never reaches the packet path. This file is the
// uWS wiring: the app, its routes, the per-connection rate limit, and start/stop; the
// methods are in methods/, live events in fanout.ts, the rates of stats.get in rates.ts.
import { isIPv6 } from "node:net";
import { createRequire } from "node:module";
import type { Logger } from "pino";
import type { HttpResponse, TemplatedApp, WebSocket as UwsSocket, us_listen_socket } from "uWebSockets.js";
import type { Config } from "../config/schema.js";
import type { RunningServer } from "../server/server.js";
import { ErrorCodes, PcpdError } from "../errors.js";
import { loadTokens, SUBPROTOCOL } from "./auth.js";
import { serveDashboard } from "./dashboard.js";
import { defaultTokenFile, removeTokenFile, writeTokenFile } from "../client/token-file.js";
import { dispatcher, failure, requestId } from "./dispatch.js";
import { EventFanout } from "./fanout.js";
import { Metrics } from "./metrics.js";
import type { Handlers, MethodContext } from "./methods/context.js";
import { haHealthLines, haMethods, serverHaHealth } from "./methods/ha-methods.js";
import { authMethods } from "./methods/auth-methods.js";
import { AuthMetrics } from "./auth-metrics.js";
import { authOn } from "../auth/pa-setup.js";
import { mappingMethods } from "./methods/mapping-methods.js";
import { serverMethods } from "./methods/server-methods.js";
import { streamMethods } from "./methods/stream-methods.js";
import { CONTROL_PATH, RpcErrors } from "./protocol.js";
import { RateSampler } from "./rates.js";
import { admit, newSession, reply, type Session } from "./session.js";

const require = createRequire(import.meta.url);

/**
 * The uWebSockets.js alias package falls back, with only a console warning, to a slow
 * JavaScript implementation when its native addon does not load; the fallback has no
 * SSLApp. Refuse to run on it.
 */
export function loadUws(): typeof import("uWebSockets.js") {
  const uws = require("uWebSockets.js") as typeof import("uWebSockets.js");
  if (typeof uws.SSLApp !== "function" || typeof uws.us_socket_local_port !== "function") {
    throw new PcpdError(
      ErrorCodes.UWS_UNAVAILABLE,
      `uWebSockets.js native addon did not load for ${process.platform}-${process.arch} ABI ${process.versions.modules}; the control channel will not run on the JavaScript fallback`,
    );
  }
  return uws;
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

/** An HTTP answer computed asynchronously; nothing is written once the client has gone. */
function respond(res: HttpResponse, work: () => Promise<{ status: string; type: string; body: string }>): void {
  let aborted = false;
  res.onAborted(() => (aborted = true));
  work().then(
    (r) => !aborted && res.cork(() => res.writeStatus(r.status).writeHeader("Content-Type", r.type).end(r.body)),
    (e) => !aborted && res.cork(() => res.writeStatus("500 Internal Server Error").end(`${(e as Error).message}\n`)),
  );
}

export async function startControl(o: ControlOptions): Promise<RunningControl> {
  const uws = loadUws();
  const { config: c, server, log } = o;
  const auth = loadTokens(c);
  const metrics = new Metrics();
  let authMetrics: AuthMetrics | undefined;
  const rates = new RateSampler(server, o.rateIntervalMs);
  const events = new EventFanout(server, c.eventBufferBytes);
  const ctx: MethodContext = {
    server,
    version: o.version,
    startedAt: new Date(),
    rates,
    events,
    eventBufferBytes: c.eventBufferBytes,
    reloadConfig: o.reloadConfig,
  };
  const handlers: Handlers = { ...serverMethods(ctx), ...mappingMethods(ctx), ...streamMethods(ctx), ...haMethods(ctx), ...authMethods(ctx) };
  const dispatch = dispatcher(handlers, log);
  const sockets = new Set<UwsSocket<Session>>();

  const app: TemplatedApp = c.tls ? uws.SSLApp({ cert_file_name: c.tls.cert, key_file_name: c.tls.key, passphrase: c.tls.passphrase }) : uws.App();
  app.ws<Session>(CONTROL_PATH, {
    maxPayloadLength: c.maxMessageBytes, // larger frames close the connection (code 1009)
    maxBackpressure: c.eventBufferBytes * 4, // above this uWS drops sends; events stop well before
    idleTimeout: 120,
    sendPingsAutomatically: true,
    upgrade: (res, req, context) => {
      const protocols = req.getHeader("sec-websocket-protocol");
      const role = auth.roleOfUpgrade(req.getHeader("authorization"), protocols);
      if (!role) {
        res.writeStatus("401 Unauthorized").writeHeader("WWW-Authenticate", 'Bearer realm="pcpd-control"').end("a valid bearer token is required\n");
        return;
      }
      res.upgrade<Session>(
        newSession(role, c.requestsPerSecond, performance.now()),
        req.getHeader("sec-websocket-key"),
        // Only the channel's own subprotocol is answered: one carrying a token is never echoed.
        protocols
          .split(",")
          .map((p) => p.trim())
          .includes(SUBPROTOCOL)
          ? SUBPROTOCOL
          : "",
        req.getHeader("sec-websocket-extensions"),
        context,
      );
    },
    open: (ws) => {
      const session = ws.getUserData();
      session.link = {
        send: (message) => session.open && ws.send(JSON.stringify(message), false) !== 2, // 2 = dropped by uWS
        sendText: (text) => session.open && ws.send(text, false) !== 2,
        bufferedAmount: () => ws.getBufferedAmount(),
        end: (code, reason) => ws.end(code, reason),
      };
      sockets.add(ws);
    },
    message: (ws, message, isBinary) => {
      const session = ws.getUserData();
      const text = Buffer.from(message).toString("utf8"); // copied: uWS reuses the buffer after this call
      if (!admit(session, c.requestsPerSecond, performance.now())) {
        reply(session, failure(requestId(text), RpcErrors.RATE_LIMITED, `over ${c.requestsPerSecond} requests per second on this connection`));
        return;
      }
      if (isBinary) {
        reply(session, failure(null, RpcErrors.INVALID_REQUEST, "binary frames are not accepted; send JSON text"));
        return;
      }
      void dispatch(text, session).then((response) => reply(session, response));
    },
    drain: (ws) => events.drained(ws.getUserData()),
    close: (ws) => {
      const session = ws.getUserData();
      session.open = false;
      sockets.delete(ws);
      events.closed(session);
      if (session.dataplane) server.dataplaneStream?.remove(session.dataplane);
    },
  });
  app.get("/metrics", (res) =>
    respond(res, async () => {
      const stats = server.stats();
      // HA: this node's view of its groups (a controller that cannot say leaves the HA series out).
      const ha = await server.ha?.status().catch(() => undefined);
      const threads = server.threads();
      metrics.update(stats, {
        shardsUp: threads.map((t) => t !== undefined),
        dataplane: server.dataplane(),
        threads,
        ha,
        io: server.io?.path,
        logging: server.logStats?.(),
        loop: server.loopStalls?.(),
      });
      // PCP authentication: each worker's authenticator counters (none when auth.* is off everywhere).
      if (authOn(server.config()))
        (authMetrics ??= new AuthMetrics(metrics.registry)).update(await server.everyShard({ kind: "authCounters" }).catch(() => []));
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
      const problems = failing.map(
        (s) => `shard ${s.shard} persistence ${s.persistence!.state} (${s.persistence!.reason}), ${s.persistence!.backlogBytes} bytes waiting for the disk`,
      );
      // HA degraded: also 200 — the node serves while its lease is provably held and stops
      // by itself after; a failing health check must not move the addresses behind the
      // lease's back (the lease decides who serves, docs/ha.md).
      const ha = await serverHaHealth(server);
      problems.push(...(ha?.problems ?? []));
      const body = problems.map((p) => `degraded: ${p}\n`).join("") || "ok\n";
      return { status: "200 OK", type: "text/plain", body: body + (ha ? haHealthLines(ha) : "") };
    }),
  );
  serveDashboard(app);
  app.any("/*", (res) => {
    res.writeStatus("404 Not Found").end("not found\n");
  });

  let listenSocket: us_listen_socket;
  try {
    listenSocket = await new Promise<us_listen_socket>((resolve, reject) =>
      app.listen(c.address, c.port, (s) =>
        s ? resolve(s) : reject(new PcpdError(ErrorCodes.CONTROL_LISTEN_FAILED, `control channel: cannot listen on ${c.address}:${c.port}`)),
      ),
    );
  } catch (e) {
    rates.stop();
    throw e;
  }
  const port = uws.us_socket_local_port(listenSocket);
  // The generated token's file is keyed by the port it serves (src/client/token-file.ts),
  // so it is written once the port is known, and removed on a clean stop.
  const tokenFile = auth.generated === undefined ? undefined : (c.tokenFile ?? defaultTokenFile(port));
  try {
    if (tokenFile !== undefined) writeTokenFile(tokenFile, auth.generated!);
  } catch (e) {
    rates.stop();
    uws.us_listen_socket_close(listenSocket);
    throw e;
  }
  log.info(
    { control: `${c.tls ? "wss" : "ws"}://${isIPv6(c.address) ? `[${c.address}]` : c.address}:${port}${CONTROL_PATH}`, tokenFile },
    "control channel listening",
  );
  return {
    port,
    tokenFile,
    async stop() {
      rates.stop();
      if (tokenFile !== undefined && !removeTokenFile(tokenFile, auth.generated!))
        log.warn({ tokenFile }, "token file left in place: it no longer holds this server's token");
      uws.us_listen_socket_close(listenSocket);
      for (const ws of sockets) ws.end(1001, "server stopping");
      sockets.clear();
      events.clear();
    },
  };
}
