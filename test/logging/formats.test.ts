// The mapping log's formats and queue without collectors (the real collectors:
// test/integration/logging.test.ts): RFC 5424 escaping and fields, IPFIX message
// structure (lengths, sets, sequence numbers, MTU), and the bounded queue's accounting.
import { describe, expect, it } from "vitest";
import { formatSyslog, SD_ID } from "../../src/logging/syslog.js";
import { IE, IpfixEncoder, NAT_EVENT, TEMPLATES } from "../../src/logging/ipfix.js";
import { Sink } from "../../src/logging/sink.js";
import { loggedKinds, type LogRecord } from "../../src/logging/record.js";
import { ALL_KINDS, keepKinds } from "../../src/engine/event-filter.js";
import { parseConfig } from "../../src/config/schema.js";
import * as W from "../../src/wire.generated.js";

const record = (over: Partial<LogRecord> = {}): LogRecord => ({
  event: "create",
  time: Date.UTC(2026, 11, 4, 20, 0, 0, 123),
  type: "map",
  protocol: 6,
  internalAddress: "10.0.0.7",
  realm: 0,
  internalPort: 4000,
  externalAddress: "192.0.2.1",
  externalPort: 21541,
  lifetime: 600,
  source: "pcp",
  ...over,
});
const FORMAT = { facility: 16, host: "cgn-1", appName: "pcpd", procId: 42 };

describe("syslog (RFC 5424)", () => {
  it("writes PRI, version, timestamp, header fields, the structured data and a text", () => {
    expect(formatSyslog(record(), FORMAT)).toBe(
      `<134>1 2026-12-04T20:00:00.123Z cgn-1 pcpd 42 MAP-CREATE [${SD_ID} event="create" type="map" proto="6" intAddr="10.0.0.7" intPort="4000" extAddr="192.0.2.1" extPort="21541" lifetime="600" source="pcp"] create map tcp 10.0.0.7:4000 -> 192.0.2.1:21541 lifetime 600`,
    );
  });

  it("escapes '\"', '\\\\' and ']' in parameter values (§6.3.3); blocks carry their range", () => {
    const line = formatSyslog(record({ thirdPartyId: 'a"b]c\\' }), FORMAT);
    expect(line).toContain('thirdPartyId="a\\"b\\]c\\\\"');
    const block = formatSyslog(
      record({ event: "block-lease", type: "block", protocol: 0, internalPort: 0, externalPort: 5632, lastPort: 6143, lifetime: 0 }),
      FORMAT,
    );
    expect(block).toContain(
      'BLOCK-ALLOC [pcpd@32473 event="block-lease" type="block" intAddr="10.0.0.7" extAddr="192.0.2.1" portFirst="5632" portLast="6143"]',
    );
    const v6peer = formatSyslog(record({ type: "peer", internalAddress: "2001:db8::7", remoteAddress: "2001:db8:1::9", remotePort: 443 }), FORMAT);
    expect(v6peer).toContain("[2001:db8::7]:4000 -> 192.0.2.1:21541 peer [2001:db8:1::9]:443");
  });
});

