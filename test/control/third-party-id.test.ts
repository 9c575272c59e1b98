// THIRD_PARTY_ID end to end: an AFTR maps the same internal address for two softwires
// over UDP; the control channel finds each one by its identifier and lists it with it.
import dgram from "node:dgram";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pino } from "pino";
import * as W from "../../src/wire.generated.js";
import { parseConfig } from "../../src/config/schema.js";
import { startServer, type RunningServer } from "../../src/server/server.js";
import { startControl, type RunningControl } from "../../src/control/server.js";
import { ControlClient } from "../../src/client/control-client.js";
import { assigned, mapRequest, nonceOf, thirdParty, thirdPartyId } from "../helpers/packets.js";

const UDP = "127.0.0.53";
const AFTR = "127.0.0.54";
const TOKEN = "third-party-id-token-0123456789";
const log = pino({ level: "silent" });
let server: RunningServer;
let control: RunningControl;

beforeAll(async () => {
  const config = parseConfig({
    listen: { addresses: [UDP], port: 0 },
    thirdPartySources: [`${AFTR}/32`],
    pcp: { thirdPartyId: { enabled: true, ids: ["b4000001", "b4000002"] } },
    control: { address: "127.0.0.1", port: 0, tokens: [{ token: TOKEN, role: "admin" }] },
    log: { level: "silent" },
    persistence: { enabled: false },
  });
  server = await startServer(config, log);
  control = await startControl({ config: config.control, server, log, version: "test", reloadConfig: async () => [] });
});
afterAll(async () => {
  await control.stop();
  await server.stop();
});

async function map(id: number[]): Promise<Buffer> {
  const socket = dgram.createSocket("udp4");
  await new Promise<void>((resolve) => socket.bind(0, AFTR, resolve));
  const reply = await new Promise<Buffer>((resolve) => {
    socket.once("message", resolve);
    socket.send(
      mapRequest({ client: AFTR, internalPort: 8080, lifetime: 600, nonce: nonceOf(id[3]) }, [thirdParty("192.168.1.10"), thirdPartyId(id)]),
      server.addresses[0].port,
      UDP,
    );
  });
  socket.close();
  return reply;
}

describe("THIRD_PARTY_ID over the wire and the control channel", () => {
  it("two softwires with the same internal address get two mappings, each found, listed, counted and deleted by its identifier", async () => {
    const one = await map([0xb4, 0, 0, 1]);
    const two = await map([0xb4, 0, 0, 2]);
    expect([one[3], two[3]]).toEqual([W.RESULT_SUCCESS, W.RESULT_SUCCESS]);
    expect((await map([0xb4, 0, 0, 9]))[3]).toBe(W.RESULT_THIRD_PARTY_ID_UNKNOWN);
    const client = await ControlClient.connect(`ws://127.0.0.1:${control.port}/control`, { token: TOKEN });
    try {
      const get = (thirdPartyId?: string) =>
        client.call("mappings.get", { internalAddress: "192.168.1.10", protocol: W.PROTO_TCP, internalPort: 8080, ...(thirdPartyId ? { thirdPartyId } : {}) });
      expect((await get("b4000001")).mapping).toMatchObject({ externalPort: assigned({ response: one }).port, thirdPartyId: "b4000001" });
      expect((await get("b4000002")).mapping).toMatchObject({ externalPort: assigned({ response: two }).port, thirdPartyId: "b4000002" });
      expect((await get()).mapping).toBeNull(); // realm 0 has none
      expect((await get("b4000009")).mapping).toBeNull();
      const list = await client.call("mappings.list", { filter: { internalAddress: "192.168.1.10" } });
      expect(list.mappings.map((m) => m.thirdPartyId).sort()).toEqual(["b4000001", "b4000002"]);
      // Usage and deletion per realm: one softwire's subscriber goes, the other's stays.
      expect((await client.call("subscribers.usage", { internalAddress: "192.168.1.10", thirdPartyId: "b4000001" })).shards[0]).toMatchObject({
        mappings: 1,
        blocks: 1,
      });
      expect((await client.call("subscribers.usage", { internalAddress: "192.168.1.10" })).shards[0]).toMatchObject({ mappings: 0 });
      expect(await client.call("subscribers.deleteMappings", { internalAddress: "192.168.1.10", thirdPartyId: "b4000001" })).toEqual({ deleted: 1 });
      expect((await get("b4000001")).mapping).toBeNull();
      expect((await get("b4000002")).mapping).not.toBeNull();
    } finally {
      await client.close();
    }
  });
});
