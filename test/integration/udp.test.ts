// Real sockets on loopback: the codec and engine behind the UDP listener.
// Checklist items 1 and 31 (§3.1, §3.2).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import { decodeRecords } from "../../src/engine/packet-engine.js";
import { engineConfig, engineFrom } from "../helpers/engine-config.js";
import { UdpListener } from "../../src/io/udp-listener.js";
import { MonotonicClock } from "../../src/core/clock.js";
import { announceRequest, assigned, mapRequest } from "../helpers/packets.js";
import { exchange as udpExchange } from "../helpers/udp.js";

const ADDRESSES = ["127.0.0.1", "127.0.0.2", "::1"];
let listener: UdpListener;
const events: string[] = [];

beforeAll(async () => {
  const engine = engineFrom(engineConfig(), 0, { seed: 1n }, "release");
  listener = new UdpListener({
    endpoints: ADDRESSES.map((address) => ({ address, port: W.PCP_SERVER_PORT })),
    engine,
    clock: new MonotonicClock(),
    classify: (source) => (source === "127.0.0.1" || source === "127.0.0.2" || source === "::1" ? W.INGRESS_SUBSCRIBER : 0),
    onEvents: (records) => events.push(...decodeRecords(records).map((e) => e.kind)),
  });
  await listener.start();
});
afterAll(() => listener.stop());

const exchange = (from: string, to: string, payload: Uint8Array) => udpExchange(from, to, W.PCP_SERVER_PORT, payload);

describe("UDP listener on loopback", () => {
  it("item 1: reachable on UDP 5351 over IPv4 and IPv6", async () => {
    for (const [from, to] of [
      ["127.0.0.1", "127.0.0.1"],
      ["::1", "::1"],
    ]) {
      const r = await exchange(from, to, announceRequest({ client: from }));
      expect(r.port).toBe(5351);
      expect(r.reply[1]).toBe(0x80);
      expect(r.reply[3]).toBe(W.RESULT_SUCCESS);
    }
  });

  it("item 31: the reply comes from the address the request was sent to", async () => {
    for (const to of ["127.0.0.1", "127.0.0.2"]) {
      const r = await exchange("127.0.0.1", to, announceRequest({ client: "127.0.0.1" }));
      expect(r.source).toBe(to);
    }
  });

  it("serves MAP end to end: mapping created, reply carries the pool address, event emitted", async () => {
    const r = await exchange("127.0.0.1", "127.0.0.1", mapRequest({ client: "127.0.0.1", internalPort: 22 }));
    expect(r.reply[3]).toBe(W.RESULT_SUCCESS);
    const a = assigned({ response: new Uint8Array(r.reply) });
    expect(a.address).toBe("203.0.113.1");
    expect(events).toContain("create");
  });

  it("sources the listener does not classify get no answer (item 2 end to end)", async () => {
    await expect(exchange("127.0.0.3", "127.0.0.1", announceRequest({ client: "127.0.0.3" }))).rejects.toThrow(/no reply/);
  });
});
