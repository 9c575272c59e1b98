// IPFIX sink (RFC 7011 over UDP) carrying NAT events with the information elements of
// RFC 8158: mapping (BIB) and session (PEER: with its remote peer) create/delete, and port
// block allocation/de-allocation (RFC 7422 logging). Templates go out first and again every
// templateRefreshSeconds (RFC 7011 §8.4: a UDP collector may have missed or expired them).
import { createSocket, type Socket } from "node:dgram";
import { isIPv6 } from "node:net";
import type { Config } from "../config/schema.js";
import { toAddress16 } from "../net/address.js";
import type { LogRecord } from "./record.js";
import { Packed, Sink, type DatagramOpener, type Datagrams } from "./sink.js";

/** Information elements (IANA IPFIX registry) by name: [id, length]. */
export const IE = {
  protocolIdentifier: [4, 1],
  sourceTransportPort: [7, 2],
  sourceIPv4Address: [8, 4],
  destinationTransportPort: [11, 2],
  destinationIPv4Address: [12, 4],
  sourceIPv6Address: [27, 16],
  destinationIPv6Address: [28, 16],
  postNATSourceIPv4Address: [225, 4],
  postNAPTSourceTransportPort: [227, 2],
  natOriginatingAddressRealm: [229, 1],
  natEvent: [230, 1],
  vrfId: [234, 4],
  postNATSourceIPv6Address: [281, 16],
  observationTimeMilliseconds: [323, 8],
  portRangeStart: [361, 2],
  portRangeEnd: [362, 2],
  portRangeStepSize: [363, 2],
  portRangeNumPorts: [364, 2],
} as const satisfies Record<string, readonly [number, number]>;
type IeName = keyof typeof IE;

/** natEvent values (RFC 8158 §4.1.1, IANA "NAT Event Type"). */
export const NAT_EVENT = {
  nat44SessionCreate: 1,
  nat44SessionDelete: 2,
  nat64SessionCreate: 4,
  nat64SessionDelete: 5,
  nat44BibCreate: 6,
  nat44BibDelete: 7,
  nat64BibCreate: 8,
  nat64BibDelete: 9,
  portBlockAllocation: 14,
  portBlockDeallocation: 15,
} as const;

/** natOriginatingAddressRealm: 1 private (the subscriber's side). */
const REALM_PRIVATE = 1;
const HEADER = 16;
const MTU = 1400;
const UDP_IN_FLIGHT = 256;
/** Records and messages (templates included) per sendmmsg of a flush through Datagrams. */
const IPFIX_STEP = 1024;
const IPFIX_STEP_MESSAGES = 64;

interface Template {
  id: number;
  fields: IeName[];
  length: number;
}

type Shape = "bib" | "session" | "block";

/** The template for a record's shape and address families (ids 256 up, fixed order). */
function templates(): Map<string, Template> {
  const out = new Map<string, Template>();
  let id = 256;
  for (const shape of ["bib", "session", "block"] as Shape[])
    for (const inside of [4, 6])
      for (const outside of [4, 6]) {
        const src: IeName = inside === 4 ? "sourceIPv4Address" : "sourceIPv6Address";
        const post: IeName = outside === 4 ? "postNATSourceIPv4Address" : "postNATSourceIPv6Address";
        const head: IeName[] = ["observationTimeMilliseconds", "natEvent", "natOriginatingAddressRealm", "vrfId"];
        const fields: IeName[] =
          shape === "block"
            ? [...head, src, post, "portRangeStart", "portRangeEnd", "portRangeStepSize", "portRangeNumPorts"]
            : [
                ...head,
                "protocolIdentifier",
                src,
                "sourceTransportPort",
                post,
                "postNAPTSourceTransportPort",
                ...(shape === "session" ? ([outside === 4 ? "destinationIPv4Address" : "destinationIPv6Address", "destinationTransportPort"] as IeName[]) : []),
              ];
        out.set(`${shape}/${inside}/${outside}`, { id: id++, fields, length: fields.reduce((n, f) => n + IE[f][1], 0) });
      }
  return out;
}
export const TEMPLATES = templates();

