// The RADIUS transport under the EAP relay: one UDP socket per configured server (so each
// server has its own identifier space, RFC 2865 §3 "Identifier"), retransmission of the very
// same bytes (same Identifier and Request Authenticator, so the server's duplicate detection
// answers from its cache, RFC 5080 §2.2.1), a timeout per attempt, and failover: a server that
// did not answer any attempt is held down (skipped) for holdDownMs, then tried again.
import { createSocket, type Socket } from "node:dgram";
import { isIP } from "node:net";
import { ErrorCodes, PcpdError } from "../errors.js";
import { checkReply, type EncodedRequest, type ReplyContents, readReply } from "./radius-packet.js";

export interface RadiusServerSpec {
  host: string;
  port: number;
  secret: string;
}

export interface RadiusClientOptions {
  servers: RadiusServerSpec[];
  /** Wait for a reply this long per attempt. */
  timeoutMs: number;
  /** Retransmissions after the first attempt (0: send once). */
  retries: number;
  /** A server that did not answer is skipped this long (default 30 s). */
  holdDownMs?: number;
  /** Clock for the hold-down (default performance.now). */
  now?: () => number;
}

/** Counters of one server; tests compare whole objects. */
export interface RadiusServerStats {
  server: string;
  /** Access-Requests sent, first attempts only. */
  requests: number;
  retransmissions: number;
  /** Requests that got no valid reply after every attempt. */
  timeouts: number;
  accepts: number;
  rejects: number;
  challenges: number;
  /** Replies discarded (RFC 2865 §3, RFC 3579 §3.2: silently), by reason. */
  malformed: number;
  badAuthenticator: number;
  badMessageAuthenticator: number;
  noMessageAuthenticator: number;
  /** Replies whose Identifier matches no outstanding request (late duplicates). */
  unmatched: number;
  /** Socket errors (ICMP port unreachable on the connected socket, send failures). */
  socketErrors: number;
  /** Source ports (sockets) open towards the server: 256 Identifiers each, opened as needed. */
  sockets: number;
  /** Times the server was put in hold-down. */
  holdDowns: number;
  /** Requests not sent to it because it was held down. */
  skipped: number;
  heldDown: boolean;
}

/** `build` encodes the request for a given Identifier and the server's secret. */
export type RequestBuilder = (identifier: number, secret: string) => EncodedRequest;

export type ClientResult = { server: number; reply: ReplyContents } | { server: null; reason: string };

interface Pending {
  /** Null while the Identifier is reserved and the request not yet sent. */
  request: EncodedRequest | null;
  resolve: (reply: ReplyContents) => void;
}

/** Checks the relay's RADIUS settings; a PcpdError(RADIUS_BAD_CONFIG) names each problem. */
export function checkRadiusOptions(opts: RadiusClientOptions & { nasIdentifier?: string }): void {
  const issues: string[] = [];
  if (!Array.isArray(opts.servers) || opts.servers.length === 0) issues.push("servers: at least one RADIUS server is needed");
  for (const [i, s] of (opts.servers ?? []).entries()) {
    if (typeof s.host !== "string" || isIP(s.host) === 0) issues.push(`servers[${i}].host: ${JSON.stringify(s.host)} is not an IP address`);
    if (!Number.isInteger(s.port) || s.port < 1 || s.port > 65535) issues.push(`servers[${i}].port: ${s.port} is not a UDP port`);
    // RFC 2865 §3: the shared secret must not be empty.
    if (typeof s.secret !== "string" || s.secret.length === 0) issues.push(`servers[${i}].secret: must not be empty`);
  }
  if (!Number.isFinite(opts.timeoutMs) || opts.timeoutMs <= 0) issues.push(`timeoutMs: ${opts.timeoutMs} must be > 0`);
  if (!Number.isInteger(opts.retries) || opts.retries < 0 || opts.retries > 20) issues.push(`retries: ${opts.retries} must be an integer 0..20`);
  if (opts.holdDownMs !== undefined && (!Number.isFinite(opts.holdDownMs) || opts.holdDownMs < 0)) issues.push(`holdDownMs: ${opts.holdDownMs} must be ≥ 0`);
  if (opts.nasIdentifier !== undefined && (typeof opts.nasIdentifier !== "string" || opts.nasIdentifier.length === 0 || opts.nasIdentifier.length > 253))
    issues.push("nasIdentifier: 1..253 characters");
  if (issues.length) throw new PcpdError(ErrorCodes.RADIUS_BAD_CONFIG, `invalid RADIUS configuration:\n  ${issues.join("\n  ")}`);
}

