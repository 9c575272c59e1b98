// The EAP peer side of EAP-TTLSv0 (RFC 5281), the method RFC 7652 §4 makes mandatory: Node's
// `tls` (TLS 1.2, the caller's CA) runs over a Duplex whose bytes ride in EAP-TTLS messages,
// fragmented and reassembled with the L/M/S flags (RFC 5281 §9.2); inside the tunnel the peer
// sends User-Name and User-Password as Diameter AVPs (inner PAP, §11.2.5); the keys come from
// the TLS exporter with the label "ttls keying material" (§8): MSK = first 64 octets, EMSK =
// next 64.
//
// When a TLS flight is complete is decided by the TLS records the client wrote, not by time:
// ClientHello is one handshake record; the flight answering the server's first flight ends
// with the handshake record (Finished) after ChangeCipherSpec; an alert ends any flight; after
// the handshake, the inner AVPs are one write whose callback says they left.
import { Duplex } from "node:stream";
import { connect, createSecureContext, type SecureContext, type TLSSocket } from "node:tls";
import { EapCode, EapType, encodeEap, identityResponse, parseEap } from "./eap.js";

/** RFC 5281 §9.1 flags octet. */
const FLAG_L = 0x80;
const FLAG_M = 0x40;
const FLAG_S = 0x20;
const VERSION_MASK = 0x07;
/** TLS record content types (RFC 5246 §6.2.1). */
const TLS_CCS = 20;
const TLS_ALERT = 21;
const TLS_HANDSHAKE = 22;
/** A reassembled TTLS message larger than this is refused (a TLS flight is a few KiB). */
const MAX_MESSAGE = 64 * 1024;
/** RFC 5281 §11.2.5 / RFC 2865: Diameter AVP codes of the RADIUS attributes used inside. */
const AVP_USER_NAME = 1;
const AVP_USER_PASSWORD = 2;
const AVP_FLAG_M = 0x40;

export interface EapTtlsPeerOptions {
  /** The inner identity (User-Name AVP) and the outer one (EAP-Response/Identity) unless outerIdentity. */
  identity: string;
  password: string;
  /** The CA certificate(s) the AAA server's certificate must chain to. */
  ca: string | Buffer;
  /** The name the server certificate must carry; without it only the chain is checked. */
  serverName?: string;
  /** The EAP-Response/Identity (e.g. "anonymous@realm"); default `identity`. */
  outerIdentity?: string;
  /** TLS octets per EAP-TTLS message (default 1000), so each EAP packet fits the transport. */
  fragmentSize?: number;
  /**
   * A client certificate (PEM, with its intermediate certificates) and its key, for an EAP
   * server that asks for one (RFC 5281 §7.2: optional in EAP-TTLS).
   */
  clientCert?: { cert: string | Buffer; key: string | Buffer };
  /** Bound on one TLS step (default 10 s): past it the method fails. */
  stepTimeoutMs?: number;
}

/**
 * One TLS context per CA (and client certificate), shared by the peers that use it: building one parses the CA
 * (~3 ms measured alone on the benchmark machine). Bounded: a few CAs in practice.
 */
const contexts = new Map<string, SecureContext>();
function contextFor(ca: string | Buffer, client?: { cert: string | Buffer; key: string | Buffer }): SecureContext {
  const text = (b: string | Buffer) => (typeof b === "string" ? b : b.toString("latin1"));
  const key = client ? `${text(ca)}\0${text(client.cert)}\0${text(client.key)}` : text(ca);
  let context = contexts.get(key);
  if (!context) {
    if (contexts.size >= 16) contexts.clear();
    context = createSecureContext({ ca, minVersion: "TLSv1.2", maxVersion: "TLSv1.2", ...(client ? { cert: client.cert, key: client.key } : {}) });
    contexts.set(key, context);
  }
  return context;
}

/** Diameter AVP (RFC 6733 §4.1 as RFC 5281 §10.1 uses it): no vendor id, padded to 4. */
function avp(code: number, data: Uint8Array): Buffer {
  const length = 8 + data.length;
  const out = Buffer.alloc((length + 3) & ~3);
  out.writeUInt32BE(code, 0);
  out.writeUInt32BE(length, 4);
  out[4] = AVP_FLAG_M;
  out.set(data, 8);
  return out;
}

