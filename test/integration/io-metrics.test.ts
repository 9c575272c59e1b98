// Socket I/O counters on /metrics (pcpd_io_*, docs/io.md), on whichever path this run uses
// (CI runs test/integration again with PCPD_IO=dgram): a datagram longer than a slot is
// counted as truncated, replies as sent, and a burst into a socket whose receive buffer is
// the kernel's minimum makes the kernel drop datagrams, which the socket's drop count
// reports (SO_MEMINFO on the batched path, /proc/net/udp on the dgram path). Real workers,
// real UDP on loopback. Ports 25050–25051.
import dgram from "node:dgram";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pino } from "pino";
import * as W from "../../src/wire.generated.js";
import { parseConfig } from "../../src/config/schema.js";
import { startServer, type RunningServer } from "../../src/server/server.js";
import { Metrics } from "../../src/control/metrics.js";
import type { SocketIoStats } from "../../src/io/listener-base.js";
import { mapRequest } from "../helpers/packets.js";
import { exchange } from "../helpers/udp.js";
import { waitFor } from "../helpers/wait.js";

const PORT = 25050;
let server: RunningServer;

beforeAll(async () => {
  server = await startServer(
    parseConfig({
      listen: { addresses: ["127.0.0.1"], port: PORT, receiveBuffer: 1 }, // the kernel's minimum (about 4.6 KiB)
      workers: 1,
      log: { level: "silent" },
      persistence: { enabled: false },
    }),
    pino({ level: "silent" }),
  );
});
afterAll(() => server?.stop());

/** The shard's socket counters once `ready` holds for them (published every second). */
async function counters(ready: (c: SocketIoStats["counters"]) => boolean): Promise<SocketIoStats["counters"]> {
  return waitFor(
    async () => {
      const io = server.stats().shards[0].io?.[0];
      return io && ready(io.counters) ? io.counters : undefined;
    },
    { timeout: 10_000, interval: 100 },
  );
}

async function scrape(): Promise<string> {
  const m = new Metrics();
  m.update(server.stats(), { shardsUp: [true], io: server.io.path });
  return m.render();
}

describe(`socket I/O counters on /metrics (${process.env.PCPD_IO ?? "default"} path)`, () => {
  it("a datagram longer than a slot is counted as truncated, a reply as sent", async () => {
    const client = dgram.createSocket("udp4");
    await new Promise<void>((resolve) => client.bind(0, "127.0.0.1", resolve));
    await new Promise<void>((resolve) => client.send(new Uint8Array(W.SLOT_DATA_CAP + 400).fill(2), PORT, "127.0.0.1", () => resolve()));
    client.close();
    // Retransmitted as a PCP client does [RFC 6887 §8.1.1]: the socket's receive buffer is the
    // kernel's minimum, so the request can be dropped while the oversized datagram is still queued.
    const reply = await waitFor(
      () => exchange("127.0.0.1", "127.0.0.1", PORT, mapRequest({ client: "127.0.0.1", internalPort: 4000 })).catch(() => undefined),
      {
        timeout: 20_000,
        interval: 10,
      },
    );
    expect(reply.reply[3]).toBe(W.RESULT_SUCCESS);
    // A publish that has seen both datagrams: under load one made between them was seen with
    // the truncation and a sent reply counted, but only one datagram received.
    await counters((c) => (c.truncated ?? 0) >= 1 && (c.sent ?? 0) >= 1 && (c.received ?? 0) >= 2);
    const text = await scrape();
    expect(text).toMatch(new RegExp(`^pcpd_io_truncated_total\\{shard="0",socket="127.0.0.1:${PORT}"\\} 1$`, "m"));
    expect(text).toMatch(new RegExp(`^pcpd_io_datagrams_sent_total\\{shard="0",socket="127.0.0.1:${PORT}"\\} [1-9]`, "m"));
    expect(text).toMatch(new RegExp(`^pcpd_io_unsent_total\\{shard="0",socket="127.0.0.1:${PORT}",errno="EAGAIN"\\} 0$`, "m"));
  });

  it("a burst into the smallest receive buffer: the kernel's drops are counted", async () => {
    const client = dgram.createSocket("udp4");
    await new Promise<void>((resolve) => client.bind(0, "127.0.0.1", resolve));
    // 3,000 datagrams handed to the kernel as fast as one thread can: a 4.6 KiB queue holds
    // a handful, so the worker cannot keep up; the rounds repeat until a drop was seen.
    const burst = async () => {
      await Promise.all(
        Array.from({ length: 3000 }, () => new Promise<void>((resolve) => client.send(new Uint8Array(600), PORT, "127.0.0.1", () => resolve()))),
      );
    };
    try {
      await waitFor(
        async () => {
          await burst();
          const io = server.stats().shards[0].io?.[0];
          return (io?.counters.rxqDrops ?? 0) > 0 ? true : undefined;
        },
        { timeout: 20_000, interval: 1200 },
      );
      expect(await scrape()).toMatch(new RegExp(`^pcpd_io_receive_queue_drops_total\\{shard="0",socket="127.0.0.1:${PORT}"\\} [1-9]`, "m"));
      // The kernel's own count for the socket (its /proc/net/udp line): never below what /metrics says.
      const line = readFileSync("/proc/net/udp", "latin1")
        .split("\n")
        .map((l) => l.trim().split(/\s+/))
        .find((f) => f[1] === `0100007F:${PORT.toString(16).toUpperCase()}`);
      expect(Number(line?.[12])).toBeGreaterThanOrEqual(server.stats().shards[0].io?.[0].counters.rxqDrops ?? 0);
    } finally {
      client.close();
    }
  });
});