const newStats = (server: string): RadiusServerStats => ({
  server,
  requests: 0,
  retransmissions: 0,
  timeouts: 0,
  accepts: 0,
  rejects: 0,
  challenges: 0,
  malformed: 0,
  badAuthenticator: 0,
  badMessageAuthenticator: 0,
  noMessageAuthenticator: 0,
  unmatched: 0,
  socketErrors: 0,
  sockets: 0,
  holdDowns: 0,
  skipped: 0,
  heldDown: false,
});

/**
 * An Identifier freed this recently is not reused on the same socket: a server's duplicate
 * detection keys on source address, port and Identifier (RFC 5080 §2.2.2), and a reply to a
 * late retransmission must not meet a new request. More sockets are opened instead.
 */
const ID_REUSE_MS = 1000;
/** Source ports (sockets) per server at most: 256 Identifiers each. */
const MAX_LANES = 16;

/** One source port towards a server: a connected socket and its 256 Identifiers. */
interface Lane {
  socket: Socket;
  ready: Promise<void>;
  pending: Map<number, Pending>;
  /** When each Identifier was last freed (performance.now). */
  freedAt: Float64Array;
  nextId: number;
}

/** One server: its sockets (each its own Identifier space), counters and hold-down. */
class ServerLink {
  readonly stats: RadiusServerStats;
  heldDownUntil = Number.NEGATIVE_INFINITY;
  private lanes: Lane[] = [];
  /** Callers waiting for an Identifier (every lane's are outstanding or freed too recently). */
  private readonly idWaiters: (() => void)[] = [];
  private closed = false;

  constructor(readonly spec: RadiusServerSpec) {
    this.stats = newStats(`${spec.host}:${spec.port}`);
  }

  get sockets(): number {
    return this.lanes.length;
  }

  private openLane(): Lane {
    const socket = createSocket(isIP(this.spec.host) === 6 ? "udp6" : "udp4");
    const lane: Lane = { socket, ready: Promise.resolve(), pending: new Map(), freedAt: new Float64Array(256).fill(Number.NEGATIVE_INFINITY), nextId: 0 };
    // A connected socket: the kernel delivers only datagrams from this server's address.
    socket.on("message", (msg) => this.onMessage(lane, msg));
    socket.on("error", () => {
      this.stats.socketErrors++;
    });
    lane.ready = new Promise<void>((resolve, reject) => {
      const failed = (err: Error) => {
        // The next request opens a fresh socket.
        this.lanes = this.lanes.filter((l) => l !== lane);
        socket.close();
        reject(err);
      };
      socket.once("error", failed);
      socket.connect(this.spec.port, this.spec.host, () => {
        socket.off("error", failed);
        resolve();
      });
    });
    this.lanes.push(lane);
    return lane;
  }

  private onMessage(lane: Lane, msg: Buffer): void {
    const pending = msg.length >= 2 ? lane.pending.get(msg[1]) : undefined;
    if (!pending?.request) {
      this.stats.unmatched++;
      return;
    }
    const checked = checkReply(msg, pending.request, this.spec.secret);
    if (!checked.ok) {
      if (checked.reason === "malformed") this.stats.malformed++;
      else if (checked.reason === "bad-authenticator") this.stats.badAuthenticator++;
      else if (checked.reason === "bad-message-authenticator") this.stats.badMessageAuthenticator++;
      else this.stats.noMessageAuthenticator++;
      return;
    }
    let reply: ReplyContents;
    try {
      reply = readReply(checked, pending.request, this.spec.secret);
    } catch {
      // The package refuses what it cannot decode (e.g. a vendor id ≥ 2^24): discarded.
      this.stats.malformed++;
      return;
    }
    if (reply.code === 2) this.stats.accepts++;
    else if (reply.code === 3) this.stats.rejects++;
    else if (reply.code === 11) this.stats.challenges++;
    else {
      // RFC 2865 §3: only Accept, Reject and Challenge answer an Access-Request.
      this.stats.malformed++;
      return;
    }
    pending.resolve(reply);
  }

  /** An Identifier on some lane: round-robin per lane, none freed within ID_REUSE_MS. */
  private async take(): Promise<{ lane: Lane; id: number }> {
    for (;;) {
      const now = performance.now();
      for (const lane of this.lanes) {
        for (let n = 0; n < 256; n++) {
          const id = (lane.nextId + n) & 0xff;
          if (lane.pending.has(id) || now - lane.freedAt[id] < ID_REUSE_MS) continue;
          return this.reserve(lane, id);
        }
      }
      if (this.lanes.length < MAX_LANES) return this.reserve(this.openLane(), 0);
      // Woken by a freed Identifier, or when the quarantine of the freed ones has passed.
      await new Promise<void>((resolve) => {
        this.idWaiters.push(resolve);
        setTimeout(resolve, ID_REUSE_MS).unref();
      });
      if (this.closed) throw new Error("RADIUS client closed");
    }
  }

