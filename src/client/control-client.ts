// Typed client of the control channel (pcpd-control/2, src/control/protocol.ts):
// JSON-RPC 2.0 over a WebSocket, authenticated by `Authorization: Bearer <token>` on the
// upgrade request.
//
//   const client = await ControlClient.connect("ws://127.0.0.1:5380/control", { token });
//   const { mappings, next } = await client.call("mappings.list", { limit: 50 });
//   const events = await client.subscribe({ internalAddress: "10.0.0.1" }, ["create", "delete"]);
//   for await (const item of events) {
//     if (item.type === "event") console.log(item.event.kind, item.event.mapping.externalPort);
//     else console.log(`${item.dropped} events dropped (${item.source})`);
//   }
//   await client.close();
//
// Failures are typed: `ControlError` is an error response of the server (JSON-RPC code,
// message, data); `ControlClientError` is anything on this side (connection refused,
// upgrade refused with 401/403, TLS, timeout, connection closed) with a string `code`.
//
// Events: `subscribe()` returns an `EventSubscription`, an async iterator of
// `{ type: "event", event }` and `{ type: "dropped", dropped, source }` items in arrival
// order ("server": the server's `events.dropped`; "client": this side's buffer overflowed
// because the iterator was read too slowly). The server sends events in batches (one
// `events.mappings` frame holds several); the reader unpacks them into one item per
// event, in order. The client is also an EventEmitter: "mapping" (MappingEventNotice,
// once per event), "dropped" (count), "notification" (method, params) for every
// notification (once per frame), and "close" (code, reason) once the connection is closed.
import { EventEmitter } from "node:events";
import type { IncomingMessage } from "node:http";
import { WebSocket, type RawData } from "ws";
import type { z } from "zod";
import { NOTIFY_DROPPED, NOTIFY_EVENTS, RpcErrors, type MappingEventNotice, type Method, type Params, type Results } from "../control/protocol.js";

export type MethodParams<M extends Method> = z.input<(typeof Params)[M]>;
export type EventKind = MappingEventNotice["kind"];
export type EventFilter = MethodParams<"events.subscribe">["filter"];

export interface ConnectOptions {
  /** Sent as `Authorization: Bearer <token>` on the upgrade request. */
  token: string;
  /** Trusted CA certificate(s), PEM, for a wss:// URL with a private CA. */
  ca?: string | Buffer;
  /** false accepts any server certificate (testing only). Default true. */
  rejectUnauthorized?: boolean;
  /** Connect timeout and default per-call timeout, ms. Default 10000. */
  timeoutMs?: number;
  /**
   * Interval of WebSocket pings, ms; the connection is dropped when a ping goes
   * unanswered for a whole interval. Default 30000; 0 disables.
   */
  keepAliveMs?: number;
}

export interface CallOptions {
  /** This call's timeout, ms (default: the connection's `timeoutMs`). */
  timeoutMs?: number;
}

/** An error response of the server. `code` is a JSON-RPC code (see `RpcErrors`). */
export class ControlError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly data?: unknown,
    /** The method called. */
    readonly method?: string,
  ) {
    super(message);
    this.name = "ControlError";
  }

  /** The name of `code` in `RpcErrors` (FORBIDDEN, INVALID_PARAMS, …), if it has one. */
  get codeName(): string | undefined {
    return rpcErrorName(this.code);
  }
}

export function rpcErrorName(code: number): string | undefined {
  for (const [name, value] of Object.entries(RpcErrors)) if (value === code) return name;
  return undefined;
}

export type ClientErrorCode =
  /** Upgrade refused with 401: missing or wrong token. */
  | "UNAUTHORIZED"
  /** Upgrade refused with 403. */
  | "FORBIDDEN"
  /** Upgrade refused with another HTTP status (see `status`). */
  | "HTTP_ERROR"
  /** TCP/TLS connection failed (refused, unreachable, certificate…); see `cause`. */
  | "CONNECT_FAILED"
  /** Connecting or a call took longer than its timeout. */
  | "TIMEOUT"
  /** The connection is closed (or closed while the call was pending). */
  | "CLOSED"
  /** Bad arguments given to the client (URL, token). */
  | "BAD_ARGUMENT";

