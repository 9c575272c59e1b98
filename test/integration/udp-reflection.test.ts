// Reflection through a real server (issue #12 item 8): a flood of the smallest datagrams
// that draw the largest replies — 2-byte foreign-version requests (24-byte UNSUPP_VERSION)
// and 2-byte NAT-PMP address requests (12 bytes) — from one (spoofable) source is answered
// only within that source's rate, like every other reply [RFC 6887 §17.2, RFC 6886 §3.5].
import { describe, expect, it } from "vitest";
import { pino } from "pino";
import { parseConfig } from "../../src/config/schema.js";
import { startServer } from "../../src/server/server.js";
import { burst } from "../helpers/udp.js";

const SERVER = "127.0.0.15";
const FLOOD = 300;
const BURST = 10;

describe("small requests with large replies stay within the per-source rate (real server)", () => {
  for (const overload of ["drop", "no-resources"] as const) {
    it(`pcp.overload ${overload}: ${FLOOD} × 2-byte version-1 and NAT-PMP requests → at most the burst answered`, async () => {
      const config = parseConfig({
        listen: { addresses: [SERVER], port: 0 },
        pcp: { overload },
        rateLimit: { perSource: { rate: 5, burst: BURST } },
        log: { level: "silent" },
        persistence: { enabled: false },
      });
      const server = await startServer(config, pino({ level: "silent" }));
      const port = server.addresses[0].port;
      try {
        const start = Date.now();
        const foreign = await burst("127.0.0.16", SERVER, port, Array(FLOOD).fill(Uint8Array.of(1, 0)), { idleMs: 500 });
        const natPmp = await burst("127.0.0.17", SERVER, port, Array(FLOOD).fill(Uint8Array.of(0, 0)), { idleMs: 500 });
        // The bucket refills at 5/s while the test runs: allow for that, far below the flood.
        const allowance = BURST + Math.ceil(((Date.now() - start) / 1000) * 5);
        expect(foreign.length).toBeGreaterThanOrEqual(BURST);
        expect(foreign.length).toBeLessThanOrEqual(allowance);
        expect(foreign.every((r) => r.length === 24 && r[0] === 2 && r[3] === 1)).toBe(true); // UNSUPP_VERSION only
        expect(natPmp.length).toBeGreaterThanOrEqual(BURST);
        expect(natPmp.length).toBeLessThanOrEqual(allowance);
        expect(natPmp.every((r) => r.length === 12 && r[1] === 0x80)).toBe(true);
      } finally {
        await server.stop();
      }
    });
  }
});
