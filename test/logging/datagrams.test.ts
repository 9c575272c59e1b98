// The mapping log's UDP sends through the addon's sendMany (sendmmsg of packed datagrams,
// src/server/log-datagrams.ts) against real UDP sockets: a receiver counts the datagrams and
// checks their contents and order; a send buffer really filled (a slow qdisc in a network
// namespace) keeps the rest queued, bounded, with drops counted.
import { execFileSync, spawn } from "node:child_process";
import { createSocket, type Socket } from "node:dgram";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/schema.js";
import { IE, IpfixSink, TEMPLATES } from "../../src/logging/ipfix.js";
import type { LogRecord } from "../../src/logging/record.js";
import { SD_ID, SyslogSink } from "../../src/logging/syslog.js";
import { ioChoice, nativeStats } from "../../src/io/native.js";
import { logDatagrams } from "../../src/server/log-datagrams.js";
import { waitFor } from "../helpers/wait.js";

const { addon, reason } = ioChoice();
const PORT = 25310;

/** A receiver on 127.0.0.1:PORT keeping every datagram in arrival order. */
async function receiver(): Promise<{ got: Buffer[]; close: () => Promise<void> }> {
  const s: Socket = createSocket("udp4");
  const got: Buffer[] = [];
  s.on("message", (m) => got.push(m));
  await new Promise<void>((resolve) => s.bind(PORT, "127.0.0.1", resolve));
  s.setRecvBufferSize(4 * 1024 * 1024); // loopback delivers at once: what does not fit would be lost
  return { got, close: () => new Promise<void>((resolve) => s.close(() => resolve())) };
}

const TEMPLATE_BY_ID = new Map([...TEMPLATES.values()].map((t) => [t.id, t]));

/** The sourceTransportPort of every data record in an IPFIX message, in order. */
function internalPorts(m: Buffer): number[] {
  const out: number[] = [];
  for (let o = 16; o + 4 <= m.length; ) {
    const id = m.readUInt16BE(o);
    const length = m.readUInt16BE(o + 2);
    const t = TEMPLATE_BY_ID.get(id);
    if (t) {
      let at = 0;
      for (const f of t.fields.slice(0, t.fields.indexOf("sourceTransportPort"))) at += IE[f][1];
      for (let r = o + 4; r + t.length <= o + length; r += t.length) out.push(m.readUInt16BE(r + at));
    }
    o += length;
  }
  return out;
}

const record = (i: number): LogRecord => ({
  event: "create",
  time: 1_796_400_000_000 + i,
  type: "map",
  protocol: 6,
  internalAddress: `10.0.${i >> 8}.${i & 255}`,
  realm: 0,
  internalPort: 1000 + i,
  externalAddress: "192.0.2.1",
  externalPort: 20000 + i,
  lifetime: 600,
  source: "pcp",
});