/** A failure on the client side (connecting, timeouts, closed connection). */
export class ControlClientError extends Error {
  constructor(
    readonly code: ClientErrorCode,
    message: string,
    options?: { cause?: unknown; status?: number },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "ControlClientError";
    this.status = options?.status;
  }
  /** HTTP status of a refused upgrade. */
  readonly status?: number;
}

export type SubscriptionItem = { type: "event"; event: MappingEventNotice } | { type: "dropped"; dropped: number; source: "server" | "client" };

export interface SubscribeOptions {
  /** Items buffered for a slow reader before newer ones are dropped (and counted). Default 10000. */
  highWaterMark?: number;
  /**
   * A sampled subscription (events.subscribe `latest`): every intervalMs, the newest `count`
   * events of the interval, for a client that shows the latest events rather than all.
   */
  latest?: { count?: number; intervalMs?: number };
}

interface Pending {
  method: string;
  resolve: (result: unknown) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

const DEFAULT_TIMEOUT_MS = 10_000;
const DEFAULT_KEEPALIVE_MS = 30_000;

export interface ControlClient {
  on(event: "mapping", listener: (event: MappingEventNotice) => void): this;
  on(event: "dropped", listener: (dropped: number) => void): this;
  on(event: "notification", listener: (method: string, params: unknown) => void): this;
  on(event: "close", listener: (code: number, reason: string) => void): this;
  once(event: "mapping", listener: (event: MappingEventNotice) => void): this;
  once(event: "dropped", listener: (dropped: number) => void): this;
  once(event: "notification", listener: (method: string, params: unknown) => void): this;
  once(event: "close", listener: (code: number, reason: string) => void): this;
}

// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: typed overloads of EventEmitter's on/once for this client's events, merged with the interface above on purpose.
export class ControlClient extends EventEmitter {
  readonly url: string;
  readonly #ws: WebSocket;
  readonly #timeoutMs: number;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #subscription: EventSubscription | undefined;
  #closing = false;
  #closed: Promise<void>;
  #keepAlive: NodeJS.Timeout | undefined;

