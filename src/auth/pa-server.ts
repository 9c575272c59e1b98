// The server side of PCP authentication [RFC 7652]: PCP security associations (one per PA
// session) and the EAP pass-through authenticator in front of the AAA relay. One instance
// per shard worker: the worker that owns a listen address receives every datagram a client
// sends to it, so the SA lives where its tags are checked and no request crosses threads
// (docs/auth.md, "Where the exchange runs"). The SA record and the table holding them are
// ./pa-sa.ts.
import { randomInt } from "node:crypto";
import * as W from "../wire.generated.js";
import { SUPPORTED_MACS, SUPPORTED_PRFS, transportKey, verifyMac } from "./pa-crypto.js";
import {
  all,
  commonTag,
  eapFailure,
  eapIdentityRequest,
  eapSections,
  encodePa,
  first,
  option,
  parsePa,
  type PaOption,
  paTagSize,
  type Tagging,
  u32Of,
  u32Option,
  verifyPaTag,
  withCommonTag,
} from "./pa-wire.js";
import { zeroCounters, type AaaVerdict, type AuthCounters, type EapRelay, type SaView } from "./pa-types.js";
import { SaTable, type PaSocket, type Sa } from "./pa-sa.js";

export type { PaSocket } from "./pa-sa.js";

export interface PaServerOptions {
  relay: EapRelay;
  /** The shard's Epoch Time for PA-Server messages [6887 §8.5]. */
  epoch: () => number;
  maxSessions: number;
  sessionsPerClient: number;
  sessionLifetimeS: number;
  /** Fraction of the lifetime after which the server re-authenticates [7652 §3.4]. */
  reauthAt: number;
  idIndicator?: string;
  /** Sends one datagram (the listener's gate-aware send). */
  send: (socket: PaSocket, msg: Buffer, port: number, address: string) => void;
  /** Monotonic milliseconds (tests move it). */
  now?: () => number;
  /** First retransmission interval of PA messages, ms (RFC 6887 §8.1.1 IRT: 3 s); each later one doubles. */
  retransmitMs?: number;
  /** Retransmissions before the session is given up [7652 §6.3]. */
  retransmitCount?: number;
}

/** RFC 7652 §3.3: up to ten termination messages, 250 ms apart at first, each gap doubling. */
const TERMINATION_COPIES = 10;
const TERMINATION_FIRST_GAP_MS = 250;
/** Duplicates answered at most this often per session [7652 §6.3: rate-limited]. */
const RESEND_GAP_MS = 200;

export type CommonCheck = { status: "none" } | { status: "ok"; sa: number } | { status: "unknown" } | { status: "drop" };
// The answers without data, made once: the gate runs per datagram of an authenticating source.
const NONE: CommonCheck = { status: "none" };
const UNKNOWN: CommonCheck = { status: "unknown" };
const DROP: CommonCheck = { status: "drop" };

export class PaServer {
  private readonly sessions: SaTable;
  private readonly sweeper: NodeJS.Timeout;
  private readonly now: () => number;
  private readonly c: AuthCounters = zeroCounters();

  constructor(private readonly o: PaServerOptions) {
    this.sessions = new SaTable(o);
    this.now = o.now ?? (() => performance.now());
    this.sweeper = setInterval(() => this.sweep(), 250);
    this.sweeper.unref();
  }

  // ---- common messages (the listener, before the engine) ----

  /**
   * Checks the AUTHENTICATION_TAG of a common request from `address` [7652 §6.2, §6.5]:
   * "none" (no well-formed tag: the codec decides), "ok" (verified; the SA's sequence
   * advanced), "unknown" (no such SA: UNKNOWN_SESSION_ID, §3.2), "drop" (bad MAC, replay,
   * wrong key: silently discarded).
   */
  checkCommon(msg: Uint8Array, address: string): CommonCheck {
    const t = commonTag(msg);
    if (!t) return NONE;
    const sa = this.sessions.get(t.sessionId);
    if (!sa || sa.state === "closing" || !sa.key) {
      this.c.unknownSessions++;
      return UNKNOWN;
    }
    if (sa.client !== address) return this.tagFailure();
    const key = t.keyId === sa.keyId ? sa.key : t.keyId === sa.prevKey?.keyId ? sa.prevKey.key : undefined;
    if (!key) return this.tagFailure();
    if (t.sequence < sa.commonIn) {
      this.c.replays++;
      return DROP;
    }
    if (!verifyMac(sa.mac, key, msg, t.dataAt, t.dataLength)) return this.tagFailure();
    sa.commonIn = t.sequence;
    return { status: "ok", sa: sa.id };
  }