describe("IPFIX (RFC 7011) with RFC 8158 elements", () => {
  it("a template message lists every template with its elements", () => {
    const m = new IpfixEncoder(9).templateMessage(1000);
    const v = new DataView(m.buffer, m.byteOffset, m.byteLength);
    expect([v.getUint16(0), v.getUint16(2), v.getUint32(4), v.getUint32(12)]).toEqual([10, m.length, 1000, 9]);
    expect(v.getUint16(16)).toBe(2); // Template Set
    expect(v.getUint16(18)).toBe(m.length - 16);
    const bib4 = TEMPLATES.get("bib/4/4")!;
    expect(v.getUint16(20)).toBe(bib4.id);
    expect(v.getUint16(22)).toBe(bib4.fields.length);
    expect(v.getUint16(24)).toBe(IE.observationTimeMilliseconds[0]);
  });

  it("data messages stay within 1400 bytes, one set per template run, sequence numbers count records", () => {
    const enc = new IpfixEncoder(1);
    const records = Array.from({ length: 200 }, (_, i) => record({ internalPort: i, event: i % 3 === 0 ? "expire" : "create" }));
    records.push(record({ event: "block-lease", type: "block", externalPort: 1024, lastPort: 1535 }));
    const out = enc.dataMessages(records, 0);
    expect(out.reduce((n, m) => n + m.records, 0)).toBe(201);
    let sequence = 0;
    for (const { message, records: n } of out) {
      const v = new DataView(message.buffer, message.byteOffset, message.byteLength);
      expect(message.length).toBeLessThanOrEqual(1400);
      expect(v.getUint16(2)).toBe(message.length);
      expect(v.getUint32(8)).toBe(sequence);
      sequence += n;
      // Sets tile the message exactly.
      let o = 16;
      while (o < message.length) o += v.getUint16(o + 2);
      expect(o).toBe(message.length);
    }
    // The first record: a NAT44 BIB delete (expire), fields in template order.
    const v = new DataView(out[0].message.buffer, out[0].message.byteOffset);
    expect(v.getUint16(16)).toBe(TEMPLATES.get("bib/4/4")!.id);
    expect(Number(v.getBigUint64(20))).toBe(records[0].time);
    expect(v.getUint8(28)).toBe(NAT_EVENT.nat44BibDelete);
    const last = out.at(-1)!.message;
    const lv = new DataView(last.buffer, last.byteOffset, last.byteLength);
    // The block record closes the last message: portRangeStart, End, StepSize, NumPorts.
    expect([lv.getUint16(last.length - 8), lv.getUint16(last.length - 6), lv.getUint16(last.length - 4), lv.getUint16(last.length - 2)]).toEqual([
      1024, 1535, 1, 512,
    ]);
  });
});

class Collecting extends Sink {
  flushed: LogRecord[] = [];
  flush(): void {
    this.flushed.push(...this.take(3));
  }
  async close(): Promise<void> {}
}

describe("the bounded queue", () => {
  it("drops what does not fit, counted; what is taken leaves the queue", () => {
    const s = new Collecting("test", 5);
    for (let i = 0; i < 8; i++) s.push(record({ internalPort: i }));
    expect(s.stats()).toMatchObject({ dropped: 3, queued: 5 });
    s.flush();
    expect(s.flushed.map((r) => r.internalPort)).toEqual([0, 1, 2]);
    s.push(record({ internalPort: 99 }));
    expect(s.stats()).toMatchObject({ dropped: 3, queued: 3 });
  });
});

describe("what a logged shard posts", () => {
  const records = (kinds: number[]) => {
    const bytes = new Uint8Array(kinds.length * W.EVENT_SIZE);
    kinds.forEach((k, i) => {
      bytes[i * W.EVENT_SIZE + W.EV_KIND] = k;
      bytes[i * W.EVENT_SIZE + W.EV_INTERNAL_PORT] = i; // tells the records apart
    });
    return bytes;
  };
  it("only the kinds a configured sink logs: refreshes (the bulk under load) stay on the packet thread", () => {
    const mappings = loggedKinds(parseConfig({ logging: { syslog: { enabled: true, records: "mappings" } } }).logging);
    const blocks = loggedKinds(parseConfig({ logging: { ipfix: { enabled: true, records: "blocks" } } }).logging);
    const bits = (...codes: number[]) => codes.reduce((a, c) => a | (1 << c), 0);
    expect(mappings).toBe(bits(W.EVENT_CREATE, W.EVENT_DELETE, W.EVENT_EXPIRE, W.EVENT_UPDATE));
    expect(blocks).toBe(bits(W.EVENT_BLOCK_LEASE, W.EVENT_BLOCK_RELEASE));
    const all = records([W.EVENT_CREATE, W.EVENT_REFRESH, W.EVENT_REFRESH, W.EVENT_DELETE, W.EVENT_BLOCK_LEASE]);
    const kept = keepKinds(all, mappings);
    expect(kept.length).toBe(2 * W.EVENT_SIZE);
    expect([kept[W.EV_KIND], kept[W.EVENT_SIZE + W.EV_KIND]]).toEqual([W.EVENT_CREATE, W.EVENT_DELETE]);
    expect([kept[W.EV_INTERNAL_PORT], kept[W.EVENT_SIZE + W.EV_INTERNAL_PORT]]).toEqual([0, 3]);
    expect(keepKinds(all, ALL_KINDS)).toBe(all); // nothing copied when every kind is wanted
    expect(keepKinds(all, blocks).length).toBe(W.EVENT_SIZE);
  });
});