/** RFC 5281 §11.2.5: User-Name and User-Password, the password null-padded to a multiple of 16. */
export function papAvps(identity: string, password: string): Buffer {
  const pw = Buffer.from(password, "utf8");
  const padded = Buffer.alloc(Math.max(16, Math.ceil(pw.length / 16) * 16));
  pw.copy(padded);
  return Buffer.concat([avp(AVP_USER_NAME, Buffer.from(identity, "utf8")), avp(AVP_USER_PASSWORD, padded)]);
}

type Phase = "idle" | "hello" | "handshake" | "tunnel" | "done";

export class EapTtlsPeer {
  private _status: "running" | "success" | "failure" = "running";
  private _msk: Uint8Array | null = null;
  private _emsk: Uint8Array | null = null;
  private phase: Phase = "idle";
  private readonly fragmentSize: number;
  private readonly stepTimeoutMs: number;
  private tls: TLSSocket | null = null;
  private duplex: Duplex | null = null;
  /** TLS octets written by the client and not yet sent. */
  private produced: Buffer[] = [];
  /** The client's record parser: bytes of the current record header and what is left of its body. */
  private recordHeader: number[] = [];
  private recordLeft = 0;
  private sawCcs = false;
  private flightDone = false;
  private tlsError: Error | null = null;
  private secure = false;
  /** The TTLS message being sent in fragments, and how much of it has gone. */
  private sending: Buffer | null = null;
  private sent = 0;
  /** The server's fragmented message being reassembled. */
  private receiving: Buffer[] = [];
  private receivingTotal: number | null = null;
  private lastRequest: Uint8Array | null = null;
  private lastResponse: Uint8Array | null = null;
  /** Wakes the step waiting on TLS progress. */
  private wake: (() => void) | null = null;

  constructor(private readonly opts: EapTtlsPeerOptions) {
    this.fragmentSize = opts.fragmentSize ?? 1000;
    this.stepTimeoutMs = opts.stepTimeoutMs ?? 10_000;
    if (!Number.isInteger(this.fragmentSize) || this.fragmentSize < 64) throw new RangeError(`fragmentSize ${opts.fragmentSize}: at least 64`);
  }

  get status(): "running" | "success" | "failure" {
    return this._status;
  }
  /** The MSK (64 octets) once the tunnel is up; kept after Success. */
  get msk(): Uint8Array | null {
    return this._msk;
  }
  get emsk(): Uint8Array | null {
    return this._emsk;
  }

  /** The EAP-Response/Identity answering `request` (an EAP-Request/Identity), or for a given id. */
  identityResponse(request: Uint8Array | number): Uint8Array {
    const id = typeof request === "number" ? request : (parseEap(request)?.identifier ?? 0);
    return identityResponse(id, this.opts.outerIdentity ?? this.opts.identity);
  }

  /**
   * Feeds one EAP packet from the authenticator; resolves with the EAP response to send, or
   * null when the method is finished (Success/Failure seen; `status` says which). A packet
   * that is malformed or not for the peer is discarded (RFC 3748 §4): null, status "running".
   */
  async receive(eap: Uint8Array): Promise<Uint8Array | null> {
    const p = parseEap(eap);
    if (!p || this._status !== "running") return null;
    if (p.code === EapCode.SUCCESS) {
      // RFC 3748 §4.2: a Success before the method concluded is not believed.
      this.finish(this.phase === "tunnel" && this._msk !== null ? "success" : "failure");
      return null;
    }
    if (p.code === EapCode.FAILURE) {
      this.finish("failure");
      return null;
    }
    if (p.code !== EapCode.REQUEST) return null;
    // RFC 3748 §4.1: a retransmitted request gets the same response again.
    if (this.lastRequest && this.lastResponse && Buffer.from(eap).equals(Buffer.from(this.lastRequest))) return this.lastResponse;
    let response: Uint8Array | null;
    if (p.type === EapType.IDENTITY) response = this.identityResponse(p.identifier);
    // RFC 3748 §5.2: a Notification is acknowledged with an empty Response/Notification.
    else if (p.type === EapType.NOTIFICATION) response = encodeEap(EapCode.RESPONSE, p.identifier, EapType.NOTIFICATION);
    // RFC 3748 §5.3.1: another method is refused with a Nak naming EAP-TTLS.
    else if (p.type !== EapType.TTLS) response = encodeEap(EapCode.RESPONSE, p.identifier, EapType.NAK, Uint8Array.of(EapType.TTLS));
    else response = await this.ttls(p.identifier, p.data);
    if (response) {
      this.lastRequest = Uint8Array.from(eap);
      this.lastResponse = response;
    }
    return response;
  }

