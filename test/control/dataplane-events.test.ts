// The event-stream dataplane backend end to end: an external dataplane subscribes over the
// control channel (SDK client), gets a reset and then every mapping's operations; without
// a consumer the server cannot program its NAT and answers NETWORK_FAILURE.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pino } from "pino";
import * as W from "../../src/wire.generated.js";
import { parseConfig } from "../../src/config/schema.js";
import { startServer, type RunningServer } from "../../src/server/server.js";
import { startControl, type RunningControl } from "../../src/control/server.js";
import { ControlClient } from "../../src/client/control-client.js";
import { engineConfig, engineFrom } from "../helpers/engine-config.js";
import { mapRequest, natPmpMap, nonceOf, serveOne } from "../helpers/packets.js";
import { exchange } from "../helpers/udp.js";
import { waitFor } from "../helpers/wait.js";

const UDP = "127.0.0.52";
const TOKEN = "dataplane-events-token-0123456789";
const log = pino({ level: "silent" });
let server: RunningServer;
let control: RunningControl;
let udpPort = 0;

beforeAll(async () => {
  const config = parseConfig({
    listen: { addresses: [UDP], port: 0 },
    dataplane: { backend: "events", batchMs: 20 },
    control: { address: "127.0.0.1", port: 0, tokens: [{ token: TOKEN, role: "admin" }] },
    log: { level: "silent" },
    persistence: { enabled: false },
  });
  server = await startServer(config, log);
  control = await startControl({ config: config.control, server, log, version: "test", reloadConfig: async () => [] });
  udpPort = server.addresses[0].port;
});
afterAll(async () => {
  await control.stop();
  await server.stop();
});

const map = (port: number, lifetime = 600) =>
  exchange(UDP, UDP, udpPort, mapRequest({ client: UDP, internalPort: port, lifetime, nonce: nonceOf(port) })).then((r) => r.reply);

describe("dataplane.backend events", () => {
  it("no consumer: NETWORK_FAILURE; a consumer gets a reset, then each mapping's operations; gone again: NETWORK_FAILURE", async () => {
    expect((await map(7000))[3]).toBe(W.RESULT_NETWORK_FAILURE);
    const consumer = await ControlClient.connect(`ws://127.0.0.1:${control.port}/control`, { token: TOKEN });
    const got: { method: string; params: any }[] = [];
    consumer.on("notification", (method: string, params: unknown) => got.push({ method, params }));
    expect(await consumer.call("dataplane.subscribe", {})).toEqual({ subscribed: true });
    await waitFor(() => got.some((n) => n.method === "dataplane.reset"));
    await waitFor(() => server.dataplane()!.up);

    const reply = await map(7001);
    expect(reply[3]).toBe(W.RESULT_SUCCESS);
    await waitFor(() => got.some((n) => n.method === "dataplane.ops"));
    const ops = got.filter((n) => n.method === "dataplane.ops").flatMap((n) => n.params.ops);
    expect(ops).toEqual([
      expect.objectContaining({
        op: "map",
        mapping: expect.objectContaining({ protocol: W.PROTO_TCP, internal: { address: UDP, port: 7001 }, inbound: true, outbound: true }),
      }),
    ]);
    const seqs = got.map((n) => n.params.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));

    expect((await map(7001, 0))[3]).toBe(W.RESULT_SUCCESS); // delete
    await waitFor(() =>
      got
        .filter((n) => n.method === "dataplane.ops")
        .flatMap((n) => n.params.ops)
        .some((o: any) => o.op === "unmap"),
    );
    expect((await server.dataplane())!.installed).toBe(0);

    await consumer.close();
    // The next transaction finds nobody: after failuresBeforeDown of them, NETWORK_FAILURE.
    for (let i = 0; i < 20 && server.dataplane()!.up; i++) {
      const failures = server.dataplane()!.failures;
      await map(7100 + i);
      await waitFor(() => !server.dataplane()!.up || server.dataplane()!.failures > failures); // its transaction failed
    }
    expect(server.dataplane()!.up).toBe(false);
    expect((await map(7200))[3]).toBe(W.RESULT_NETWORK_FAILURE);
  }, 30_000);

  it("the engine's dataplane-down flag answers MAP and NAT-PMP with NETWORK_FAILURE until cleared", () => {
    const e = engineFrom(engineConfig(), 100);
    e.setDataplaneDown(true);
    expect(serveOne(e, mapRequest({ client: "192.0.2.1" }), 100, { source: "192.0.2.1" }).result).toBe(W.RESULT_NETWORK_FAILURE);
    expect(serveOne(e, natPmpMap(W.NATPMP_OP_MAP_TCP, 8080, 0, 600), 100, { source: "192.0.2.1" }).response[3]).toBe(W.NATPMP_RESULT_NETWORK_FAILURE);
    e.setDataplaneDown(false);
    expect(serveOne(e, mapRequest({ client: "192.0.2.1" }), 100, { source: "192.0.2.1" }).result).toBe(W.RESULT_SUCCESS);
  });
});