/** Addresses here are this server's own formatting (IPv4 dotted, v4-mapped as such): no regex per record. */
const family = (a: string) => (a.includes(":") && !a.startsWith("::ffff:") ? 6 : 4);

function shapeOf(r: LogRecord): { template: Template; natEvent: number } {
  const inside = family(r.internalAddress);
  const shape: Shape = r.type === "block" ? "block" : r.remoteAddress ? "session" : "bib";
  const template = TEMPLATES.get(`${shape}/${inside}/${family(r.externalAddress)}`)!;
  const ends = r.event === "delete" || r.event === "expire" || r.event === "block-release";
  const v6 = inside === 6;
  const natEvent =
    shape === "block"
      ? ends
        ? NAT_EVENT.portBlockDeallocation
        : NAT_EVENT.portBlockAllocation
      : shape === "session"
        ? v6
          ? ends
            ? NAT_EVENT.nat64SessionDelete
            : NAT_EVENT.nat64SessionCreate
          : ends
            ? NAT_EVENT.nat44SessionDelete
            : NAT_EVENT.nat44SessionCreate
        : v6
          ? ends
            ? NAT_EVENT.nat64BibDelete
            : NAT_EVENT.nat64BibCreate
          : ends
            ? NAT_EVENT.nat44BibDelete
            : NAT_EVENT.nat44BibCreate;
  return { template, natEvent };
}

/** Parsed addresses (pool addresses and active subscribers repeat); cleared when large. */
const parsed = new Map<string, Uint8Array>();

/** Writes `address` in `length` (4 or 16) bytes at `at`: copied byte by byte (no view allocated per record). */
function writeAddress(bytes: Uint8Array, at: number, address: string, length: number): void {
  let a16 = parsed.get(address);
  if (!a16) {
    if (parsed.size >= 65536) parsed.clear();
    a16 = toAddress16(address);
    parsed.set(address, a16);
  }
  for (let i = 0, from = 16 - length; i < length; i++) bytes[at + i] = a16[from + i];
}

/** Writes the data record of `r` at `at` (template `t`); returns the bytes written. */
function writeRecord(view: DataView, bytes: Uint8Array, at: number, r: LogRecord, t: Template, natEvent: number): number {
  let o = at;
  for (const f of t.fields) {
    const len = IE[f][1];
    switch (f) {
      case "observationTimeMilliseconds":
        view.setUint32(o, Math.floor(r.time / 2 ** 32)); // dateTimeMilliseconds: 64 bits, big-endian
        view.setUint32(o + 4, r.time >>> 0);
        break;
      case "natEvent":
        view.setUint8(o, natEvent);
        break;
      case "natOriginatingAddressRealm":
        view.setUint8(o, REALM_PRIVATE);
        break;
      case "vrfId":
        view.setUint32(o, r.realm);
        break;
      case "protocolIdentifier":
        view.setUint8(o, r.protocol);
        break;
      case "sourceIPv4Address":
      case "sourceIPv6Address":
        writeAddress(bytes, o, r.internalAddress, len);
        break;
      case "sourceTransportPort":
        view.setUint16(o, r.internalPort);
        break;
      case "postNATSourceIPv4Address":
      case "postNATSourceIPv6Address":
        writeAddress(bytes, o, r.externalAddress, len);
        break;
      case "postNAPTSourceTransportPort":
        view.setUint16(o, r.externalPort);
        break;
      case "destinationIPv4Address":
      case "destinationIPv6Address":
        writeAddress(bytes, o, r.remoteAddress!, len);
        break;
      case "destinationTransportPort":
        view.setUint16(o, r.remotePort ?? 0);
        break;
      case "portRangeStart":
        view.setUint16(o, r.externalPort);
        break;
      case "portRangeEnd":
        view.setUint16(o, r.lastPort ?? r.externalPort);
        break;
      case "portRangeStepSize":
        view.setUint16(o, 1);
        break;
      case "portRangeNumPorts":
        view.setUint16(o, (r.lastPort ?? r.externalPort) - r.externalPort + 1);
        break;
    }
    o += len;
  }
  return o - at;
}