  private finish(status: "success" | "failure"): void {
    this._status = status;
    this.phase = "done";
    this.tls?.destroy();
    this.tls = null;
  }

  /** One EAP-TTLS request (RFC 5281 §9). */
  private async ttls(id: number, data: Uint8Array): Promise<Uint8Array | null> {
    if (data.length < 1) return null;
    const flags = data[0];
    if (flags & FLAG_S) {
      if (this.phase !== "idle") return this.fail();
      // RFC 5281 §9.1: the version the server offers (low bits) is answered with 0, all we speak.
      // Before connecting: the ClientHello may be written during connect() itself.
      this.phase = "hello";
      this.startTls();
      if (!(await this.step(() => this.flightDone))) return this.fail();
      this.phase = "handshake";
      return this.sendProduced(id);
    }
    let off = 1;
    if (flags & FLAG_L) {
      if (data.length < 5) return this.fail();
      const total = ((data[1] << 24) | (data[2] << 16) | (data[3] << 8) | data[4]) >>> 0;
      if (total > MAX_MESSAGE) return this.fail();
      if (this.receivingTotal === null) this.receivingTotal = total;
      off = 5;
    }
    const payload = data.subarray(off);
    // RFC 5281 §9.2.2: an empty request while we send fragments acknowledges the last one.
    if (payload.length === 0 && this.sending) return this.nextFragment(id);
    if (payload.length === 0) return this.ttlsResponse(id, 0, new Uint8Array(0));
    this.receiving.push(Buffer.from(payload));
    const size = this.receiving.reduce((n, b) => n + b.length, 0);
    if (size > MAX_MESSAGE || (this.receivingTotal !== null && size > this.receivingTotal)) return this.fail();
    // More fragments follow: acknowledge this one with an empty response.
    if (flags & FLAG_M) return this.ttlsResponse(id, 0, new Uint8Array(0));
    const message = Buffer.concat(this.receiving);
    this.receiving = [];
    this.receivingTotal = null;
    return this.feed(id, message);
  }

  /** A complete server message into TLS; answers with what TLS (or the inner method) writes. */
  private async feed(id: number, message: Buffer): Promise<Uint8Array | null> {
    if (this.phase === "handshake") {
      this.flightDone = false;
      this.sawCcs = false;
      this.duplex!.push(message);
      if (!(await this.step(() => this.flightDone || this.secure))) return this.fail();
      if (this.secure) {
        this.onSecure();
        // Inner PAP (RFC 5281 §11.2.5): the credentials go in the tunnel's first data.
        await this.step(
          () => false,
          (done) => this.tls!.write(papAvps(this.opts.identity, this.opts.password), () => done()),
        );
        if (this.tlsError) return this.fail();
        this.phase = "tunnel";
      }
      return this.sendProduced(id);
    }
    if (this.phase === "tunnel") {
      // Whatever the server says inside the tunnel (PAP has no inner challenge) is read and acknowledged.
      this.duplex!.push(message);
      await this.settle();
      if (this.tlsError) return this.fail();
      return this.sendProduced(id);
    }
    return this.fail();
  }

  private startTls(): void {
    const self = this;
    this.duplex = new Duplex({
      read() {},
      write(chunk: Buffer, _enc, cb) {
        self.onTlsOutput(chunk);
        cb();
      },
      final(cb) {
        cb();
      },
    });
    const tls = connect({
      socket: this.duplex,
      secureContext: contextFor(this.opts.ca, this.opts.clientCert),
      servername: this.opts.serverName,
      host: this.opts.serverName,
      minVersion: "TLSv1.2",
      maxVersion: "TLSv1.2",
      // Without a server name only the chain is checked (the default check needs a name).
      ...(this.opts.serverName ? {} : { checkServerIdentity: () => undefined }),
    });
    this.tls = tls;
    tls.on("secureConnect", () => {
      this.secure = true;
      this.poke();
    });
    tls.on("data", () => this.poke());
    tls.on("error", (err) => {
      this.tlsError = err;
      this.poke();
    });
  }