  private tagFailure(): CommonCheck {
    this.c.tagFailures++;
    return DROP;
  }

  /** The reply to a verified request, tagged with the SA's key [7652 §6.1]; undefined: the SA is gone or it would not fit. */
  tagReply(reply: Uint8Array, saId: number): Buffer | undefined {
    const sa = this.sessions.get(saId);
    if (!sa?.key || sa.state === "closing") return undefined;
    return withCommonTag(reply, this.tagging(sa)!, sa.id, sa.commonOut++);
  }

  /**
   * A request was refused with AUTHENTICATION_REQUIRED: start a session with an unsolicited
   * PA-Server message [7652 §3.1.2], unless this client endpoint has one under way.
   */
  startFor(address: string, port: number, socket: PaSocket): void {
    for (const sa of this.sessions.values()) {
      if (sa.client === address && sa.port === port && (sa.state === "authenticating" || sa.state === "confirming")) return;
    }
    const sa = this.create(address, port, socket, 0, false);
    if (!sa) return;
    this.sendPa(sa, W.RESULT_AUTHENTICATION_REQUEST, this.firstOptions(sa));
  }

  // ---- PA messages (VERDICT_AUTH slots) ----

  /** One AUTHENTICATION request the codec validated [7652 §3, §6.3, §6.4]. */
  onMessage(msg: Buffer, address: string, port: number, socket: PaSocket): void {
    const pa = parsePa(msg);
    if (!pa) return;
    if (pa.sessionId === 0) {
      this.initiate(msg, pa.result, pa.options, address, port, socket);
      return;
    }
    const sa = this.sessions.get(pa.sessionId);
    if (!sa) {
      this.c.unknownSessions++;
      // No PA session with this ID: the client must start over [7652 §3.2].
      this.o.send(
        socket,
        encodePa({ response: true, result: W.RESULT_UNKNOWN_SESSION_ID, sessionId: pa.sessionId, sequence: pa.sequence, epoch: this.o.epoch(), options: [] }),
        port,
        address,
      );
      return;
    }
    if (sa.client !== address) {
      this.c.tagFailures++;
      return;
    }
    if (sa.state === "closing") {
      // The client's answer to our termination ends the repeats [7652 §3.3].
      if (pa.result === W.RESULT_SESSION_TERMINATED && sa.key && verifyPaTag(msg, this.tagging(sa)!)) this.drop(sa);
      return;
    }
    if (sa.key && !verifyPaTag(msg, this.tagging(sa)!)) {
      this.c.tagFailures++; // silently discarded [7652 §6.2]
      return;
    }
    sa.port = port;
    sa.socket = socket;
    const acked = u32Of(first(pa.options, W.OPTION_RECEIVED_PAK));
    if (acked !== undefined) {
      this.stopRetransmit(sa); // a PA-Acknowledgement consumes no sequence number [7652 §6.4]
      // It asks for the next section of a long EAP request [7652 §6.6].
      if (sa.outSections.length && acked === (sa.paOut - 1) >>> 0)
        this.sendPa(sa, W.RESULT_AUTHENTICATION_REQUEST, [option(W.OPTION_EAP_PAYLOAD, sa.outSections.shift()!)]);
      return;
    }
    if (sa.lastIn?.equals(msg)) {
      // A retransmission: answer with our last message again, or an acknowledgement while
      // the AAA server has not answered yet [7652 §6.3], rate-limited.
      if (this.now() - sa.lastResend < RESEND_GAP_MS) return;
      sa.lastResend = this.now();
      if (sa.waitingAaa || sa.inSections.active) this.sendAck(sa, pa.sequence);
      else if (sa.lastOut) this.o.send(sa.socket, sa.lastOut, sa.port, sa.client);
      return;
    }
    if (pa.sequence !== sa.paIn) return; // out of order or a different message with a used number [7652 §6.4]
    sa.paIn = (sa.paIn + 1) >>> 0;
    sa.lastIn = Buffer.from(msg);
    this.stopRetransmit(sa);
    const nonce = u32Of(first(pa.options, W.OPTION_NONCE));
    if (nonce !== undefined && sa.nonce === 0 && sa.state === "authenticating") {
      sa.nonce = nonce; // server-initiated: the client's nonce, echoed from now on [7652 §3.1.2]
      sa.echoNonce = true;
    }
    switch (pa.result) {
      case W.RESULT_SESSION_TERMINATED:
        this.sendPa(sa, W.RESULT_SESSION_TERMINATED, [], true);
        this.c.terminations++;
        this.drop(sa);
        return;
      case W.RESULT_AUTHENTICATION_FAILED:
      case W.RESULT_AUTHORIZATION_FAILED:
        this.fail(sa, "client"); // the client could not authenticate us [7652 §3.1.3]
        this.drop(sa);
        return;
      case W.RESULT_INITIATION:
        if (sa.state === "open") this.startReauth(sa); // client-initiated re-authentication [7652 §3.4] (decision: INITIATION inside the session)
        return;
      case W.RESULT_AUTHENTICATION_REPLY:
        this.relay(sa, pa.options, pa.sequence);
        return;
      case W.RESULT_AUTHENTICATION_SUCCEEDED:
        this.confirm(sa, pa.options);
        return;
    }
  }

