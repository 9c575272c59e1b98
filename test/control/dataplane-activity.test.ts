// Traffic-driven lifetimes through an external dataplane (dataplane.backend "events"): a
// fake dataplane process (test/helpers/fake-dataplane-main.ts — its own process, speaking
// the control-channel protocol like a hardware CGN's agent) applies the operations, keeps a
// "last packet seen" clock per endpoint, and answers dataplane.activity queries. The server
// asks only when a decision needs it: a delete (item 77), a short renewal (item 78), the
// end of a PEER lifetime (item 91).
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pino } from "pino";
import * as W from "../../src/wire.generated.js";
import { parseConfig } from "../../src/config/schema.js";
import { startServer, type RunningServer } from "../../src/server/server.js";
import { startControl, type RunningControl } from "../../src/control/server.js";
import { ControlClient } from "../../src/client/control-client.js";
import { mapRequest, nonceOf, peerRequest } from "../helpers/packets.js";
import { exchange } from "../helpers/udp.js";
import { waitFor } from "../helpers/wait.js";

const ROOT = new URL("../../", import.meta.url).pathname;
const FAKE = new URL("../helpers/fake-dataplane-main.ts", import.meta.url).pathname;
const UDP = "127.0.0.86";
const UDP_PORT = 25602;
const CONTROL_PORT = 25603;
const TOKEN = "dataplane-activity-token-0123456789";
const IDLE = 120;
const log = pino({ level: "silent" });
let server: RunningServer;
let control: RunningControl;
let fake: ChildProcess;
let admin: ControlClient;
const lines: any[] = [];

beforeAll(async () => {
  const config = parseConfig({
    listen: { addresses: [UDP], port: UDP_PORT },
    lifetimes: { min: 2, peerMin: 2 },
    dataplane: { backend: "events", batchMs: 20, activity: { enabled: true, udpIdle: IDLE, requestWaitMs: 2000 } },
    control: { address: "127.0.0.1", port: CONTROL_PORT, tokens: [{ token: TOKEN, role: "admin" }] },
    log: { level: "silent" },
    persistence: { enabled: false },
  });
  server = await startServer(config, log);
  control = await startControl({ config: config.control, server, log, version: "test", reloadConfig: async () => [] });
  fake = spawn(process.execPath, ["--import", "tsx", FAKE, `ws://127.0.0.1:${CONTROL_PORT}/control`, TOKEN, String(IDLE)], {
    cwd: ROOT,
    stdio: ["pipe", "pipe", "inherit"],
  });
  createInterface({ input: fake.stdout! }).on("line", (l) => lines.push(JSON.parse(l)));
  await waitFor(() => lines.includes("ready") && server.dataplane()!.up, { timeout: 20_000, message: () => JSON.stringify(lines) });
  admin = await ControlClient.connect(`ws://127.0.0.1:${CONTROL_PORT}/control`, { token: TOKEN });
}, 40_000);

afterAll(async () => {
  fake?.kill("SIGKILL");
  await admin?.close();
  await control?.stop();
  await server?.stop();
});

const send = (payload: Uint8Array) => exchange(UDP, UDP, UDP_PORT, payload).then((r) => ({ result: r.reply[3], lifetime: r.reply.readUInt32BE(4) }));
const map = (port: number, lifetime: number) => send(mapRequest({ client: UDP, protocol: W.PROTO_UDP, internalPort: port, lifetime, nonce: nonceOf(port) }));
/** Waits until the fake dataplane has applied an operation for this internal port (the manager posts ops in batches, later than the reply). */
const installedBy = (port: number) => waitFor(() => lines.some((l) => l.ops && l.ports.includes(port)) && server.dataplane()!.pendingKeys === 0);
/** A packet of this internal UDP endpoint, as the fake dataplane sees it on the wire. */
async function packet(port: number): Promise<void> {
  const before = lines.length;
  fake.stdin!.write(`${JSON.stringify({ packet: { protocol: W.PROTO_UDP, address: UDP, port } })}\n`);
  await waitFor(() => lines.slice(before).some((l) => l.packet?.port === port));
}
const queriesFor = (port: number) => lines.filter((l) => l.activity).flatMap((l) => l.queries.filter((q: any) => q.internal.port === port));

describe("activity answered by an external dataplane (separate process)", () => {
  it("item 77: a delete after traffic the dataplane saw → its remaining idle time; idle → 0", async () => {
    expect((await map(7101, 600)).result).toBe(W.RESULT_SUCCESS);
    await installedBy(7101);
    await packet(7101);
    const del = await map(7101, 0);
    expect(del.result).toBe(W.RESULT_SUCCESS);
    expect(del.lifetime).toBeGreaterThan(IDLE - 5);
    expect(del.lifetime).toBeLessThanOrEqual(IDLE);
    expect(queriesFor(7101)).toEqual([expect.objectContaining({ protocol: W.PROTO_UDP, family: 4, internal: { address: UDP, port: 7101 } })]);
    await waitFor(() => lines.some((l) => l.answered && l.accepted));

    expect((await map(7102, 600)).result).toBe(W.RESULT_SUCCESS);
    await installedBy(7102);
    expect(await map(7102, 0)).toEqual({ result: W.RESULT_SUCCESS, lifetime: 0 });
  });

  it("item 78: a 2 s renewal after traffic gets the natural remaining time", async () => {
    expect((await map(7103, 600)).result).toBe(W.RESULT_SUCCESS);
    await installedBy(7103);
    await packet(7103);
    expect((await map(7103, 2)).lifetime).toBeGreaterThan(IDLE - 5);
  });

  it("item 91: an unrenewed PEER mapping the dataplane saw traffic on survives its lifetime", async () => {
    const request = peerRequest({ client: UDP, protocol: W.PROTO_UDP, internalPort: 7104, lifetime: 2, nonce: nonceOf(7104), remoteAddress: "198.51.100.9" });
    expect(await send(request)).toEqual({ result: W.RESULT_SUCCESS, lifetime: 2 });
    await installedBy(7104);
    await packet(7104);
    await waitFor(() => queriesFor(7104).length > 0, { timeout: 8000 }); // its lifetime ended: the server asked
    await waitFor(() =>
      lines.some((l) => l.answered && l.accepted && lines.find((a) => a.activity === l.answered)?.queries.some((q: any) => q.internal.port === 7104)),
    );
    const { mapping } = await admin.call("mappings.get", { internalAddress: UDP, protocol: W.PROTO_UDP, internalPort: 7104 });
    expect(mapping).not.toBeNull();
    expect(server.dataplane()).toMatchObject({ activityQueries: lines.filter((l) => l.activity).reduce((n, l) => n + l.queries.length, 0) });
  });

  it("an answer nobody waits for (late, or answered already) is not accepted", async () => {
    await expect(admin.call("dataplane.activityAnswer", { id: 999_999, remaining: [1] })).resolves.toEqual({ accepted: false });
  });
});
