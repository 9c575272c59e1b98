// Syslog sink: RFC 5424 messages with the record in structured data, over UDP (RFC 5426,
// one message per datagram) or TCP (RFC 6587 §3.4.1 octet counting: "LEN SP MSG").
// SD-ID pcpd@32473 (32473: the example enterprise number of RFC 5612; docs/logging.md).
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { connect, isIPv6, type Socket } from "node:net";
import { hostname } from "node:os";
import type { Config } from "../config/schema.js";
import { PROTOCOL_NAMES, type LogRecord } from "./record.js";
import { Packed, Sink, type DatagramOpener, type Datagrams } from "./sink.js";

export const SD_ID = "pcpd@32473";
const SEVERITY_INFO = 6;
/** Datagrams a UDP sink has in the kernel's hands at once; the rest wait in the queue. */
const UDP_IN_FLIGHT = 256;
const TCP_BATCH = 512;
/** Records formatted per step of a UDP flush through Datagrams (one sendmmsg). */
const UDP_STEP = 512;
/** Longest message: the structured data's fields are bounded (addresses, ports, a 16-byte THIRD_PARTY_ID in hex). */
const MESSAGE_MAX = 2048;
const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 30_000;

const MSGIDS: Record<LogRecord["event"], string> = {
  create: "MAP-CREATE",
  delete: "MAP-DELETE",
  expire: "MAP-EXPIRE",
  update: "MAP-UPDATE",
  "block-lease": "BLOCK-ALLOC",
  "block-release": "BLOCK-RELEASE",
};

