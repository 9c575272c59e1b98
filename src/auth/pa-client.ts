// A PCP authentication client [RFC 7652] (library; `pcpctl auth-test` drives it): the EAP
// peer's messages in EAP_PAYLOAD, the transport key derived as the server derives it, then
// common requests tagged with AUTHENTICATION_TAG and their replies checked. It follows the
// server's re-authentication and termination while it runs.
import dgram from "node:dgram";
import { randomInt } from "node:crypto";
import { isIPv6 } from "node:net";
import * as W from "../wire.generated.js";
import { toAddress16 } from "../net/address.js";
import { transportKey, verifyMac } from "./pa-crypto.js";
import {
  all,
  commonTag,
  EapReassembly,
  eapSections,
  encodePa,
  first,
  optionPositions,
  parsePa,
  type ParsedPa,
  type Tagging,
  u32Of,
  u32Option,
  option,
  paTagSize,
  verifyPaTag,
  withCommonTag,
} from "./pa-wire.js";
import type { EapPeer } from "./pa-types.js";

export interface PcpAuthClientOptions {
  server: { address: string; port: number };
  /** A fresh EAP peer for each (re-)authentication. */
  newPeer: () => EapPeer;
  /** Local address to send from (default: the wildcard of the server's family). */
  bind?: string;
  /** Whole exchange, and one common request, ms. */
  timeoutMs?: number;
  /** First retransmission gap, ms (RFC 6887 §8.1.1: 3 s; doubles each time). */
  retransmitMs?: number;
  /** Tests: the algorithm lists repeated in the first protected message (default: as offered) [7652 §3.1.3]. */
  echoAlgorithms?: (offered: { prfs: number[]; macs: number[] }) => { prfs: number[]; macs: number[] };
}

/** The source address the kernel picks for `address` (a connected UDP socket sends nothing). */
async function localAddressTowards(type: "udp4" | "udp6", address: string, port: number): Promise<string> {
  const probe = dgram.createSocket(type);
  try {
    await new Promise<void>((resolve, reject) => {
      probe.once("error", reject);
      probe.connect(port, address, () => resolve());
    });
    return probe.address().address;
  } finally {
    probe.close();
  }
}

export class PaFailure extends Error {
  constructor(
    readonly result: number,
    message: string,
  ) {
    super(message);
  }
}

export interface CommonReply {
  reply: Buffer;
  result: number;
  /** The reply carried a valid AUTHENTICATION_TAG of this session. */
  tagged: boolean;
}

type Phase = "idle" | "authenticating" | "open" | "closing";

export class PcpAuthClient {
  private socket!: dgram.Socket;
  private phase: Phase = "idle";
  sessionId = 0;
  keyId = 0;
  lifetimeS = 0;
  /** Completed (re-)authentications. */
  authentications = 0;
  private key?: Buffer;
  private prevKey?: { key: Buffer; keyId: number };
  private prf = 0;
  private mac = 0;
  private offered = { prfs: [] as number[], macs: [] as number[] };
  private nonce = 0;
  private peer?: EapPeer;
  private paIn = 0;
  private paOut = 0;
  private commonIn = 0;
  private commonOut = 0;
  private lastIn?: Buffer;
  /** A message of ours answered lastIn; if not, a duplicate of it gets a PA-Acknowledgement [7652 §6.3]. */
  private answered = false;
  private lastOut?: Buffer;
  /** Sections of our EAP response still to send, and the server's EAP request being collected [7652 §6.6]. */
  private outSections: Buffer[] = [];
  private readonly inSections = new EapReassembly();
  /** PA messages that carried a section of a longer EAP message, sent and received (tests read them). */
  readonly sections = { sent: 0, received: 0 };
  private retransmit?: NodeJS.Timeout;
  private waiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private pending = new Map<string, (m: Buffer) => void>();
  private reauthenticating = false;
  /** Set when the server ended the session [7652 §3.3]. */
  terminatedByServer = false;
  private clientAddress: Uint8Array = new Uint8Array(16);
  /** The address requests come from (the PCP Client's IP Address field) [6887 §7.1]. */
  localAddress = "";

  constructor(private readonly o: PcpAuthClientOptions) {}

