import dgram from "node:dgram";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { pino } from "pino";
import * as W from "../../src/wire.generated.js";
import { RateLimiter } from "../../src/core/rate-limit.js";
import { parseConfig } from "../../src/config/schema.js";
import { startServer, type RunningServer } from "../../src/server/server.js";
import type { CodecStats } from "../../src/engine/packet-engine.js";
import { announceRequest, mapRequest, preferFailure } from "../helpers/packets.js";
import { exchange } from "../helpers/udp.js";
import { waitFor } from "../helpers/wait.js";

describe("rate limiter", () => {
  it("allows a burst, then the rate; sources are independent", () => {
    const l = new RateLimiter({ rate: 10, burst: 5 }, { rate: 1e6, burst: 1e6 });
    const a = Array.from({ length: 8 }, () => l.allow("a", 0));
    expect(a.filter(Boolean)).toHaveLength(5);
    expect(l.allow("b", 0)).toBe(true);
    expect(l.allow("a", 0.05)).toBe(false); // half a token
    expect(l.allow("a", 0.1)).toBe(true); // one token after 100 ms
  });

  it("aggregate (THIRD_PARTY) sources are held to the global rate only", () => {
    const l = new RateLimiter({ rate: 1, burst: 1 }, { rate: 100, burst: 50 });
    expect(Array.from({ length: 60 }, () => l.allow("aftr", 0, true)).filter(Boolean)).toHaveLength(50);
    expect(l.allow("someone", 0)).toBe(false); // the global bucket is empty
  });

  it("tracks a bounded number of sources", () => {
    const l = new RateLimiter({ rate: 1, burst: 10 }, { rate: 1e9, burst: 1e9 }, 1000);
    for (let i = 0; i < 5000; i++) l.allow(`s${i}`, 0);
    expect(l.tracked).toBeLessThanOrEqual(1000);
  });
});

/** The server's counters that a flood moves (every shard; published before a batch's replies leave). */
function counters(server: RunningServer) {
  const total = (f: (c: CodecStats) => bigint) => Number(server.stats().shards.reduce((n, sh) => n + f(sh.codec), 0n));
  return {
    packets: total((c) => c.packets),
    replies: total((c) => c.pcpResults.reduce((a, b) => a + b, 0n)),
    success: total((c) => c.pcpResults[W.RESULT_SUCCESS]),
    noResources: total((c) => c.pcpResults[W.RESULT_NO_RESOURCES]),
    overloadDrops: total((c) => c.drops[W.DROP_OVERLOAD]),
  };
}
type Counters = ReturnType<typeof counters>;

