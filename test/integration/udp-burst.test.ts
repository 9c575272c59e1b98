// listen.receiveBuffer (issue #12 item 9): with the kernel's default receive buffer
// (~208 KiB) a burst of requests — clients coming back after an Epoch reset — overflows
// the socket and most of it is lost. A real pcp-server on loopback must answer a burst of
// 4,000 requests sent in one go, losing at most 1 %; the listener reports the size granted.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { pino } from "pino";
import * as W from "../../src/wire.generated.js";
import { parseConfig, RECEIVE_BUFFER_DEFAULT } from "../../src/config/schema.js";
import { startServer } from "../../src/server/server.js";
import { engineConfig, engineFrom } from "../helpers/engine-config.js";
import { UdpListener, type ReceiveBuffer } from "../../src/io/udp-listener.js";
import { MonotonicClock } from "../../src/core/clock.js";
import { mapRequest, nonceOf } from "../helpers/packets.js";
import { burst } from "../helpers/udp.js";

const SERVER = "127.0.0.11";
const CLIENT = "127.0.0.12";
const BURST = 4000;
const rmemMax = Number(readFileSync("/proc/sys/net/core/rmem_max", "utf8"));

describe("listen.receiveBuffer (issue #12 item 9)", () => {
  it("the default fits under this machine's net.core.rmem_max (else the server warns and an operator must raise it)", () => {
    expect(parseConfig({}).listen.receiveBuffer).toBe(RECEIVE_BUFFER_DEFAULT);
    expect(RECEIVE_BUFFER_DEFAULT).toBeLessThanOrEqual(rmemMax);
    expect(() => parseConfig({ listen: { receiveBuffer: -1 } })).toThrow(/listen\.receiveBuffer/);
  });

  it("the listener reports, once per socket, what the kernel granted, and whether rmem_max capped it", async () => {
    const reports: ReceiveBuffer[] = [];
    const engine = engineFrom(engineConfig(), 0, {}, "release");
    for (const [requested, granted, capped] of [
      [1 << 20, 2 << 20, false],
      [rmemMax * 2, rmemMax * 2, true],
    ] as const) {
      reports.length = 0;
      const listener = new UdpListener({
        endpoints: [
          { address: SERVER, port: 0 },
          { address: "127.0.0.13", port: 0 },
        ],
        engine,
        clock: new MonotonicClock(),
        classify: () => W.INGRESS_SUBSCRIBER,
        receiveBuffer: requested,
        onReceiveBuffer: (r) => reports.push(r),
      });
      await listener.start();
      try {
        expect(reports.map((r) => r.address)).toEqual([SERVER, "127.0.0.13"]);
        for (const r of reports) expect(r).toMatchObject({ requested, granted, capped });
        expect(listener.receiveBufferSizes()).toEqual([granted, granted]);
      } finally {
        await listener.stop();
      }
    }
  });

  it(`a burst of ${BURST} MAP requests in one go loses at most 1 % (real server, default configuration)`, async () => {
    const config = parseConfig({
      listen: { addresses: [SERVER], port: 0 },
      // Not the rate limiter's test: one source may send the whole burst.
      rateLimit: { perSource: { rate: 100_000, burst: 100_000 } },
      log: { level: "silent" },
      persistence: { enabled: false },
    });
    const server = await startServer(config, pino({ level: "silent" }));
    try {
      const requests = Array.from({ length: BURST }, (_, i) => mapRequest({ client: CLIENT, internalPort: 10_000 + i, nonce: nonceOf(i) }));
      // The client's own buffer must hold the replies too: it reads them on this thread.
      const replies = await burst(CLIENT, SERVER, server.addresses[0].port, requests, { idleMs: 2000, receiveBuffer: RECEIVE_BUFFER_DEFAULT });
      const lost = (BURST - replies.length) / BURST;
      expect(replies.every((r) => r[1] === (W.OP_MAP | 0x80))).toBe(true);
      expect(lost, `${replies.length} of ${BURST} answered`).toBeLessThanOrEqual(0.01);
    } finally {
      await server.stop();
    }
  });
});