  async open(): Promise<void> {
    const type = isIPv6(this.o.server.address) ? "udp6" : "udp4";
    this.localAddress = this.o.bind ?? (await localAddressTowards(type, this.o.server.address, this.o.server.port));
    this.clientAddress = toAddress16(this.localAddress);
    this.socket = dgram.createSocket(type);
    this.socket.on("message", (m) => this.onMessage(m));
    await new Promise<void>((resolve) => this.socket.bind(0, this.o.bind, () => resolve()));
  }

  get port(): number {
    return this.socket.address().port;
  }

  get established(): boolean {
    return this.phase === "open" && this.key !== undefined;
  }

  private tagging(): Tagging | undefined {
    return this.key ? { key: this.key, keyId: this.keyId, mac: this.mac } : undefined;
  }

  /** Client-initiated authentication: PA-Initiation with a NONCE [7652 §3.1.1]. */
  authenticate(): Promise<void> {
    const done = this.whenAuthenticated();
    this.nonce = randomInt(1, 0xffffffff);
    this.begin(false);
    this.sendPa(W.RESULT_INITIATION, [u32Option(W.OPTION_NONCE, this.nonce)], 0);
    return done;
  }

  /** Resolves at the next successful (re-)authentication; rejects when it fails. */
  whenAuthenticated(): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("authentication timed out")), this.o.timeoutMs ?? 15_000);
      this.waiters.push({
        resolve: () => (clearTimeout(timer), resolve()),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
    });
  }

  private begin(reauth: boolean): void {
    this.phase = reauth ? "open" : "authenticating";
    this.reauthenticating = reauth;
    this.peer = this.o.newPeer();
    if (!reauth) {
      this.sessionId = 0;
      this.key = undefined;
      this.prf = 0;
      this.mac = 0;
      this.paIn = 0;
      this.paOut = 0;
      this.lastIn = undefined;
    }
    this.outSections = [];
    this.inSections.reset();
  }

  private settle(error?: Error): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) error ? w.reject(error) : w.resolve();
  }

  private sendPa(result: number, options: Buffer[], sessionId = this.sessionId): void {
    const msg = encodePa({ response: false, result, sessionId, sequence: this.paOut, clientAddress: this.clientAddress, options }, this.tagging());
    this.paOut = (this.paOut + 1) >>> 0;
    this.lastOut = msg;
    this.answered = true;
    this.transmit(msg, this.o.retransmitMs ?? 3000, 0);
  }

  /** PA-Acknowledgement of the server's PA message `sequence`: no sequence number of ours consumed [7652 §6.4]. */
  private sendAck(sequence: number): void {
    const msg = encodePa(
      {
        response: false,
        result: 0,
        sessionId: this.sessionId,
        sequence: this.paOut,
        clientAddress: this.clientAddress,
        options: [u32Option(W.OPTION_RECEIVED_PAK, sequence)],
      },
      this.tagging(),
    );
    this.socket.send(msg, this.o.server.port, this.o.server.address);
  }

  /** Our EAP response in one AUTHENTICATION_REPLY, or in sections when it does not fit one [7652 §6.6]. */
  private sendEap(eap: Uint8Array, extra: Buffer[]): void {
    const overhead = W.AUTH_MIN_SIZE + W.OPT_HEADER_SIZE + (this.key ? paTagSize(this.mac) : 0);
    const [head, ...rest] = eapSections(eap, overhead + extra.reduce((n, o) => n + o.length, 0), overhead);
    this.outSections = rest;
    if (rest.length) this.sections.sent += 1 + rest.length;
    this.sendPa(W.RESULT_AUTHENTICATION_REPLY, [option(W.OPTION_EAP_PAYLOAD, head), ...extra]);
  }

  private transmit(msg: Buffer, gap: number, tries: number): void {
    if (this.retransmit) clearTimeout(this.retransmit);
    this.socket.send(msg, this.o.server.port, this.o.server.address);
    this.retransmit = setTimeout(() => {
      if (tries >= 4) return this.fail(new PaFailure(0, "no answer from the PCP server"));
      this.transmit(msg, gap * 2, tries + 1);
    }, gap);
    this.retransmit.unref();
  }

  private stopRetransmit(): void {
    if (this.retransmit) clearTimeout(this.retransmit);
    this.retransmit = undefined;
  }

  private fail(e: Error): void {
    this.stopRetransmit();
    if (!this.reauthenticating) {
      this.phase = "idle";
      this.key = undefined;
      this.sessionId = 0;
    }
    this.reauthenticating = false;
    this.settle(e);
  }

  private onMessage(m: Buffer): void {
    // No PCP message exceeds 1100 octets [6887 §7]: a longer one is not from a PCP server.
    if (m.length < W.PCP_HEADER_SIZE || m.length > W.PCP_MAX_MESSAGE || m[0] !== W.PCP_VERSION || (m[1] & W.R_BIT) === 0) return;
    if ((m[1] & W.OPCODE_MASK) === W.OP_AUTHENTICATION) {
      const pa = parsePa(m);
      if (pa) void this.onPa(m, pa);
      return;
    }
    const key = this.matchKey(m);
    const waiter = this.pending.get(key);
    if (waiter) waiter(m);
  }

  private async onPa(m: Buffer, pa: ParsedPa): Promise<void> {
    if (pa.sessionId !== this.sessionId) {
      // The first PA-Server message: our nonce back (client-initiated) [7652 §5.3], or an
      // unsolicited one after AUTHENTICATION_REQUIRED (server-initiated) [7652 §3.1.2].
      const nonce = u32Of(first(pa.options, W.OPTION_NONCE));
      const ours = this.phase === "authenticating" && this.sessionId === 0 && nonce === this.nonce;
      const unsolicited = this.phase === "idle" && pa.result === W.RESULT_AUTHENTICATION_REQUEST && pa.sequence === 0 && nonce === undefined;
      if (!ours && !unsolicited) {
        if (this.phase === "authenticating" && nonce === this.nonce && pa.result !== W.RESULT_AUTHENTICATION_REQUEST)
          this.fail(new PaFailure(pa.result, `authentication refused: result ${pa.result}`));
        return;
      }
      if (unsolicited) {
        this.begin(false);
        this.nonce = 0;
      }
      this.sessionId = pa.sessionId;
      this.offered = {
        prfs: all(pa.options, W.OPTION_PSEUDO_RANDOM_FUNCTION).map((d) => d.readUInt32BE(0)),
        macs: all(pa.options, W.OPTION_MAC_ALGORITHM).map((d) => d.readUInt32BE(0)),
      };
    } else if (pa.result === W.RESULT_UNKNOWN_SESSION_ID) {
      return this.fail(new PaFailure(pa.result, "the server knows no such session"));
    }
    const success = pa.result === W.RESULT_AUTHENTICATION_SUCCEEDED;
    if (this.key && !success && !verifyPaTag(m, this.tagging()!)) return; // silently discarded [7652 §6.2]
    const acked = u32Of(first(pa.options, W.OPTION_RECEIVED_PAK));
    if (acked !== undefined) {
      this.stopRetransmit();
      // The server asks for the next section of our EAP response [7652 §6.6].
      if (this.outSections.length && acked === (this.paOut - 1) >>> 0)
        this.sendPa(W.RESULT_AUTHENTICATION_REPLY, [option(W.OPTION_EAP_PAYLOAD, this.outSections.shift()!)]);
      return;
    }
    if (this.lastIn?.equals(m)) {
      // A retransmission: our answer again, or an acknowledgement if we have none yet [7652 §6.3].
      if (!this.answered) this.sendAck(pa.sequence);
      else if (this.lastOut) this.socket.send(this.lastOut, this.o.server.port, this.o.server.address);
      return;
    }
    if (pa.sequence !== this.paIn) return;
    const eap = first(pa.options, W.OPTION_EAP_PAYLOAD);
    switch (pa.result) {
      case W.RESULT_AUTHENTICATION_REQUEST: {
        if (this.phase === "open" && !this.reauthenticating) this.begin(true); // server-initiated re-authentication [7652 §3.4]
        this.accept(m);
        if (!eap || !this.peer) return;
        const continuing = this.inSections.active;
        const request = this.inSections.add(eap);
        if (request === "bad") return;
        if (continuing || request === "more") this.sections.received++;
        if (request === "more") return this.sendAck(pa.sequence); // the next section, please [7652 §6.6]
        const response = await this.peer.receive(request);
        if (!response) return;
        const options: Buffer[] = [];
        if (this.prf === 0) {
          // Our choice among the algorithms offered [7652 §3.1.3].
          this.prf = this.offered.prfs.includes(W.PRF_HMAC_SHA2_256) ? W.PRF_HMAC_SHA2_256 : (this.offered.prfs[0] ?? 0);
          this.mac = this.offered.macs.includes(W.AUTH_HMAC_SHA2_256_128) ? W.AUTH_HMAC_SHA2_256_128 : (this.offered.macs[0] ?? 0);
          options.push(u32Option(W.OPTION_PSEUDO_RANDOM_FUNCTION, this.prf), u32Option(W.OPTION_MAC_ALGORITHM, this.mac));
        }
        return this.sendEap(response, options);
      }
      case W.RESULT_AUTHENTICATION_SUCCEEDED: {
        if (eap && this.peer) await this.peer.receive(eap);
        const msk = this.peer?.msk;
        const tagAt = optionPositions(m)?.find((o) => o.code === W.OPTION_PA_AUTHENTICATION_TAG);
        if (!msk || !tagAt) return this.fail(new PaFailure(pa.result, "EAP succeeded without an MSK or the message has no tag"));
        const keyId = m.readUInt32BE(tagAt.at + W.OPT_HEADER_SIZE);
        const key = transportKey(this.prf, msk, this.sessionId, this.nonce, keyId);
        if (!verifyPaTag(m, { key, keyId, mac: this.mac })) return; // not from our server [7652 §6.2]
        this.accept(m);
        if (this.key) this.prevKey = { key: this.key, keyId: this.keyId };
        this.key = key;
        this.keyId = keyId;
        this.lifetimeS = u32Of(first(pa.options, W.OPTION_SESSION_LIFETIME)) ?? 0;
        if (this.reauthenticating) {
          this.paIn = 0; // sequence numbers restart with the new key [7652 §3.4]
          this.paOut = 0;
          this.commonIn = 0;
          this.commonOut = 0;
        }
        const echo = this.o.echoAlgorithms?.(this.offered) ?? this.offered;
        const options = [...echo.prfs.map((p) => u32Option(W.OPTION_PSEUDO_RANDOM_FUNCTION, p)), ...echo.macs.map((a) => u32Option(W.OPTION_MAC_ALGORITHM, a))];
        // The last message of the exchange: not retransmitted [7652 §6.3].
        const msg = encodePa(
          {
            response: false,
            result: W.RESULT_AUTHENTICATION_SUCCEEDED,
            sessionId: this.sessionId,
            sequence: this.paOut,
            clientAddress: this.clientAddress,
            options,
          },
          this.tagging(),
        );
        this.paOut = (this.paOut + 1) >>> 0;
        this.lastOut = msg;
        this.answered = true;
        this.stopRetransmit();
        this.socket.send(msg, this.o.server.port, this.o.server.address);
        this.phase = "open";
        this.reauthenticating = false;
        this.authentications++;
        return this.settle();
      }
      case W.RESULT_SESSION_TERMINATED: {
        this.accept(m);
        // Answer with our own termination message, then forget the SA [7652 §3.3].
        const msg = encodePa(
          {
            response: false,
            result: W.RESULT_SESSION_TERMINATED,
            sessionId: this.sessionId,
            sequence: this.paOut,
            clientAddress: this.clientAddress,
            options: [],
          },
          this.tagging(),
        );
        this.stopRetransmit();
        this.socket.send(msg, this.o.server.port, this.o.server.address);
        this.terminatedByServer = this.phase !== "closing";
        const closing = this.phase === "closing";
        this.reset();
        if (closing) this.settle();
        else this.settle(new PaFailure(pa.result, "session terminated by the server"));
        return;
      }
      default:
        this.accept(m);
        return this.fail(new PaFailure(pa.result, `authentication failed: result ${pa.result}`));
    }
  }

  private accept(m: Buffer): void {
    this.paIn = (this.paIn + 1) >>> 0;
    this.lastIn = Buffer.from(m);
    this.answered = false;
    this.stopRetransmit();
  }

  private reset(): void {
    this.stopRetransmit();
    this.phase = "idle";
    this.key = undefined;
    this.prevKey = undefined;
    this.sessionId = 0;
    this.reauthenticating = false;
  }

  /** Client-initiated termination [7652 §3.3]: resolves when the server confirmed it. */
  terminate(): Promise<void> {
    const done = this.whenAuthenticated();
    this.phase = "closing";
    this.sendPa(W.RESULT_SESSION_TERMINATED, []);
    return done;
  }

  /** Client-initiated re-authentication (decision: INITIATION inside the session) [7652 §3.4]. */
  reauthenticate(): Promise<void> {
    const done = this.whenAuthenticated();
    this.begin(true);
    this.sendPa(W.RESULT_INITIATION, []);
    return done;
  }

  /**
   * The security association as it stands (undefined before a session): for a signer
   * outside this object — bench/auth.bench.ts hands it to its C load generator, which then
   * owns the common sequence numbers from `nextSequence` on; this client must not sign
   * common requests itself after that [7652 §6.5].
   */
  securityAssociation(): { sessionId: number; keyId: number; key: Buffer; mac: number; nextSequence: number } | undefined {
    if (!this.key) return undefined;
    return { sessionId: this.sessionId, keyId: this.keyId, key: Buffer.from(this.key), mac: this.mac, nextSequence: this.commonOut };
  }

  // ---- common requests ----

  /** `msg` with this session's AUTHENTICATION_TAG (the next sequence number) [7652 §6.1]. */
  sign(msg: Uint8Array): Buffer {
    if (!this.key) throw new Error("no PCP security association");
    const out = withCommonTag(msg, this.tagging()!, this.sessionId, this.commonOut);
    if (!out) throw new Error("request too long for a tag");
    this.commonOut = (this.commonOut + 1) >>> 0;
    return out;
  }

  private matchKey(m: Uint8Array): string {
    const op = m[1] & W.OPCODE_MASK;
    return op === W.OP_MAP || op === W.OP_PEER ? `${op}:${Buffer.from(m.subarray(W.MP_NONCE, W.MP_NONCE + W.MP_NONCE_SIZE)).toString("hex")}` : `${op}`;
  }

  /** Sends `msg` as it is (tests: replays, tampering) and waits for the reply matching it; undefined after `timeoutMs`. */
  send(msg: Uint8Array, timeoutMs = this.o.timeoutMs ?? 15_000): Promise<CommonReply | undefined> {
    const key = this.matchKey(msg);
    return new Promise((resolve) => {
      let gap = this.o.retransmitMs ?? 3000;
      let timer: NodeJS.Timeout;
      const deadline = setTimeout(() => finish(undefined), timeoutMs);
      const finish = (r: CommonReply | undefined) => {
        clearTimeout(deadline);
        clearTimeout(timer);
        this.pending.delete(key);
        resolve(r);
      };
      this.pending.set(key, (reply) => {
        const checked = this.checkReply(reply);
        if (checked) finish(checked);
      });
      const out = () => {
        this.socket.send(msg, this.o.server.port, this.o.server.address);
        timer = setTimeout(out, (gap *= 2) / 2);
        timer.unref();
      };
      out();
    });
  }

  /** Signs and sends a common request (MAP, PEER, ANNOUNCE). */
  request(msg: Uint8Array): Promise<CommonReply | undefined> {
    return this.send(this.sign(msg));
  }

  /**
   * A reply's tag checked [7652 §6.2, §6.5]: undefined (ignored) when it names our session
   * but fails; untagged replies pass as such (AUTHENTICATION_REQUIRED, UNKNOWN_SESSION_ID).
   */
  private checkReply(reply: Buffer): CommonReply | undefined {
    const result = reply[W.HDR_RESULT];
    const t = commonTag(reply);
    if (!t) {
      // The server lost our SA (restart, failover): full authentication again [7652 §3.2].
      if (result === W.RESULT_UNKNOWN_SESSION_ID && this.key) this.reset();
      return { reply, result, tagged: false };
    }
    if (t.sessionId !== this.sessionId) return undefined;
    const key = t.keyId === this.keyId ? this.key : t.keyId === this.prevKey?.keyId ? this.prevKey.key : undefined;
    if (!key || t.sequence < this.commonIn || !verifyMac(this.mac, key, reply, t.dataAt, t.dataLength)) return undefined;
    this.commonIn = t.sequence;
    return { reply, result, tagged: true };
  }

  close(): void {
    this.stopRetransmit();
    this.settle(new Error("client closed"));
    this.socket?.close();
  }
}