  private initiate(msg: Buffer, result: number, options: PaOption[], address: string, port: number, socket: PaSocket): void {
    const nonce = u32Of(first(options, W.OPTION_NONCE));
    if (result !== W.RESULT_INITIATION || nonce === undefined) return; // a PA-Initiation carries a NONCE [7652 §3.1.1]
    for (const sa of this.sessions.values()) {
      if (sa.client === address && sa.port === port && sa.lastIn?.equals(msg)) {
        if (sa.lastOut && this.now() - sa.lastResend >= RESEND_GAP_MS) {
          sa.lastResend = this.now();
          this.o.send(sa.socket, sa.lastOut, sa.port, sa.client);
        }
        return;
      }
    }
    const sa = this.create(address, port, socket, nonce, true);
    if (!sa) {
      this.o.send(
        socket,
        encodePa({
          response: true,
          result: W.RESULT_NO_RESOURCES,
          sessionId: 0,
          sequence: 0,
          epoch: this.o.epoch(),
          options: [u32Option(W.OPTION_NONCE, nonce)],
        }),
        port,
        address,
      );
      return;
    }
    sa.paIn = 1;
    sa.lastIn = Buffer.from(msg);
    this.sendPa(sa, W.RESULT_AUTHENTICATION_REQUEST, this.firstOptions(sa));
  }

  /** The first PA-Server message: EAP-Request/Identity, the algorithms offered, ID_INDICATOR [7652 §3.1.3]. */
  private firstOptions(sa: Sa): Buffer[] {
    const out = [option(W.OPTION_EAP_PAYLOAD, eapIdentityRequest(randomInt(256)))];
    for (const prf of SUPPORTED_PRFS) out.push(u32Option(W.OPTION_PSEUDO_RANDOM_FUNCTION, prf));
    for (const mac of SUPPORTED_MACS) out.push(u32Option(W.OPTION_MAC_ALGORITHM, mac));
    if (this.o.idIndicator) out.push(option(W.OPTION_ID_INDICATOR, Buffer.from(this.o.idIndicator, "utf8")));
    void sa;
    return out;
  }

  private create(address: string, port: number, socket: PaSocket, nonce: number, echoNonce: boolean): Sa | undefined {
    const sa = this.sessions.create(address, port, socket, nonce, echoNonce);
    if (!sa) this.fail(undefined, "capacity");
    this.c.sessions = this.sessions.size;
    return sa;
  }

