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
  request: EncodedRequest;
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
  holdDowns: 0,
  skipped: 0,
  heldDown: false,
});

/** One server: its socket, its 256 Identifiers, its counters and hold-down. */
class ServerLink {
  readonly stats: RadiusServerStats;
  heldDownUntil = Number.NEGATIVE_INFINITY;
  private socket: Socket | null = null;
  private ready: Promise<void> | null = null;
  private readonly pending = new Map<number, Pending>();
  /** Callers waiting for a free Identifier (all 256 outstanding). */
  private readonly idWaiters: (() => void)[] = [];
  private nextId = 0;
  private closed = false;

  constructor(readonly spec: RadiusServerSpec) {
    this.stats = newStats(`${spec.host}:${spec.port}`);
  }

  private open(): Promise<void> {
    if (this.ready) return this.ready;
    const socket = createSocket(isIP(this.spec.host) === 6 ? "udp6" : "udp4");
    this.socket = socket;
    // A connected socket: the kernel delivers only datagrams from this server's address.
    socket.on("message", (msg) => this.onMessage(msg));
    socket.on("error", () => {
      this.stats.socketErrors++;
    });
    this.ready = new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.connect(this.spec.port, this.spec.host, () => {
        socket.off("error", reject);
        resolve();
      });
    });
    return this.ready;
  }

  private onMessage(msg: Buffer): void {
    const pending = msg.length >= 2 ? this.pending.get(msg[1]) : undefined;
    if (!pending) {
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
    this.pending.delete(msg[1]);
    pending.resolve(reply);
  }

  private async takeId(): Promise<number> {
    while (this.pending.size >= 256) await new Promise<void>((resolve) => this.idWaiters.push(resolve));
    // Round-robin, so a late reply to a finished request rarely meets a new one with its Identifier.
    while (this.pending.has(this.nextId)) this.nextId = (this.nextId + 1) & 0xff;
    const id = this.nextId;
    this.nextId = (this.nextId + 1) & 0xff;
    return id;
  }

  /** One request with its retransmissions; null when no valid reply came. */
  async request(build: RequestBuilder, timeoutMs: number, retries: number): Promise<ReplyContents | null> {
    if (this.closed) return null;
    await this.open();
    const id = await this.takeId();
    const request = build(id, this.spec.secret);
    let settle: (reply: ReplyContents | null) => void = () => {};
    const answered = new Promise<ReplyContents | null>((resolve) => {
      settle = resolve;
    });
    this.pending.set(id, { request, resolve: (r) => settle(r) });
    try {
      for (let attempt = 0; attempt <= retries && !this.closed; attempt++) {
        if (attempt === 0) this.stats.requests++;
        else this.stats.retransmissions++;
        this.socket!.send(request.bytes, (err) => {
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
      if (this.pending.get(id)?.request === request) this.pending.delete(id);
      this.idWaiters.shift()?.();
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const p of this.pending.values()) p.resolve(null as unknown as ReplyContents);
    this.pending.clear();
    for (const w of this.idWaiters.splice(0)) w();
    const socket = this.socket;
    if (!socket) return;
    await this.ready?.catch(() => {});
    await new Promise<void>((resolve) => socket.close(() => resolve()));
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
      const reply = await link.request(build, this.opts.timeoutMs, this.opts.retries);
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
    return this.links.map((l) => ({ ...l.stats, heldDown: l.heldDownUntil > now }));
  }

  async close(): Promise<void> {
    await Promise.all(this.links.map((l) => l.close()));
  }
}