/** IPFIX message builder for one observation domain: headers, template and data sets. */
export class IpfixEncoder {
  /** Data records exported so far (the header's sequence number, RFC 7011 §3.1). */
  sequence = 0;

  constructor(private readonly domain: number) {}

  private header(view: DataView, at: number, length: number, exportSeconds: number): void {
    view.setUint16(at, 10);
    view.setUint16(at + 2, length);
    view.setUint32(at + 4, exportSeconds >>> 0);
    view.setUint32(at + 8, this.sequence >>> 0);
    view.setUint32(at + 12, this.domain >>> 0);
  }

  /** One message holding every template (a Template Set, id 2). */
  templateMessage(exportSeconds: number): Buffer {
    const all = [...TEMPLATES.values()];
    const setLength = 4 + all.reduce((n, t) => n + 4 + 4 * t.fields.length, 0);
    const buf = Buffer.alloc(HEADER + setLength);
    const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.header(view, 0, buf.length, exportSeconds);
    view.setUint16(HEADER, 2);
    view.setUint16(HEADER + 2, setLength);
    let o = HEADER + 4;
    for (const t of all) {
      view.setUint16(o, t.id);
      view.setUint16(o + 2, t.fields.length);
      o += 4;
      for (const f of t.fields) {
        view.setUint16(o, IE[f][0]);
        view.setUint16(o + 2, IE[f][1]);
        o += 4;
      }
    }
    return buf;
  }

  /**
   * Data messages (each ≤ MTU bytes, one Data Set per run of one template) for `records`,
   * written into `p` while it has room for a message; answers how many records they hold.
   */
  dataInto(records: LogRecord[], exportSeconds: number, p: Packed): number {
    const { bytes } = p;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let done = 0;
    while (done < records.length && p.fits(MTU)) {
      const start = p.used;
      let o = start + HEADER;
      let set = -1; // offset of the open Data Set's header
      let setId = 0;
      let count = 0;
      for (; done < records.length; done++) {
        const r = records[done];
        const { template, natEvent } = shapeOf(r);
        const open = set >= 0 && setId === template.id;
        if (o - start + template.length + (open ? 0 : 4) > MTU) break;
        if (!open) {
          if (set >= 0) view.setUint16(set + 2, o - set);
          set = o;
          setId = template.id;
          view.setUint16(o, template.id);
          o += 4;
        }
        o += writeRecord(view, bytes, o, r, template, natEvent);
        count++;
      }
      if (count === 0) break; // (a record always fits an empty message: templates are < MTU)
      view.setUint16(set + 2, o - set);
      this.header(view, start, o - start, exportSeconds);
      p.add(o - start, count);
      this.sequence = (this.sequence + count) >>> 0;
    }
    return done;
  }

  /** Data messages (copies) for `records` (the node:dgram path). */
  dataMessages(records: LogRecord[], exportSeconds: number): { message: Buffer; records: number }[] {
    const out: { message: Buffer; records: number }[] = [];
    const p = new Packed(8 * MTU, 8);
    for (let done = 0; done < records.length; ) {
      p.reset();
      done += this.dataInto(records.slice(done), exportSeconds, p);
      for (let i = 0, at = 0; i < p.count; at += p.lengths[i++])
        out.push({ message: Buffer.from(p.bytes.subarray(at, at + p.lengths[i])), records: p.records[i] });
    }
    return out;
  }
}

type IpfixConfig = Config["logging"]["ipfix"];