/** Datagrams the kernel dropped at the IPv4 UDP socket bound to address:port (its receive buffer full): /proc/net/udp. */
function socketDrops(address: string, port: number): number {
  const local = `${Buffer.from(address.split(".").map(Number)).readUInt32LE(0).toString(16).toUpperCase().padStart(8, "0")}:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  const row = readFileSync("/proc/net/udp", "utf8")
    .split("\n")
    .map((l) => l.trim().split(/\s+/))
    .find((f) => f[1] === local);
  if (!row) throw new Error(`no UDP socket bound to ${address}:${port} in /proc/net/udp`);
  return Number(row.at(-1));
}

/**
 * Sends `payloads` from `from` as fast as it can, then waits (no fixed time) until the
 * server has handled every datagram: each is either read by the server (its packet
 * counter) or dropped by the kernel at the server's full socket (its drop counter).
 * Then waits for the replies the server says it sent. Returns the change in the server's
 * counters and `seconds` from the first send until all were handled: the time the limiter
 * had to refill.
 */
async function flood(
  server: RunningServer,
  from: string,
  payloads: Uint8Array[],
): Promise<{ replies: Buffer[]; handled: Counters; kernelDrops: number; seconds: number }> {
  const [{ address, port }] = server.addresses;
  const before = counters(server);
  const dropsBefore = socketDrops(address, port);
  // Room for every reply, so none is lost on this side.
  const socket = dgram.createSocket({ type: "udp4", recvBufferSize: 1 << 20 });
  const replies: Buffer[] = [];
  socket.on("message", (m) => replies.push(m));
  await new Promise<void>((resolve) => socket.bind(0, from, resolve));
  try {
    const t0 = performance.now();
    await Promise.all(payloads.map((p) => new Promise<void>((resolve, reject) => socket.send(p, port, address, (e) => (e ? reject(e) : resolve())))));
    const kernelDrops = () => socketDrops(address, port) - dropsBefore;
    await waitFor(() => counters(server).packets - before.packets + kernelDrops() >= payloads.length, {
      message: () => `${counters(server).packets - before.packets} read, ${kernelDrops()} dropped by the kernel, of ${payloads.length}`,
    });
    const seconds = (performance.now() - t0) / 1000;
    const after = counters(server);
    const handled = Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - before[k as keyof Counters]])) as Counters;
    await waitFor(() => replies.length >= handled.replies, { message: () => `${replies.length} of ${handled.replies} replies` });
    return { replies, handled, kernelDrops: kernelDrops(), seconds };
  } finally {
    socket.close();
  }
}

/** The most a bucket of `burst` tokens refilled at `rate` per second lets through in `seconds`. */
const allowance = (burst: number, rate: number, seconds: number) => burst + Math.ceil(rate * seconds);

describe("item 18: a flood from one source does not block another", () => {
  for (const overload of ["drop", "no-resources"] as const) {
    it(`overload policy ${overload}`, async () => {
      const config = parseConfig({
        listen: { addresses: ["127.0.0.6"], port: 0 },
        pcp: { overload },
        rateLimit: { perSource: { rate: 5, burst: 10 } },
        log: { level: "silent" },
        persistence: { enabled: false },
      });
      const server = await startServer(config, pino({ level: "silent" }));
      try {
        const { replies, handled, seconds } = await flood(server, "127.0.0.7", Array(300).fill(announceRequest({ client: "127.0.0.7" })));
        expect(handled.success).toBeGreaterThanOrEqual(10);
        expect(handled.success).toBeLessThanOrEqual(allowance(10, 5, seconds)); // not 300
        const refused = overload === "drop" ? handled.overloadDrops : handled.noResources;
        expect(refused).toBe(handled.packets - handled.success);
        expect(overload === "drop" ? handled.noResources : handled.overloadDrops).toBe(0);
        expect(replies.filter((r) => r[3] === W.RESULT_SUCCESS)).toHaveLength(handled.success);
        expect(replies).toHaveLength(handled.replies);
        // Another source is served at once, right after the flood.
        const other = await exchange("127.0.0.8", "127.0.0.6", server.addresses[0].port, announceRequest({ client: "127.0.0.8" }), 10_000);
        expect(other.reply[3]).toBe(W.RESULT_SUCCESS);
      } finally {
        await server.stop();
      }
    });
  }

  it("item 103: PREFER_FAILURE probes for other ports are held to the source's rate", async () => {
    const config = parseConfig({
      listen: { addresses: ["127.0.0.6"], port: 0 },
      pcp: { overload: "no-resources" },
      rateLimit: { perSource: { rate: 5, burst: 10 } },
      log: { level: "silent" },
      persistence: { enabled: false },
    });
    const server = await startServer(config, pino({ level: "silent" }));
    try {
      // A scan of 200 external ports from one client, as fast as it can send.
      const probes = Array.from({ length: 200 }, (_, i) =>
        mapRequest({ client: "127.0.0.7", internalPort: 5000 + i, externalPort: 20000 + i, externalAddress: "203.0.113.1" }, [preferFailure()]),
      );
      const { replies, handled, kernelDrops, seconds } = await flood(server, "127.0.0.7", probes);
      const answered = replies.filter((r) => r[3] !== W.RESULT_NO_RESOURCES).length;
      expect(answered).toBeGreaterThanOrEqual(10);
      expect(answered).toBeLessThanOrEqual(allowance(10, 5, seconds)); // the burst and the rate while the scan lasted, not 200 probes
      expect(replies.length - answered).toBe(handled.noResources);
      expect(handled.noResources + kernelDrops).toBeGreaterThan(150);
    } finally {
      await server.stop();
    }
  });
});