  /** Marks the Identifier taken at once: the caller awaits before its request is pending. */
  private reserve(lane: Lane, id: number): { lane: Lane; id: number } {
    lane.nextId = (id + 1) & 0xff;
    lane.pending.set(id, { request: null, resolve: () => {} });
    return { lane, id };
  }

  /** One request with its retransmissions; null when no valid reply came. */
  async request(build: RequestBuilder, timeoutMs: number, retries: number): Promise<ReplyContents | null> {
    if (this.closed) return null;
    const { lane, id } = await this.take();
    try {
      await lane.ready;
      const request = build(id, this.spec.secret);
      let settle: (reply: ReplyContents | null) => void = () => {};
      const answered = new Promise<ReplyContents | null>((resolve) => {
        settle = resolve;
      });
      lane.pending.set(id, { request, resolve: (r) => settle(r) });
      for (let attempt = 0; attempt <= retries && !this.closed; attempt++) {
        if (attempt === 0) this.stats.requests++;
        else this.stats.retransmissions++;
        lane.socket.send(request.bytes, (err) => {
          if (err) this.stats.socketErrors++;
        });
        let timer: NodeJS.Timeout | undefined;
        const reply = await Promise.race([
          answered,
          new Promise<null>((resolve) => {
            timer = setTimeout(() => resolve(null), timeoutMs);
          }),
        ]);
        clearTimeout(timer);
        if (reply) return reply;
      }
      if (!this.closed) this.stats.timeouts++;
      return null;
    } finally {
      lane.pending.delete(id);
      lane.freedAt[id] = performance.now();
      this.idWaiters.shift()?.();
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const lane of this.lanes) {
      for (const p of lane.pending.values()) p.resolve(null as unknown as ReplyContents);
      lane.pending.clear();
    }
    for (const w of this.idWaiters.splice(0)) w();
    await Promise.all(
      this.lanes.map(async (lane) => {
        await lane.ready.catch(() => {});
        await new Promise<void>((resolve) => lane.socket.close(() => resolve()));
      }),
    );
    this.lanes = [];
  }
}

export class RadiusClient {
  private readonly links: ServerLink[];
  private readonly holdDownMs: number;
  private readonly now: () => number;

  constructor(private readonly opts: RadiusClientOptions) {
    checkRadiusOptions(opts);
    this.links = opts.servers.map((s) => new ServerLink({ ...s }));
    this.holdDownMs = opts.holdDownMs ?? 30_000;
    this.now = opts.now ?? (() => performance.now());
  }

  /**
   * Sends the request to `pinned` (a conversation's server: its State means nothing elsewhere)
   * or to the first server not held down, failing over to the next one when it does not answer.
   */
  async send(build: RequestBuilder, pinned: number | null): Promise<ClientResult> {
    const order = pinned === null ? this.links.map((_, i) => i) : [pinned];
    const silent: string[] = [];
    const held: string[] = [];
    for (const i of order) {
      const link = this.links[i];
      if (link.heldDownUntil > this.now()) {
        link.stats.skipped++;
        held.push(link.stats.server);
        continue;
      }
      let reply: ReplyContents | null = null;
      try {
        reply = await link.request(build, this.opts.timeoutMs, this.opts.retries);
      } catch {
        // The socket could not be opened (no route, no such address family): as good as silent.
        link.stats.socketErrors++;
      }
      if (reply) return { server: i, reply };
      link.heldDownUntil = this.now() + this.holdDownMs;
      link.stats.holdDowns++;
      silent.push(link.stats.server);
    }
    const parts = [];
    if (silent.length) parts.push(`no valid reply from ${silent.join(", ")} after ${this.opts.retries + 1} attempt(s) of ${this.opts.timeoutMs} ms`);
    if (held.length) parts.push(`${held.join(", ")} held down`);
    return { server: null, reason: parts.join("; ") };
  }

  stats(): RadiusServerStats[] {
    const now = this.now();
    return this.links.map((l) => ({ ...l.stats, sockets: l.sockets, heldDown: l.heldDownUntil > now }));
  }

  async close(): Promise<void> {
    await Promise.all(this.links.map((l) => l.close()));
  }
}