describe.skipIf(!addon)(`mapping log datagrams through sendmmsg (${reason})`, () => {
  let rx: Awaited<ReturnType<typeof receiver>>;
  beforeAll(async () => {
    rx = await receiver();
  });
  afterAll(async () => {
    await rx.close();
  });

  it("sendMany: more than one sendmmsg's worth, in order, each datagram its own bytes; a refused one skipped and marked", async () => {
    rx.got.length = 0;
    const a = addon!;
    const s = a.open("0.0.0.0", 0, 0, false);
    try {
      const count = a.maxBatch + 476; // two sendmmsg calls
      const lengths = new Uint32Array(count);
      const parts: Buffer[] = [];
      for (let i = 0; i < count; i++) {
        const part = i === 700 ? Buffer.alloc(70_000) : Buffer.from(`#${i}:${"x".repeat(i % 97)}`); // 70,000: over UDP's limit (EMSGSIZE)
        parts.push(part);
        lengths[i] = part.length;
      }
      const result = new Int32Array(2);
      expect(a.sendMany(s, Buffer.concat(parts), lengths, count, "127.0.0.1", PORT, result)).toBe(count);
      expect([...result]).toEqual([1, 0]); // one refused, nothing left
      expect(lengths[700]).toBe(0);
      expect(lengths[699]).toBe(parts[699].length);
      const stats = nativeStats(a, s);
      expect(stats.sent).toBe(count - 1);
      expect(stats["unsent.EMSGSIZE"]).toBe(1);
      await waitFor(() => rx.got.length >= count - 1, { message: () => `${rx.got.length} of ${count - 1}` });
      const want = parts.filter((_, i) => i !== 700).map((p) => p.toString());
      expect(rx.got.map((m) => m.toString())).toEqual(want);
      // Bad arguments are refused with a clear error, never read past the buffer.
      expect(() => a.sendMany(s, Buffer.alloc(4), new Uint32Array([5]), 1, "127.0.0.1", PORT, result)).toThrow(/more than bytes/);
      expect(() => a.sendMany(s, Buffer.alloc(4), new Uint32Array([4]), 2, "127.0.0.1", PORT, result)).toThrow(/count <= lengths/);
      expect(() => a.sendMany(s, Buffer.alloc(4), new Uint32Array([4]), Number.NaN, "127.0.0.1", PORT, result)).toThrow(/count <= lengths/);
      expect(() => a.sendMany(s, Buffer.alloc(4), new Uint32Array([4]), 1, "127.0.0.1", PORT, new Int32Array(1))).toThrow(/Int32Array\(2\)/);
    } finally {
      a.close(s);
    }
  });

  it("syslog over UDP: one RFC 5424 message per datagram, every record, in order", async () => {
    rx.got.length = 0;
    const c = parseConfig({ logging: { syslog: { enabled: true, transport: "udp", collector: "127.0.0.1", port: PORT } } }).logging;
    const sink = new SyslogSink(c.syslog, logDatagrams());
    const n = 1500; // more than a flush step: several sendmmsg calls
    for (let i = 0; i < n; i++) sink.push(record(i));
    sink.flush();
    expect(sink.stats()).toEqual({ sent: n, dropped: 0, errors: 0, queued: 0 });
    await waitFor(() => rx.got.length >= n, { message: () => `${rx.got.length} of ${n}` });
    expect(rx.got.length).toBe(n);
    rx.got.forEach((m, i) => {
      const text = m.toString();
      expect(text).toMatch(/^<\d+>1 2026-\d\d-\d\dT[\d:.]+Z /);
      expect(text).toContain(`[${SD_ID} event="create" type="map" proto="6" intAddr="${record(i).internalAddress}" intPort="${1000 + i}"`);
      expect(text).toContain(`extPort="${20000 + i}"`);
    });
    await sink.close();
  });

  it("IPFIX: messages with consecutive sequence numbers holding every record in order, templates first", async () => {
    rx.got.length = 0;
    const c = parseConfig({ logging: { ipfix: { enabled: true, collector: "127.0.0.1", port: PORT, observationDomain: 7 } } }).logging;
    const sink = new IpfixSink(c.ipfix, logDatagrams());
    const n = 3000;
    for (let i = 0; i < n; i++) sink.push(record(i));
    sink.flush();
    expect(sink.stats()).toEqual({ sent: n, dropped: 0, errors: 0, queued: 0 });
    const records = () => rx.got.slice(1).reduce((k, m) => k + internalPorts(m).length, 0);
    await waitFor(() => records() >= n, { message: () => `${records()} of ${n} records` });
    expect(rx.got[0].readUInt16BE(16)).toBe(2); // the Template Set first
    let before = 0;
    const ports: number[] = [];
    for (const m of rx.got.slice(1)) {
      expect(m.readUInt16BE(0)).toBe(10);
      expect(m.readUInt16BE(2)).toBe(m.length);
      expect(m.length).toBeLessThanOrEqual(1400);
      expect(m.readUInt32BE(8)).toBe(before); // records exported before this message (RFC 7011 §3.1)
      expect(m.readUInt32BE(12)).toBe(7);
      const got = internalPorts(m);
      before += got.length;
      ports.push(...got);
    }
    expect(ports).toEqual(Array.from({ length: n }, (_, i) => 1000 + i));
    await sink.close();
  });
});