  private relay(sa: Sa, options: PaOption[], sequence: number): void {
    const eap = first(options, W.OPTION_EAP_PAYLOAD);
    if (!eap || sa.waitingAaa || (sa.state !== "authenticating" && sa.state !== "reauth")) return;
    if (sa.prf === 0 && !sa.inSections.active) {
      // The client's choice, in its first PA-Client message [7652 §3.1.3].
      const prf = u32Of(first(options, W.OPTION_PSEUDO_RANDOM_FUNCTION));
      const mac = u32Of(first(options, W.OPTION_MAC_ALGORITHM));
      if (prf === undefined || mac === undefined || !SUPPORTED_PRFS.includes(prf) || !SUPPORTED_MACS.includes(mac)) {
        this.sendPa(sa, W.RESULT_AUTHENTICATION_FAILED, [option(W.OPTION_EAP_PAYLOAD, eapFailure(eap[1] ?? 0))], true);
        this.fail(sa, "algorithm");
        this.drop(sa);
        return;
      }
      sa.prf = prf;
      sa.mac = mac;
    }
    const message = sa.inSections.add(eap);
    if (message === "bad") return; // not an EAP message: discarded (the codec cannot judge sections)
    if (message === "more") {
      this.sendAck(sa, sequence); // the next section, please [7652 §6.6]
      return;
    }
    if (message[0] === 2 && message[4] === 1) sa.identity = message.subarray(5).toString("utf8"); // EAP-Response/Identity
    sa.waitingAaa = true;
    const generation = sa.generation;
    this.o.relay.exchange(this.relayKey(sa), message, { callingStationId: `${sa.client}:${sa.port}` }).then(
      (v) => this.onVerdict(sa, generation, v),
      (e: unknown) => this.onVerdict(sa, generation, { kind: "unreachable", reason: String(e) }),
    );
  }

  private relayKey(sa: Sa): string {
    return `${sa.id}.${sa.generation}`;
  }

  private onVerdict(sa: Sa, generation: number, v: AaaVerdict): void {
    if (this.sessions.get(sa.id) !== sa || sa.generation !== generation || sa.state === "closing") return;
    sa.waitingAaa = false;
    sa.outSections = [];
    switch (v.kind) {
      case "challenge":
        this.sendEap(sa, v.eap);
        return;
      case "accept": {
        this.o.relay.forget(this.relayKey(sa));
        const lifetimeS = Math.max(1, Math.min(this.o.sessionLifetimeS, v.sessionTimeoutS || Number.POSITIVE_INFINITY));
        const reauth = sa.state === "reauth";
        if (sa.key) sa.prevKey = { key: sa.key, keyId: sa.keyId };
        sa.keyId = (sa.keyId + 1) >>> 0 || 1;
        // Update the SA before the success message, which the new key signs [7652 §3.1.3].
        sa.key = transportKey(sa.prf, v.msk, sa.id, sa.nonce, sa.keyId);
        sa.lifetimeS = lifetimeS;
        sa.expires = this.now() + lifetimeS * 1000;
        sa.state = "confirming";
        this.sendPa(sa, W.RESULT_AUTHENTICATION_SUCCEEDED, [
          option(W.OPTION_EAP_PAYLOAD, v.eap ?? Buffer.from([3, 0, 0, 4])),
          u32Option(W.OPTION_SESSION_LIFETIME, lifetimeS),
        ]);
        if (reauth) {
          // Sequence numbers restart with the new key [7652 §3.4].
          sa.paIn = 0;
          sa.paOut = 0;
          sa.commonIn = 0;
          sa.commonOut = 0;
        }
        return;
      }
      case "reject":
        this.o.relay.forget(this.relayKey(sa));
        this.sendPa(sa, W.RESULT_AUTHENTICATION_FAILED, [option(W.OPTION_EAP_PAYLOAD, v.eap ?? eapFailure(0))], true);
        this.fail(sa, "reject");
        this.drop(sa);
        return;
      case "unreachable":
        this.o.relay.forget(this.relayKey(sa));
        if (sa.state === "reauth" && sa.everOpen) {
          // The current SA stays until its lifetime ends; the next sweep tries again (decision).
          sa.state = "open";
          this.fail(sa, "unreachable");
          return;
        }
        // No AAA answer: a transient failure, not a verdict on the credentials (decision).
        this.sendPa(sa, W.RESULT_NETWORK_FAILURE, [], true);
        this.fail(sa, "unreachable");
        this.drop(sa);
        return;
    }
  }

