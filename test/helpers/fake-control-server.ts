// A stand-in for the control channel (pcpd-control/2) built on ws: checks the bearer
// token on the upgrade like the real server, records every request, and answers through
// a handler the test gives (or not at all, for timeouts and out-of-order replies).
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from "node:net";
import type { AddressInfo } from "node:net";
import { WebSocketServer, type WebSocket } from "ws";
import type { RpcRequest } from "../../src/control/protocol.js";

export const FAKE_HOST = "127.0.0.31";

export type Reply = { result: unknown } | { error: { code: number; message: string; data?: unknown } } | undefined;
export type Handler = (request: RpcRequest, socket: WebSocket) => Reply | Promise<Reply>;

export interface FakeControlServer {
  url: string;
  port: number;
  /** Requests in arrival order. */
  requests: RpcRequest[];
  /** Headers of every upgrade request (accepted or not). */
  upgrades: IncomingHttpHeaders[];
  sockets: WebSocket[];
  handler: Handler;
  /** Sends a notification to every connected client. */
  notify(method: string, params: unknown): void;
  /** Resolves when `n` requests have arrived. */
  waitForRequests(n: number, timeoutMs?: number): Promise<RpcRequest[]>;
  close(): Promise<void>;
}

export interface FakeOptions {
  token?: string;
  /** Refuse every upgrade with this status. */
  refuseWith?: number;
  handler?: Handler;
  /** Serve wss:// with this key and certificate (PEM). */
  tls?: { key: string | Buffer; cert: string | Buffer };
}

export async function startFakeControlServer(options: FakeOptions = {}): Promise<FakeControlServer> {
  const token = options.token ?? "secret";
  const notFound = (_req: unknown, res: { writeHead(status: number): { end(): void } }) => res.writeHead(404).end();
  const http: Server = options.tls ? createHttpsServer(options.tls, notFound) : createServer(notFound);
  const wss = new WebSocketServer({ noServer: true });
  const requests: RpcRequest[] = [];
  const upgrades: IncomingHttpHeaders[] = [];
  const sockets: WebSocket[] = [];
  const waiters: { n: number; resolve: () => void }[] = [];

  http.on("upgrade", (req, socket, head) => {
    upgrades.push(req.headers);
    const refuse = (status: number, text: string) => {
      socket.end(`HTTP/1.1 ${status} ${text}\r\nContent-Type: text/plain\r\nContent-Length: ${text.length}\r\nConnection: close\r\n\r\n${text}`);
    };
    if (options.refuseWith) return refuse(options.refuseWith, options.refuseWith === 403 ? "Forbidden" : "Refused");
    if (req.url !== "/control") return refuse(404, "Not Found");
    if (req.headers.authorization !== `Bearer ${token}`) return refuse(401, "Unauthorized");
    wss.handleUpgrade(req, socket, head, (ws) => {
      sockets.push(ws);
      ws.on("message", async (data) => {
        const request = JSON.parse(data.toString()) as RpcRequest;
        requests.push(request);
        for (const w of waiters.filter((w) => requests.length >= w.n)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve();
        }
        const reply = await fake.handler(request, ws);
        if (reply !== undefined && ws.readyState === ws.OPEN) ws.send(JSON.stringify({ jsonrpc: "2.0", id: request.id, ...reply }));
      });
    });
  });
  await new Promise<void>((resolve) => http.listen(0, FAKE_HOST, resolve));
  const port = (http.address() as AddressInfo).port;

  const fake: FakeControlServer = {
    url: `${options.tls ? "wss" : "ws"}://${FAKE_HOST}:${port}/control`,
    port,
    requests,
    upgrades,
    sockets,
    handler: options.handler ?? (() => ({ error: { code: -32601, message: "method not found" } })),
    notify(method, params) {
      for (const ws of sockets) if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ jsonrpc: "2.0", method, params }));
    },
    waitForRequests(n, timeoutMs = 5000) {
      if (requests.length >= n) return Promise.resolve(requests.slice());
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`waited for ${n} requests, got ${requests.length}`)), timeoutMs);
        waiters.push({
          n,
          resolve: () => {
            clearTimeout(timer);
            resolve(requests.slice());
          },
        });
      });
    },
    async close() {
      for (const ws of sockets) ws.terminate();
      wss.close();
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
  return fake;
}

/**
 * A TCP server on FAKE_HOST that either never answers (mode "silent") or completes the
 * WebSocket handshake and then ignores every frame, pings included (mode "deaf").
 */
export async function startMuteServer(mode: "silent" | "deaf"): Promise<{ port: number; url: string; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: TcpServer = createTcpServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    if (mode === "silent") return;
    let buffer = "";
    let upgraded = false;
    socket.on("data", (chunk) => {
      if (upgraded) return;
      buffer += chunk.toString("latin1");
      if (!buffer.includes("\r\n\r\n")) return;
      upgraded = true;
      const key = /sec-websocket-key:\s*(\S+)/i.exec(buffer)?.[1] ?? "";
      const accept = createHash("sha1").update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest("base64");
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, FAKE_HOST, resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    url: `ws://${FAKE_HOST}:${port}/control`,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A port on FAKE_HOST with nothing listening. */
export async function closedPort(): Promise<number> {
  const server = createTcpServer();
  await new Promise<void>((resolve) => server.listen(0, FAKE_HOST, resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A self-signed certificate for FAKE_HOST made with openssl, or undefined when openssl is missing. */
export function selfSignedCertificate(dir: string): { key: Buffer; cert: Buffer; certFile: string } | undefined {
  const keyFile = join(dir, "key.pem");
  const certFile = join(dir, "cert.pem");
  try {
    execFileSync(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        keyFile,
        "-out",
        certFile,
        "-days",
        "2",
        "-subj",
        "/CN=pcpd-control-test",
        "-addext",
        `subjectAltName=IP:${FAKE_HOST}`,
      ],
      { stdio: "pipe" },
    );
  } catch {
    return undefined;
  }
  return { key: readFileSync(keyFile), cert: readFileSync(certFile), certFile };
}