/** A namespace whose only route is a veth with a slow tbf qdisc: datagrams wait there, holding the sender's buffer. */
const NS = `plb-${process.pid}`;
const run = (...a: string[]) => execFileSync(a[0], a.slice(1), { stdio: "pipe" });
const canNetns = process.getuid?.() === 0 && !!addon;

describe.skipIf(!canNetns)("a full send buffer (EAGAIN: a slow qdisc in a network namespace)", () => {
  beforeAll(() => {
    run("ip", "netns", "add", NS);
    run("ip", "-n", NS, "link", "add", "v0", "type", "veth", "peer", "name", "v1");
    run("ip", "-n", NS, "addr", "add", "10.99.0.1/24", "dev", "v0");
    run("ip", "-n", NS, "link", "set", "v1", "up");
    run("ip", "-n", NS, "link", "set", "v0", "up");
    // A fixed neighbour: no ARP (unresolved datagrams would wait in the neighbour queue instead).
    run("ip", "-n", NS, "neigh", "add", "10.99.0.2", "lladdr", "02:00:00:00:00:02", "dev", "v0", "nud", "permanent");
    // 8 kbit/s, a queue far larger than a socket's send buffer: the buffer fills first (EAGAIN).
    run("tc", "-n", NS, "qdisc", "add", "dev", "v0", "root", "tbf", "rate", "8kbit", "burst", "1600", "limit", "20000000");
  });
  afterAll(() => {
    run("ip", "netns", "del", NS);
  });

  /** The sink's counters after two flushes of `records` pushed into a queue of `queue`, run inside the namespace. */
  async function fill(kind: "syslog" | "ipfix", records: number, queue: number) {
    const file = new URL("./full-buffer-main.ts", import.meta.url).pathname;
    const c = spawn("ip", ["netns", "exec", NS, process.execPath, "--import", "tsx", file, kind, "10.99.0.2", "25390", String(records), String(queue)], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    c.stdout.on("data", (d) => (out += d));
    c.stderr.on("data", (d) => (err += d));
    const code = await new Promise<number | null>((resolve) => c.once("exit", resolve));
    expect(code, err).toBe(0);
    return JSON.parse(out) as {
      first: { sent: number; dropped: number; errors: number; queued: number };
      second: { sent: number; dropped: number; errors: number; queued: number };
      sequence: number | null;
    };
  }

  it("syslog: what the buffer took is sent, the rest stays queued (bounded, overflow counted), nothing counted as an error", async () => {
    const { first, second } = await fill("syslog", 6000, 5000);
    expect(first.dropped).toBe(1000); // the queue's bound
    expect(first.sent).toBeGreaterThan(0);
    expect(first.sent).toBeLessThan(5000);
    expect(first.errors).toBe(0);
    expect(first.sent + first.queued).toBe(5000);
    expect(second.sent + second.queued).toBe(5000); // the second flush takes only what drained
    expect(second.dropped).toBe(1000);
  }, 30_000);

  it("IPFIX: messages not taken stay queued and are encoded again with the same sequence numbers", async () => {
    const { first, second, sequence } = await fill("ipfix", 60_000, 50_000);
    expect(first.dropped).toBe(10_000);
    expect(first.sent).toBeGreaterThan(0);
    expect(first.sent).toBeLessThan(50_000);
    expect(first.errors).toBe(0);
    expect(first.sent + first.queued).toBe(50_000);
    expect(second.sent + second.queued).toBe(50_000);
    expect(sequence).toBe(second.sent); // no sequence number spent on a message not sent
  }, 30_000);
});
