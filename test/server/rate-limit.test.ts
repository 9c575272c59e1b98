import dgram from "node:dgram";
import { describe, expect, it } from "vitest";
import { pino } from "pino";
import * as W from "../../src/wire.generated.js";
import { RateLimiter } from "../../src/server/rate-limit.js";
import { parseConfig } from "../../src/config/schema.js";
import { startServer } from "../../src/server/server.js";
import { announceRequest, mapRequest, preferFailure } from "../helpers/packets.js";

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

function flood(from: string, to: string, port: number, n: number, payload: Uint8Array, waitMs = 500): Promise<Buffer[]> {
  const socket = dgram.createSocket("udp4");
  const replies: Buffer[] = [];
  socket.on("message", (m) => replies.push(m));
  return new Promise((resolve) => {
    socket.bind(0, from, () => {
      for (let i = 0; i < n; i++) socket.send(payload, port, to);
      setTimeout(() => {
        socket.close();
        resolve(replies);
      }, waitMs);
    });
  });
}

describe("item 18: a flood from one source does not block another", () => {
  for (const overload of ["drop", "no-resources"] as const) {
    it(`overload policy ${overload}`, async () => {
      const config = parseConfig({
        listen: { addresses: ["127.0.0.6"], port: 0 },
        pcp: { overload },
        rateLimit: { perSource: { rate: 5, burst: 10 } },
        log: { level: "silent" }, persistence: { enabled: false },
      });
      const server = await startServer(config, pino({ level: "silent" }));
      const port = server.addresses[0].port;
      try {
        const flooded = await flood("127.0.0.7", "127.0.0.6", port, 300, announceRequest({ client: "127.0.0.7" }));
        const ok = flooded.filter((r) => r[3] === W.RESULT_SUCCESS).length;
        expect(ok).toBeGreaterThanOrEqual(10);
        expect(ok).toBeLessThan(20);
        const refused = flooded.filter((r) => r[3] === W.RESULT_NO_RESOURCES).length;
        expect(refused).toBe(overload === "drop" ? 0 : flooded.length - ok);
        const other = await flood("127.0.0.8", "127.0.0.6", port, 1, announceRequest({ client: "127.0.0.8" }), 300);
        expect(other.map((r) => r[3])).toEqual([W.RESULT_SUCCESS]);
      } finally {
        await server.stop();
      }
    });
  }

  it("item 103: PREFER_FAILURE probes for other ports are held to the source's rate", async () => {
    const config = parseConfig({ listen: { addresses: ["127.0.0.6"], port: 0 }, pcp: { overload: "no-resources" }, rateLimit: { perSource: { rate: 5, burst: 10 } }, log: { level: "silent" }, persistence: { enabled: false } });
    const server = await startServer(config, pino({ level: "silent" }));
    try {
      // A scan of 200 external ports from one client, as fast as it can send.
      const socket = dgram.createSocket("udp4");
      const replies: Buffer[] = [];
      socket.on("message", (m) => replies.push(m));
      await new Promise<void>((resolve) => socket.bind(0, "127.0.0.7", resolve));
      for (let i = 0; i < 200; i++) {
        socket.send(mapRequest({ client: "127.0.0.7", internalPort: 5000 + i, externalPort: 20000 + i, externalAddress: "203.0.113.1" }, [preferFailure()]), server.addresses[0].port, "127.0.0.6");
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
      socket.close();
      const answered = replies.filter((r) => r[3] !== W.RESULT_NO_RESOURCES).length;
      expect(answered).toBeGreaterThanOrEqual(10);
      expect(answered).toBeLessThan(20); // the burst and ~0.5 s of rate, not 200 probes
      expect(replies.length - answered).toBeGreaterThan(150);
    } finally {
      await server.stop();
    }
  });
});
