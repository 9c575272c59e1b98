// The PCP server as an EAP pass-through authenticator (RFC 3748 §2.3, RFC 7652 §3): each EAP
// message of a peer's authentication session goes to a RADIUS server in an Access-Request
// (RFC 3579), and the server's answer comes back as a verdict — a Challenge carrying the next
// EAP request, an Accept carrying EAP-Success and the MSK (from the MS-MPPE keys, RFC 2548),
// a Reject, or "unreachable" when no server answered. The conversation's State and the server
// it started on are kept between rounds; the session is forgotten when it ends.
import { EapCode, identityOf, parseEap } from "./eap.js";
import { checkRadiusOptions, RadiusClient, type RadiusServerSpec, type RadiusServerStats } from "./radius-client.js";
import { encodeAccessRequest, RadiusCode } from "./radius-packet.js";

export type { RadiusServerSpec, RadiusServerStats } from "./radius-client.js";

export type AaaVerdict =
  | { kind: "challenge"; eap: Uint8Array }
  | { kind: "accept"; eap: Uint8Array | null; msk: Uint8Array; sessionTimeoutS: number | null }
  | { kind: "reject"; eap: Uint8Array | null; reason?: string }
  | { kind: "unreachable"; reason: string };

export interface EapRelayOptions {
  servers: RadiusServerSpec[];
  /** Per-attempt reply timeout. */
  timeoutMs: number;
  /** Retransmissions after the first attempt. */
  retries: number;
  /** NAS-Identifier (RFC 2865 §5.32) in every Access-Request. */
  nasIdentifier: string;
  /** A server that did not answer is skipped this long (default 30 s). */
  holdDownMs?: number;
  /** Framed-MTU (RFC 3579 §2.4): the largest EAP packet the server should send the peer. */
  framedMtu?: number;
  /** A session with no exchange for this long is dropped (default 120 s; the AAA forgets it too). */
  sessionIdleMs?: number;
  /** Clock for hold-down and idle expiry (default performance.now). */
  now?: () => number;
}

export interface EapRelayStats {
  servers: RadiusServerStats[];
  verdicts: { challenge: number; accept: number; reject: number; unreachable: number };
  /** Accepts turned into rejects because they carried no usable MS-MPPE keys. */
  acceptsWithoutKeys: number;
  /** Messages refused before reaching the AAA (not an EAP-Response). */
  refusedInput: number;
  sessions: number;
}

interface Session {
  userName: string | null;
  state: Uint8Array | null;
  /** The server the conversation runs on once it answered: its State means nothing elsewhere. */
  server: number | null;
  lastUsed: number;
  /** Exchanges of one session run one after another (a PCP retransmission must not interleave). */
  tail: Promise<unknown>;
}

export class RadiusEapRelay {
  private readonly client: RadiusClient;
  private readonly sessions = new Map<string, Session>();
  private readonly now: () => number;
  private readonly idleMs: number;
  private readonly counts = { challenge: 0, accept: 0, reject: 0, unreachable: 0 };
  private acceptsWithoutKeys = 0;
  private refusedInput = 0;
  private lastSweep = Number.NEGATIVE_INFINITY;

  constructor(private readonly opts: EapRelayOptions) {
    checkRadiusOptions(opts);
    this.now = opts.now ?? (() => performance.now());
    this.idleMs = opts.sessionIdleMs ?? 120_000;
    this.client = new RadiusClient({ servers: opts.servers, timeoutMs: opts.timeoutMs, retries: opts.retries, holdDownMs: opts.holdDownMs, now: this.now });
  }

  /** One EAP message of authentication session `session` (State kept between rounds). */
  exchange(session: string, eap: Uint8Array, attrs: { callingStationId?: string } = {}): Promise<AaaVerdict> {
    this.sweep();
    let s = this.sessions.get(session);
    if (!s) {
      s = { userName: null, state: null, server: null, lastUsed: this.now(), tail: Promise.resolve() };
      this.sessions.set(session, s);
    }
    const run = s.tail.then(() => this.round(session, s!, eap, attrs));
    s.tail = run.catch(() => {});
    return run;
  }

  private async round(key: string, s: Session, eap: Uint8Array, attrs: { callingStationId?: string }): Promise<AaaVerdict> {
    s.lastUsed = this.now();
    const parsed = parseEap(eap);
    // RFC 3579 §2.1: the NAS forwards the peer's EAP-Responses; anything else is the peer's error.
    if (!parsed || parsed.code !== EapCode.RESPONSE) {
      this.refusedInput++;
      return this.finish(key, { kind: "reject", eap: null, reason: "not an EAP-Response" });
    }
    const identity = identityOf(eap);
    if (identity !== null && s.state === null) s.userName = identity;
    const eapBytes = eap.subarray(0, (eap[2] << 8) | eap[3]);
    const result = await this.client.send(
      (identifier, secret) =>
        encodeAccessRequest(
          {
            identifier,
            userName: s.userName,
            nasIdentifier: this.opts.nasIdentifier,
            callingStationId: attrs.callingStationId,
            framedMtu: this.opts.framedMtu,
            state: s.state,
            eap: eapBytes,
          },
          secret,
        ),
      s.server,
    );
    if (result.server === null) return this.finish(key, { kind: "unreachable", reason: result.reason });
    const reply = result.reply;
    if (reply.code === RadiusCode.ACCESS_CHALLENGE) {
      // RFC 3579 §2.6.3 (a Challenge without EAP-Message is not for EAP): the conversation cannot go on.
      if (!reply.eap) return this.finish(key, { kind: "reject", eap: null, reason: "Access-Challenge without EAP-Message" });
      s.state = reply.state;
      s.server = result.server;
      return this.finish(key, { kind: "challenge", eap: reply.eap }, false);
    }
    if (reply.code === RadiusCode.ACCESS_ACCEPT) {
      if (!reply.msk) {
        this.acceptsWithoutKeys++;
        return this.finish(key, { kind: "reject", eap: null, reason: "Access-Accept without MS-MPPE keys" });
      }
      return this.finish(key, { kind: "accept", eap: reply.eap, msk: reply.msk, sessionTimeoutS: reply.sessionTimeoutS });
    }
    return this.finish(key, { kind: "reject", eap: reply.eap });
  }

  private finish(key: string, verdict: AaaVerdict, done = true): AaaVerdict {
    this.counts[verdict.kind]++;
    if (done) this.sessions.delete(key);
    return verdict;
  }

  private sweep(): void {
    // At most a few sweeps per idle period: one exchange never walks every session.
    const now = this.now();
    if (now - this.lastSweep < this.idleMs / 4) return;
    this.lastSweep = now;
    const limit = now - this.idleMs;
    for (const [key, s] of this.sessions) if (s.lastUsed < limit) this.sessions.delete(key);
  }

  forget(session: string): void {
    this.sessions.delete(session);
  }

  stats(): EapRelayStats {
    return {
      servers: this.client.stats(),
      verdicts: { ...this.counts },
      acceptsWithoutKeys: this.acceptsWithoutKeys,
      refusedInput: this.refusedInput,
      sessions: this.sessions.size,
    };
  }

  async close(): Promise<void> {
    this.sessions.clear();
    await this.client.close();
  }
}