  /** The client's first protected message: it repeats the algorithms offered [7652 §3.1.3]. */
  private confirm(sa: Sa, options: PaOption[]): void {
    if (sa.state !== "confirming") return;
    const prfs = all(options, W.OPTION_PSEUDO_RANDOM_FUNCTION).map((d) => d.readUInt32BE(0));
    const macs = all(options, W.OPTION_MAC_ALGORITHM).map((d) => d.readUInt32BE(0));
    const same = (a: number[], b: readonly number[]) => a.length === b.length && [...a].sort().every((x, i) => x === [...b].sort()[i]);
    if (!same(prfs, SUPPORTED_PRFS) || !same(macs, SUPPORTED_MACS)) {
      this.sendPa(sa, W.RESULT_DOWNGRADE_ATTACK_DETECTED, [], true);
      this.fail(sa, "downgrade");
      this.drop(sa);
      return;
    }
    if (sa.everOpen) this.c.reauthentications++;
    else this.c.successes++;
    sa.everOpen = true;
    sa.state = "open";
    sa.established = Date.now();
    sa.prevKey = undefined;
    this.c.established = this.sessions.established();
  }

  /** Server-initiated re-authentication [7652 §3.4] (decision: AUTHENTICATION_REQUEST inside the session). */
  private startReauth(sa: Sa): void {
    this.o.relay.forget(this.relayKey(sa));
    sa.generation++;
    sa.state = "reauth";
    sa.waitingAaa = false;
    sa.outSections = [];
    sa.inSections.reset();
    this.sendPa(sa, W.RESULT_AUTHENTICATION_REQUEST, [option(W.OPTION_EAP_PAYLOAD, eapIdentityRequest(randomInt(256)))]);
  }

  // ---- sending, retransmission, termination ----

  private tagging(sa: Sa): Tagging | undefined {
    return sa.key ? { key: sa.key, keyId: sa.keyId, mac: sa.mac } : undefined;
  }

  private sendPa(sa: Sa, result: number, options: Buffer[], final = false): void {
    if (sa.echoNonce) options = [u32Option(W.OPTION_NONCE, sa.nonce), ...options];
    const msg = encodePa({ response: true, result, sessionId: sa.id, sequence: sa.paOut, epoch: this.o.epoch(), options }, this.tagging(sa));
    sa.paOut = (sa.paOut + 1) >>> 0;
    sa.lastOut = msg;
    this.o.send(sa.socket, msg, sa.port, sa.client);
    if (!final) this.arm(sa, this.o.retransmitMs ?? 3000, 0);
  }

  /**
   * An EAP request from the AAA server in one PA-Server message, or in sections when it is
   * longer than one can carry (the AAA server's EAP-TLS fragments may exceed it) [7652 §6.6].
   */
  private sendEap(sa: Sa, eap: Uint8Array): void {
    const overhead = W.AUTH_MIN_SIZE + (sa.echoNonce ? W.OPT_HEADER_SIZE + W.NONCE_DATA_SIZE : 0) + W.OPT_HEADER_SIZE + (sa.key ? paTagSize(sa.mac) : 0);
    const [head, ...rest] = eapSections(eap, overhead, overhead);
    sa.outSections = rest;
    this.sendPa(sa, W.RESULT_AUTHENTICATION_REQUEST, [option(W.OPTION_EAP_PAYLOAD, head)]);
  }

  private sendAck(sa: Sa, sequence: number): void {
    const msg = encodePa(
      { response: true, result: 0, sessionId: sa.id, sequence: sa.paOut, epoch: this.o.epoch(), options: [u32Option(W.OPTION_RECEIVED_PAK, sequence)] },
      this.tagging(sa),
    );
    this.o.send(sa.socket, msg, sa.port, sa.client);
  }