const SPECIAL = /["\\\]]/;
/** PARAM-VALUE escaping (RFC 5424 §6.3.3): '"', '\' and ']' (numbers and addresses have none). */
const escapeParam = (v: string) => (SPECIAL.test(v) ? v.replace(/["\\\]]/g, (c) => `\\${c}`) : v);

/** Addresses here are this server's own formatting: a colon means IPv6 (no regex per record). */
const endpoint = (address: string, port: number) => (address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`);

/** The last header formatted: PRI, version, timestamp, host, app, procid (a batch's records share their time). */
let headAt = Number.NaN;
let headFor: object | undefined;
let head = "";

/** One RFC 5424 message (no framing) for `r`. */
export function formatSyslog(r: LogRecord, o: { facility: number; host: string; appName: string; procId: number }): string {
  if (r.time !== headAt || o !== headFor) {
    headAt = r.time;
    headFor = o;
    head = `<${o.facility * 8 + SEVERITY_INFO}>1 ${new Date(r.time).toISOString()} ${o.host} ${o.appName} ${o.procId} `;
  }
  const block = r.type === "block";
  let sd = `[${SD_ID} event="${r.event}" type="${r.type}"`;
  if (!block) sd += ` proto="${r.protocol}"`;
  sd += ` intAddr="${r.internalAddress}"`;
  if (!block) sd += ` intPort="${r.internalPort}"`;
  if (r.thirdPartyId !== undefined) sd += ` thirdPartyId="${escapeParam(r.thirdPartyId)}"`;
  sd += ` extAddr="${r.externalAddress}"`;
  sd += block ? ` portFirst="${r.externalPort}" portLast="${r.lastPort}"` : ` extPort="${r.externalPort}" lifetime="${r.lifetime}"`;
  if (r.remoteAddress !== undefined) sd += ` remoteAddr="${r.remoteAddress}" remotePort="${r.remotePort}"`;
  if (!block) sd += ` source="${r.source}"`;
  sd += "]";
  const proto = PROTOCOL_NAMES[r.protocol] ?? `proto ${r.protocol}`;
  const text = block
    ? `${r.event} ${r.internalAddress} ports ${r.externalAddress}:${r.externalPort}-${r.lastPort}`
    : `${r.event} ${r.type} ${proto} ${endpoint(r.internalAddress, r.internalPort)} -> ${endpoint(r.externalAddress, r.externalPort)}` +
      (r.remoteAddress ? ` peer ${endpoint(r.remoteAddress, r.remotePort ?? 0)}` : "") +
      (r.event === "create" || r.event === "update" ? ` lifetime ${r.lifetime}` : "");
  return `${head}${MSGIDS[r.event]} ${sd} ${text}`;
}

type SyslogConfig = Config["logging"]["syslog"];

export class SyslogSink extends Sink {
  private readonly format: { facility: number; host: string; appName: string; procId: number };
  private udp?: UdpSocket;
  /** The addon's synchronous sends (when loaded): one send loop per flush, no callback per datagram. */
  private datagrams?: Datagrams;
  /** A step's messages for Datagrams (reused). */
  private readonly packed = new Packed(UDP_STEP * 320 + MESSAGE_MAX, UDP_STEP);
  private inFlight = 0;
  private udpReady = false;
  private tcp?: Socket;
  private connected = false;
  private backoff = BACKOFF_MIN_MS;
  private retry?: NodeJS.Timeout;
  private closed = false;

  constructor(
    private readonly c: SyslogConfig,
    open?: DatagramOpener,
  ) {
    super(`syslog-${c.transport}`, c.queue);
    this.format = {
      facility: c.facility,
      host:
        hostname()
          .replace(/[^!-~]/g, "")
          .slice(0, 255) || "-",
      appName: c.appName,
      procId: process.pid,
    };
    if (c.transport === "udp") this.datagrams = open?.(c.collector, c.port);
    if (this.datagrams) return;
    if (c.transport === "udp") {
      // Connected: no per-datagram address handling; a collector's ICMP unreachable surfaces as a send error.
      this.udp = createSocket(isIPv6(c.collector) ? "udp6" : "udp4");
      this.udp.on("error", () => this.counters.errors++);
      this.udp.connect(c.port, c.collector, () => {
        this.udpReady = true; // sends before this would throw (not connected yet)
        this.flush();
      });
      this.udp.unref();
    } else this.open();
  }

  private open(): void {
    if (this.closed) return;
    const s = connect({ host: this.c.collector, port: this.c.port });
    s.setNoDelay(false);
    s.unref();
    this.tcp = s;
    s.on("connect", () => {
      this.connected = true;
      this.backoff = BACKOFF_MIN_MS;
      this.flush();
    });
    s.on("drain", () => this.flush());
    s.on("error", () => this.counters.errors++);
    s.on("close", () => {
      this.connected = false;
      this.tcp = undefined;
      if (this.closed) return;
      // Reconnect with exponential backoff; records wait (bounded) meanwhile.
      this.retry = setTimeout(() => this.open(), this.backoff);
      this.retry.unref();
      this.backoff = Math.min(BACKOFF_MAX_MS, this.backoff * 2);
    });
  }

  flush(): void {
    if (this.datagrams) {
      this.flushDatagrams(this.datagrams);
      return;
    }
    if (this.udp) {
      if (!this.udpReady) return;
      while (this.pending() > 0 && this.inFlight < UDP_IN_FLIGHT) {
        const [r] = this.take(1);
        this.inFlight++;
        this.udp.send(formatSyslog(r, this.format), (error) => {
          this.inFlight--;
          if (error) {
            this.counters.errors++;
            this.counters.dropped++;
          } else this.counters.sent++;
          // The kernel took half of them: send more now rather than at the next tick.
          if (this.inFlight === UDP_IN_FLIGHT >> 1 && this.pending() > 0) this.flush();
        });
      }
      return;
    }
    const s = this.tcp;
    if (!s || !this.connected) return;
    while (this.pending() > 0 && !s.writableNeedDrain) {
      const batch = this.take(TCP_BATCH);
      const frames = batch.map((r) => {
        const msg = formatSyslog(r, this.format);
        return `${Buffer.byteLength(msg)} ${msg}`;
      });
      s.write(frames.join(""));
      this.counters.sent += batch.length;
    }
  }

  /**
   * One message per datagram (RFC 5426 §3.1), formatted back to back into one reused buffer
   * and sent in one sendmmsg per step. What the full send buffer did not take stays queued
   * (formatted again at the next flush).
   */
  private flushDatagrams(out: Datagrams): void {
    const p = this.packed;
    while (this.pending() > 0) {
      p.reset();
      for (const r of this.peek(UDP_STEP)) {
        if (!p.fits(MESSAGE_MAX)) break;
        p.add(p.bytes.write(formatSyslog(r, this.format), p.used, MESSAGE_MAX), 1);
      }
      const taken = p.sendThrough(out, this.counters);
      this.advance(taken);
      if (taken < p.count) return;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retry);
    this.flush();
    this.datagrams?.close();
    if (this.udp) {
      const u = this.udp;
      // Sends already queued finish first (a bounded wait: the kernel takes datagrams at once).
      for (let i = 0; i < 100 && this.inFlight > 0; i++) await new Promise((r) => setTimeout(r, 10));
      await new Promise<void>((resolve) => u.close(() => resolve()));
    }
    const s = this.tcp;
    if (!s) return;
    // What the collector has not read within a second is given up (a stalled collector must not hold the stop).
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => s.destroy(), 1000);
      s.once("close", () => {
        clearTimeout(timer);
        resolve();
      });
      s.end();
    });
  }
}