export class IpfixSink extends Sink {
  private readonly socket?: Socket;
  /** The addon's synchronous sends (when loaded): no callback per datagram. */
  private readonly datagrams?: Datagrams;
  private readonly encoder: IpfixEncoder;
  private inFlight = 0;
  /** A step's messages for Datagrams (reused). */
  private readonly packed = new Packed(IPFIX_STEP_MESSAGES * MTU, IPFIX_STEP_MESSAGES);
  private templatesAt = -Infinity;
  private ready = false;

  constructor(
    private readonly c: IpfixConfig,
    open?: DatagramOpener,
  ) {
    super("ipfix", c.queue);
    this.encoder = new IpfixEncoder(c.observationDomain);
    this.datagrams = open?.(c.collector, c.port);
    if (this.datagrams) {
      this.ready = true;
      return;
    }
    this.socket = createSocket(isIPv6(c.collector) ? "udp6" : "udp4");
    this.socket.on("error", () => this.counters.errors++);
    // Connected: no per-datagram address handling (sends wait for it: before, they would throw).
    this.socket.connect(c.port, c.collector, () => {
      this.ready = true;
      this.flush();
    });
    this.socket.unref();
  }

  /** The node:dgram path: one send with a callback per message. */
  private send(message: Buffer, records: number): void {
    this.inFlight++;
    this.socket!.send(message, (error) => {
      this.inFlight--;
      if (error) {
        this.counters.errors++;
        this.counters.dropped += records;
      } else this.counters.sent += records;
      // The kernel took half of them: send more now rather than at the next tick.
      if (this.inFlight === UDP_IN_FLIGHT >> 1 && this.pending() > 0) this.flush();
    });
  }

  flush(): void {
    if (!this.ready) return;
    const now = Date.now();
    const due = now - this.templatesAt >= this.c.templateRefreshSeconds * 1000;
    if (this.datagrams) {
      this.flushDatagrams(this.datagrams, now, due);
      return;
    }
    if (due) {
      this.templatesAt = now;
      this.send(this.encoder.templateMessage(now / 1000), 0);
    }
    while (this.pending() > 0 && this.inFlight < UDP_IN_FLIGHT) {
      // About a message's worth at a time (the smallest data record is 24 bytes).
      for (const { message, records } of this.encoder.dataMessages(this.take(56), now / 1000)) this.send(message, records);
    }
  }

  /**
   * The templates when due, then the queued records as data messages packed into one reused
   * buffer, sent in one sendmmsg per step. Messages the full send buffer did not take are
   * encoded again at the next flush with the same sequence numbers (nothing is lost; a
   * refused message's records are dropped and counted, its sequence numbers spent).
   */
  private flushDatagrams(out: Datagrams, now: number, due: boolean): void {
    const p = this.packed;
    const seconds = now / 1000;
    do {
      p.reset();
      if (due) {
        const t = this.encoder.templateMessage(seconds);
        p.bytes.set(t, 0);
        p.add(t.length, 0);
      }
      const sequence = this.encoder.sequence;
      this.encoder.dataInto(this.peek(IPFIX_STEP), seconds, p);
      if (p.count === 0) return;
      const taken = p.sendThrough(out, this.counters);
      if (due && taken > 0) {
        this.templatesAt = now;
        due = false;
      }
      let records = 0;
      for (let i = 0; i < taken; i++) records += p.records[i];
      this.advance(records);
      if (taken < p.count) {
        this.encoder.sequence = (sequence + records) >>> 0;
        return;
      }
    } while (this.pending() > 0);
  }

  async close(): Promise<void> {
    this.flush();
    this.datagrams?.close();
    const socket = this.socket;
    if (!socket) return;
    for (let i = 0; i < 100 && this.inFlight > 0; i++) await new Promise((r) => setTimeout(r, 10));
    await new Promise<void>((resolve) => socket.close(() => resolve()));
  }
}