  /** RFC 6887 §8.1.1 timers, applied by the server too [7652 §6.3]; the session ends after the last one. */
  private arm(sa: Sa, gap: number, tries: number): void {
    this.stopRetransmit(sa);
    sa.tries = tries;
    sa.timer = setTimeout(() => {
      if (this.sessions.get(sa.id) !== sa || !sa.lastOut) return;
      if (tries >= (this.o.retransmitCount ?? 4)) {
        this.fail(sa, "timeout");
        return this.drop(sa);
      }
      this.o.send(sa.socket, sa.lastOut, sa.port, sa.client);
      this.arm(sa, gap * 2, tries + 1);
    }, gap);
    sa.timer.unref();
  }

  private stopRetransmit(sa: Sa): void {
    if (sa.timer) clearTimeout(sa.timer);
    sa.timer = undefined;
  }

  /**
   * Server-initiated termination [7652 §3.3]: the SA stops protecting anything at once; the
   * SESSION_TERMINATED message goes out up to ten times until the client answers.
   */
  terminate(id: number, reason = "operator"): boolean {
    const sa = this.sessions.get(id);
    if (!sa || sa.state === "closing") return false;
    this.c.terminations++;
    this.fail(undefined, reason === "expired" ? "expired" : undefined);
    if (!sa.key) {
      this.drop(sa);
      return true;
    }
    this.sendPa(sa, W.RESULT_SESSION_TERMINATED, [], true);
    sa.state = "closing";
    const message = sa.lastOut!;
    const repeat = (copy: number, gap: number) => {
      sa.timer = setTimeout(() => {
        if (this.sessions.get(sa.id) !== sa) return;
        if (copy >= TERMINATION_COPIES) return this.drop(sa);
        // Each copy carries the Epoch Time of its sending [7652 §3.3].
        message.writeUInt32BE(this.o.epoch() >>> 0, W.HDR_EPOCH);
        const again = encodePa(
          {
            response: true,
            result: W.RESULT_SESSION_TERMINATED,
            sessionId: sa.id,
            sequence: message.readUInt32BE(W.PA_SEQUENCE),
            epoch: this.o.epoch(),
            options: [],
          },
          this.tagging(sa),
        );
        this.o.send(sa.socket, again, sa.port, sa.client);
        repeat(copy + 1, gap * 2);
      }, gap);
      sa.timer.unref();
    };
    repeat(1, TERMINATION_FIRST_GAP_MS);
    return true;
  }

  private fail(sa: Sa | undefined, reason: string | undefined): void {
    void sa;
    if (reason) this.c.failures[reason] = (this.c.failures[reason] ?? 0) + 1;
  }

  private drop(sa: Sa): void {
    if (this.sessions.get(sa.id) !== sa) return;
    this.stopRetransmit(sa);
    this.o.relay.forget(this.relayKey(sa));
    this.sessions.remove(sa);
    this.c.sessions = this.sessions.size;
    this.c.established = this.sessions.established();
  }

  /** Expiry and re-authentication before it [7652 §3.4]. */
  private sweep(): void {
    const now = this.now();
    for (const sa of [...this.sessions.values()]) {
      if (sa.state === "closing") continue;
      if (now >= sa.expires) {
        this.terminate(sa.id, "expired"); // lifetime over without re-authentication [7652 §3.4]
        continue;
      }
      if (sa.state === "open" && now >= sa.expires - sa.lifetimeS * 1000 * (1 - this.o.reauthAt)) this.startReauth(sa);
    }
  }

  // ---- control ----

  list(): SaView[] {
    return this.sessions.views(Date.now() - this.now());
  }

  counters(): AuthCounters {
    return { ...this.c, failures: { ...this.c.failures } };
  }

  close(): void {
    clearInterval(this.sweeper);
    for (const sa of this.sessions.values()) this.stopRetransmit(sa);
    this.sessions.clear();
    void this.o.relay.close();
  }
}