  private constructor(url: string, ws: WebSocket, timeoutMs: number, keepAliveMs: number) {
    super();
    this.url = url;
    this.#ws = ws;
    this.#timeoutMs = timeoutMs;
    ws.on("message", (data, isBinary) => this.#onMessage(data, isBinary));
    this.#closed = new Promise((resolve) => {
      ws.once("close", (code, reason) => {
        this.#onClose(code, reason.toString());
        resolve();
      });
    });
    // After the handshake, errors are followed by "close", which is what we act on.
    ws.on("error", () => {});
    if (keepAliveMs > 0) {
      let alive = true;
      ws.on("pong", () => (alive = true));
      this.#keepAlive = setInterval(() => {
        if (!alive) {
          ws.terminate();
          return;
        }
        alive = false;
        ws.ping();
      }, keepAliveMs);
      this.#keepAlive.unref();
    }
  }

  /**
   * Opens the channel. Rejects with a `ControlClientError`: UNAUTHORIZED / FORBIDDEN /
   * HTTP_ERROR when the upgrade is refused, CONNECT_FAILED (refused, unreachable, TLS),
   * TIMEOUT, BAD_ARGUMENT.
   */
  static connect(url: string, options: ConnectOptions): Promise<ControlClient> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const keepAliveMs = options.keepAliveMs ?? DEFAULT_KEEPALIVE_MS;
    if (typeof options.token !== "string" || options.token === "" || /[\r\n\0]/.test(options.token)) {
      return Promise.reject(new ControlClientError("BAD_ARGUMENT", "token must be a non-empty string on one line"));
    }
    let ws: WebSocket;
    try {
      ws = new WebSocket(url, {
        headers: { Authorization: `Bearer ${options.token}` },
        ca: options.ca,
        rejectUnauthorized: options.rejectUnauthorized ?? true,
        handshakeTimeout: timeoutMs,
        followRedirects: false,
      });
    } catch (e) {
      return Promise.reject(new ControlClientError("BAD_ARGUMENT", `invalid URL ${url}: ${(e as Error).message}`, { cause: e }));
    }
    return new Promise<ControlClient>((resolve, reject) => {
      let settled = false;
      const fail = (error: ControlClientError) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        ws.terminate();
        reject(error);
      };
      const timer = setTimeout(() => fail(new ControlClientError("TIMEOUT", `connecting to ${url}: no answer within ${timeoutMs} ms`)), timeoutMs);
      ws.on("unexpected-response", (_req, res: IncomingMessage) => {
        const status = res.statusCode ?? 0;
        readBody(res, (body) => {
          const text = [res.statusMessage, body].filter((s) => s).join(": ");
          const http = `HTTP ${status}${text ? ` ${text}` : ""}`;
          const error =
            status === 401
              ? new ControlClientError("UNAUTHORIZED", `${url} refused the token (${http})`, { status })
              : status === 403
                ? new ControlClientError("FORBIDDEN", `${url} refused the connection (${http})`, { status })
                : new ControlClientError("HTTP_ERROR", `${url} refused the WebSocket upgrade (${http})`, { status });
          fail(error);
        });
      });
      ws.on("error", (err: NodeJS.ErrnoException) => {
        if (settled) return;
        if (err.message === "Opening handshake has timed out") {
          fail(new ControlClientError("TIMEOUT", `connecting to ${url}: no answer within ${timeoutMs} ms`, { cause: err }));
        } else {
          fail(new ControlClientError("CONNECT_FAILED", `cannot connect to ${url}: ${describeConnectError(err)}`, { cause: err }));
        }
      });
      ws.once("close", () => fail(new ControlClientError("CONNECT_FAILED", `cannot connect to ${url}: connection closed during the handshake`)));
      ws.once("open", () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        ws.removeAllListeners("unexpected-response");
        ws.removeAllListeners("error");
        ws.removeAllListeners("close");
        resolve(new ControlClient(url, ws, timeoutMs, keepAliveMs));
      });
    });
  }

  /** True while the connection is open. */
  get connected(): boolean {
    return this.#ws.readyState === WebSocket.OPEN;
  }

  /** Pending calls. */
  get pendingCalls(): number {
    return this.#pending.size;
  }

  /**
   * Calls `method`. Resolves with its result; rejects with a `ControlError` (the server's
   * error response) or a `ControlClientError` (TIMEOUT, CLOSED). Params are validated by
   * the server, not here.
   */
  call<M extends Method>(method: M, params: MethodParams<M>, options: CallOptions = {}): Promise<Results[M]> {
    if (this.#ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new ControlClientError("CLOSED", `${method}: the connection is closed`));
    }
    const id = this.#nextId++;
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs;
    return new Promise<Results[M]>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.#pending.delete(id)) reject(new ControlClientError("TIMEOUT", `${method}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, { method, resolve: resolve as (r: unknown) => void, reject, timer });
      const message = JSON.stringify({ jsonrpc: "2.0", id, method, params: params ?? {} });
      this.#ws.send(message, (err) => {
        if (!err) return;
        const pending = this.#pending.get(id);
        if (!pending) return;
        this.#pending.delete(id);
        clearTimeout(pending.timer);
        reject(new ControlClientError("CLOSED", `${method}: send failed: ${err.message}`, { cause: err }));
      });
    });
  }

  /**
   * Subscribes to mapping events (`events.subscribe`) and resolves once the server has
   * accepted. The channel has one subscription per connection: subscribing again replaces
   * the filter and ends the previous iterator. Events received while the subscription is
   * being confirmed are kept.
   */
  async subscribe(filter: EventFilter = {}, kinds?: EventKind[], options: SubscribeOptions = {}): Promise<EventSubscription> {
    const subscription = new EventSubscription(this, options.highWaterMark ?? 10_000);
    const previous = this.#subscription;
    this.#subscription = subscription;
    previous?._end();
    try {
      await this.call("events.subscribe", {
        filter,
        ...(kinds === undefined ? {} : { kinds }),
        ...(options.latest === undefined ? {} : { latest: options.latest }),
      });
    } catch (e) {
      if (this.#subscription === subscription) this.#subscription = undefined;
      subscription._end();
      throw e;
    }
    return subscription;
  }

  /** Ends the subscription (if any): its iterator finishes, and the server is told. */
  async unsubscribe(): Promise<void> {
    const subscription = this.#subscription;
    this.#subscription = undefined;
    subscription?._end();
    if (this.connected) await this.call("events.unsubscribe", {});
  }

  /** @internal called by the subscription's `return()`. */
  _release(subscription: EventSubscription): Promise<void> {
    if (this.#subscription !== subscription) return Promise.resolve();
    return this.unsubscribe();
  }

  /**
   * Closes the connection (close code 1000) and resolves once it is closed; pending calls
   * are rejected with CLOSED and the subscription's iterator finishes normally.
   */
  close(): Promise<void> {
    this.#closing = true;
    const ws = this.#ws;
    if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) {
      ws.close(1000);
      const force = setTimeout(() => ws.terminate(), this.#timeoutMs);
      force.unref();
      void this.#closed.then(() => clearTimeout(force));
    }
    return this.#closed;
  }

  #onMessage(data: RawData, isBinary: boolean): void {
    if (isBinary) return;
    let message: unknown;
    try {
      message = JSON.parse(rawToString(data));
    } catch {
      return; // not JSON: nothing to match it to
    }
    if (typeof message !== "object" || message === null || Array.isArray(message)) return;
    const m = message as Record<string, unknown>;
    if ("id" in m && m.id !== null && ("result" in m || "error" in m)) {
      this.#onResponse(m);
    } else if (typeof m.method === "string" && !("id" in m)) {
      this.#onNotification(m.method, m.params);
    }
  }

  #onResponse(m: Record<string, unknown>): void {
    const id = m.id as number;
    const pending = this.#pending.get(id);
    if (!pending) return; // timed out already, or not ours
    this.#pending.delete(id);
    clearTimeout(pending.timer);
    if ("error" in m && m.error !== undefined) {
      const e = m.error as { code?: unknown; message?: unknown; data?: unknown };
      const code = typeof e?.code === "number" ? e.code : RpcErrors.INTERNAL_ERROR;
      const message = typeof e?.message === "string" ? e.message : "error without message";
      pending.reject(new ControlError(code, message, e?.data, pending.method));
    } else {
      pending.resolve(m.result);
    }
  }

  #onNotification(method: string, params: unknown): void {
    this.emit("notification", method, params);
    if (method === NOTIFY_EVENTS) {
      const events = (params as { events?: unknown } | null)?.events;
      if (!Array.isArray(events)) return; // not a batch: nothing to unpack
      for (const event of events as MappingEventNotice[]) {
        this.emit("mapping", event);
        this.#subscription?._push({ type: "event", event });
      }
    } else if (method === NOTIFY_DROPPED) {
      const dropped = Number((params as { dropped?: unknown } | null)?.dropped ?? 0);
      this.emit("dropped", dropped);
      this.#subscription?._push({ type: "dropped", dropped, source: "server" });
    }
  }

  #onClose(code: number, reason: string): void {
    if (this.#keepAlive) clearInterval(this.#keepAlive);
    const why = `connection closed (${code}${reason ? ` ${reason}` : ""})`;
    for (const [id, pending] of this.#pending) {
      this.#pending.delete(id);
      clearTimeout(pending.timer);
      pending.reject(new ControlClientError("CLOSED", `${pending.method}: ${why}`));
    }
    const subscription = this.#subscription;
    this.#subscription = undefined;
    subscription?._end(this.#closing ? undefined : new ControlClientError("CLOSED", `event stream: ${why}`));
    this.emit("close", code, reason);
  }
}