  private onSecure(): void {
    // RFC 5281 §8: PRF(master_secret, "ttls keying material", client_random ‖ server_random), 128 octets.
    // No context argument: with one, RFC 5705 §4 mixes it into the seed and the keys differ
    // (@types/node declares it required; Node's own API has it optional).
    const exporter = this.tls as unknown as { exportKeyingMaterial(length: number, label: string): Buffer };
    const km = exporter.exportKeyingMaterial(128, "ttls keying material");
    this._msk = new Uint8Array(km.subarray(0, 64));
    this._emsk = new Uint8Array(km.subarray(64, 128));
  }

  /** Tracks the records the client writes to know when its flight is complete. */
  private onTlsOutput(chunk: Buffer): void {
    this.produced.push(Buffer.from(chunk));
    for (let i = 0; i < chunk.length; ) {
      if (this.recordLeft > 0) {
        const n = Math.min(this.recordLeft, chunk.length - i);
        this.recordLeft -= n;
        i += n;
        continue;
      }
      this.recordHeader.push(chunk[i++]);
      if (this.recordHeader.length < 5) continue;
      const [type, , , hi, lo] = this.recordHeader;
      this.recordHeader = [];
      this.recordLeft = (hi << 8) | lo;
      if (type === TLS_CCS) this.sawCcs = true;
      else if (type === TLS_ALERT) this.flightDone = true;
      else if (type === TLS_HANDSHAKE && (this.phase === "hello" || this.sawCcs)) this.flightDone = true;
    }
    this.poke();
  }

  private poke(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  /** Waits until `ready()` (re-checked at each TLS event) or a TLS error; false on error or timeout. */
  private async step(ready: () => boolean, start?: (done: () => void) => void): Promise<boolean> {
    const deadline = performance.now() + this.stepTimeoutMs;
    let finished = false;
    start?.(() => {
      finished = true;
      this.poke();
    });
    while (!ready() && !this.tlsError && !(start && finished)) {
      const left = deadline - performance.now();
      if (left <= 0) return false;
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
    }
    // Writes the same event produced may still be on their way through the stream.
    await this.settle();
    return !this.tlsError;
  }

  /** Lets the stream machinery run until the duplex has handed TLS its input and TLS wrote all it had. */
  private async settle(): Promise<void> {
    let quiet = 0;
    for (let turns = 0; quiet < 3 && turns < 1000; turns++) {
      const before = this.produced.length;
      await new Promise((resolve) => setImmediate(resolve));
      quiet = this.produced.length === before && this.duplex!.readableLength === 0 ? quiet + 1 : 0;
    }
  }

  /** Sends what TLS produced, fragmented if needed; an empty response when nothing was. */
  private sendProduced(id: number): Uint8Array {
    const message = Buffer.concat(this.produced);
    this.produced = [];
    if (message.length === 0) return this.ttlsResponse(id, 0, message);
    if (message.length <= this.fragmentSize) return this.ttlsResponse(id, 0, message);
    this.sending = message;
    this.sent = 0;
    return this.nextFragment(id);
  }

  /** RFC 5281 §9.2.2: the first fragment has L (and the total length) and M; the last has neither. */
  private nextFragment(id: number): Uint8Array {
    const message = this.sending!;
    const first = this.sent === 0;
    const chunk = message.subarray(this.sent, this.sent + this.fragmentSize);
    this.sent += chunk.length;
    const more = this.sent < message.length;
    if (!more) this.sending = null;
    if (!first) return this.ttlsResponse(id, more ? FLAG_M : 0, chunk);
    const body = Buffer.alloc(4 + chunk.length);
    body.writeUInt32BE(message.length, 0);
    chunk.copy(body, 4);
    return this.ttlsResponse(id, FLAG_L | (more ? FLAG_M : 0), body);
  }

  private ttlsResponse(id: number, flags: number, body: Uint8Array): Uint8Array {
    const data = new Uint8Array(1 + body.length);
    data[0] = flags & ~VERSION_MASK;
    data.set(body, 1);
    return encodeEap(EapCode.RESPONSE, id, EapType.TTLS, data);
  }

  private fail(): null {
    this.finish("failure");
    return null;
  }
}