/**
 * The live event stream of a `subscribe()`. Iterate it with `for await`; leaving the loop
 * (or `unsubscribe()`) unsubscribes. The iterator finishes after `unsubscribe()`,
 * `client.close()` or a later `subscribe()`, and throws a `ControlClientError` (CLOSED)
 * when the connection is lost.
 */
export class EventSubscription implements AsyncIterableIterator<SubscriptionItem> {
  readonly #client: ControlClient;
  readonly #highWaterMark: number;
  readonly #queue: SubscriptionItem[] = [];
  readonly #waiters: { resolve: (r: IteratorResult<SubscriptionItem>) => void; reject: (e: Error) => void }[] = [];
  #overflow = 0;
  #ended = false;
  #error: Error | undefined;

  /** @internal */
  constructor(client: ControlClient, highWaterMark: number) {
    this.#client = client;
    this.#highWaterMark = Math.max(1, highWaterMark);
  }

  /** True once the stream has ended (items may still be buffered). */
  get ended(): boolean {
    return this.#ended;
  }

  /** @internal */
  _push(item: SubscriptionItem): void {
    if (this.#ended) return;
    const waiter = this.#waiters.shift();
    if (waiter) {
      waiter.resolve({ value: item, done: false });
      return;
    }
    if (this.#queue.length >= this.#highWaterMark) {
      this.#overflow++;
      return;
    }
    this.#flushOverflow();
    this.#queue.push(item);
  }

  /** @internal */
  _end(error?: Error): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#error = error;
    // Waiters exist only when the queue is empty.
    for (const waiter of this.#waiters.splice(0)) this.#settleEnd(waiter);
  }

  next(): Promise<IteratorResult<SubscriptionItem>> {
    this.#flushOverflow();
    const item = this.#queue.shift();
    if (item) return Promise.resolve({ value: item, done: false });
    return new Promise((resolve, reject) => {
      if (this.#ended) this.#settleEnd({ resolve, reject });
      else this.#waiters.push({ resolve, reject });
    });
  }

  async return(): Promise<IteratorResult<SubscriptionItem>> {
    await this.unsubscribe();
    return { value: undefined, done: true };
  }

  /** Ends this stream and tells the server (when this is still the connection's subscription). */
  async unsubscribe(): Promise<void> {
    const wasActive = !this.#ended;
    this._end();
    this.#queue.length = 0;
    if (wasActive) await this.#client._release(this).catch(() => {});
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  #flushOverflow(): void {
    if (this.#overflow === 0) return;
    this.#queue.push({ type: "dropped", dropped: this.#overflow, source: "client" });
    this.#overflow = 0;
  }

  #settleEnd(waiter: { resolve: (r: IteratorResult<SubscriptionItem>) => void; reject: (e: Error) => void }): void {
    if (this.#error) {
      const error = this.#error;
      this.#error = undefined; // thrown once; done after that
      waiter.reject(error);
    } else {
      waiter.resolve({ value: undefined, done: true });
    }
  }
}

function rawToString(data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString("utf8");
  if (data instanceof ArrayBuffer) return Buffer.from(data).toString("utf8");
  return data.toString("utf8");
}

/** Reads the start of a refused upgrade's body (bounded in size and time), then calls `done`. */
function readBody(res: IncomingMessage, done: (body: string) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    const body = Buffer.concat(chunks).toString("utf8").slice(0, 200).replace(/\s+/g, " ").trim();
    done(body);
  };
  const timer = setTimeout(finish, 200);
  res.on("data", (chunk: Buffer) => {
    if (size < 1024) chunks.push(chunk);
    size += chunk.length;
  });
  res.once("end", finish);
  res.once("error", finish);
  res.once("close", finish);
}

function describeConnectError(err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case "ECONNREFUSED":
      return "connection refused (is pcp-server running with the control channel enabled?)";
    case "ENOTFOUND":
      return "host not found";
    case "EHOSTUNREACH":
    case "ENETUNREACH":
      return "host unreachable";
    case "ECONNRESET":
      return "connection reset";
    case "DEPTH_ZERO_SELF_SIGNED_CERT":
    case "SELF_SIGNED_CERT_IN_CHAIN":
    case "UNABLE_TO_VERIFY_LEAF_SIGNATURE":
    case "UNABLE_TO_GET_ISSUER_CERT_LOCALLY":
      return `${err.message} (give the server's CA certificate)`;
    default:
      return err.code ? `${err.message} (${err.code})` : err.message;
  }
}
