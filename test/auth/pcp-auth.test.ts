// PCP authentication end to end (RFC 7652): a real pcp-server process on loopback, a real
// FreeRADIUS as the EAP server behind it (EAP-TTLS with inner PAP), and the project's client
// library with its EAP-TTLS peer, as `pcpctl auth-test` runs it. Policies per source prefix:
// 127.0.1.0/24 required, 127.0.2.0/24 optional, 127.0.3.0/24 off, THIRD_PARTY from
// 127.0.4.0/24 required.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import { PcpAuthClient, PaFailure } from "../../src/auth/pa-client.js";
import { EapTtlsPeer } from "../../src/auth/eap-ttls-peer.js";
import { commonTag } from "../../src/auth/pa-wire.js";
import { encodePa, u32Option } from "../../src/auth/pa-wire.js";
import { toAddress16 } from "../../src/net/address.js";
import { mapRequest, nonceOf, option, peerRequest, thirdParty } from "../helpers/packets.js";
import { exchange } from "../helpers/udp.js";
import { waitFor } from "../helpers/wait.js";
import { tempDir } from "../helpers/temp.js";
import { type FreeRadius, freeRadiusMissing, startFreeRadius } from "../helpers/freeradius.js";

const SERVER = new URL("../../dist/cli/pcp-server.js", import.meta.url).pathname;
const PCPCTL = new URL("../../dist/cli/pcpctl.js", import.meta.url).pathname;
const PCP_PORT = 25150;
const RADIUS_PORT = 25160;
const HOST = "127.0.0.1";
const USERS = [
  { name: "alice", password: "alice-secret-1" },
  { name: "bob", password: "bob-secret-2" },
  { name: "brief", password: "brief-secret-3", sessionTimeoutS: 5 },
];
const run = promisify(execFile);
const dir = tempDir("pcpd-auth");
const tokenFile = join(dir, "control.token");
let radius: FreeRadius;
let child: ChildProcess;
let url = "";
let log = "";
const clients: PcpAuthClient[] = [];

beforeAll(async () => {
  if (freeRadiusMissing) return;
  radius = await startFreeRadius({ port: RADIUS_PORT, users: USERS });
  const config = join(dir, "pcpd.json");
  writeFileSync(
    config,
    JSON.stringify({
      listen: { addresses: [HOST], port: PCP_PORT },
      subscribers: ["127.0.0.0/8"],
      thirdPartySources: ["127.0.4.0/24"],
      control: { port: 0, tokenFile },
      log: { level: "info" },
      persistence: { enabled: false },
      auth: {
        subscribers: [
          { prefix: "127.0.1.0/24", mode: "required" },
          { prefix: "127.0.2.0/24", mode: "optional" },
          { prefix: "127.0.3.0/24", mode: "off" },
        ],
        thirdParty: [{ prefix: "127.0.4.0/24", mode: "required" }],
        sessionLifetime: 600,
        radius: { servers: [{ host: radius.host, port: radius.port, secret: radius.secret }], timeoutMs: 500, retries: 1 },
      },
    }),
  );
  await startServer();
}, 60_000);

async function startServer(): Promise<void> {
  url = "";
  log = "";
  child = spawn(process.execPath, [SERVER, "--config", join(dir, "pcpd.json")], { stdio: ["ignore", "pipe", "inherit"] });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on("data", (chunk) => {
      log += chunk;
      for (const line of log.split("\n")) if (line.includes("control channel listening")) url = JSON.parse(line).control;
      if (url && log.includes("pcp server listening")) resolve();
    });
    child.once("exit", (code) => reject(new Error(`server exited ${code}: ${log}`)));
  });
}

afterAll(async () => {
  for (const c of clients) c.close();
  if (child && child.exitCode === null) child.kill("SIGKILL");
  await radius?.stop();
});

async function client(bind: string, user = "alice", password = USERS[0].password): Promise<PcpAuthClient> {
  const c = new PcpAuthClient({
    server: { address: HOST, port: PCP_PORT },
    bind,
    newPeer: () => new EapTtlsPeer({ identity: user, password, ca: radius.caPem, serverName: radius.serverName }),
    timeoutMs: 20_000,
    retransmitMs: 1000,
  });
  await c.open();
  clients.push(c);
  return c;
}

async function ctl(args: string[]): Promise<any> {
  const { stdout } = await run(process.execPath, [PCPCTL, "--url", url, "--token-file", tokenFile, "--json", ...args]);
  return JSON.parse(stdout);
}

const map = (client: string, n: number, port = 8000 + n) => mapRequest({ client, internalPort: port, nonce: nonceOf(n), lifetime: 600 });

describe.skipIf(freeRadiusMissing)("PCP authentication through FreeRADIUS", () => {
  it("EAP-TTLS through the server: tagged MAP and PEER, tagged replies", { timeout: 30_000 }, async () => {
    const c = await client("127.0.1.1");
    await c.authenticate();
    expect(c.established).toBe(true);
    const m = await c.request(map("127.0.1.1", 1));
    expect(m).toMatchObject({ tagged: true, result: W.RESULT_SUCCESS });
    expect(commonTag(m!.reply)).toMatchObject({ sessionId: c.sessionId, keyId: 1 });
    const p = await c.request(
      peerRequest({ client: "127.0.1.1", nonce: nonceOf(2), internalPort: 9000, remotePort: 443, remoteAddress: "198.51.100.7", lifetime: 300 }),
    );
    expect(p).toMatchObject({ tagged: true, result: W.RESULT_SUCCESS });
  });

  it("pcpctl auth-test: the whole exchange from the command line", { timeout: 30_000 }, async () => {
    const ca = join(dir, "radius-ca.pem");
    writeFileSync(ca, radius.caPem);
    /** `pcpctl auth-test --json` as bob from `bind` (`--server-name` only where given). */
    const authTest = (password: string, bind: string, serverName?: string) =>
      run(process.execPath, [
        PCPCTL,
        "auth-test",
        "--server",
        `${HOST}:${PCP_PORT}`,
        "--user",
        "bob",
        "--password",
        password,
        "--ca",
        ca,
        ...(serverName ? ["--server-name", serverName] : []),
        "--bind",
        bind,
        "--json",
      ]);
    const { stdout } = await authTest(USERS[1].password, "127.0.1.20", radius.serverName);
    expect(JSON.parse(stdout)).toMatchObject({ map: { result: 0, tagged: true }, peer: { result: 0, tagged: true } });
    const failed = await authTest("wrong", "127.0.1.21").catch((e: { code: number; stdout: string }) => e);
    expect((failed as { code: number }).code).toBe(1);
    expect(JSON.parse((failed as { stdout: string }).stdout)).toMatchObject({ result: W.RESULT_AUTHENTICATION_FAILED });
  });

  it("wrong credentials: AUTHENTICATION_FAILED", { timeout: 30_000 }, async () => {
    const c = await client("127.0.1.2", "alice", "not-her-password");
    const e = await c.authenticate().catch((x: unknown) => x);
    expect(e).toBeInstanceOf(PaFailure);
    expect((e as PaFailure).result).toBe(W.RESULT_AUTHENTICATION_FAILED);
  });

  it("replayed and tampered tagged requests are dropped; the latest one again is answered", { timeout: 30_000 }, async () => {
    const c = await client("127.0.1.3");
    await c.authenticate();
    const older = c.sign(map("127.0.1.3", 3));
    const newer = c.sign(map("127.0.1.3", 4));
    expect((await c.send(newer))?.tagged).toBe(true);
    expect(await c.send(older, 1500)).toBeUndefined();
    const tampered = c.sign(map("127.0.1.3", 5));
    tampered[W.MP_INTERNAL_PORT + 1] ^= 0x40;
    expect(await c.send(tampered, 1500)).toBeUndefined();
    expect((await c.send(newer))?.tagged).toBe(true);
  });

  it("unauthenticated where required: AUTHENTICATION_REQUIRED, then the server's PA-Server message starts the session", { timeout: 30_000 }, async () => {
    const c = await client("127.0.1.4", "bob", USERS[1].password);
    const authenticated = c.whenAuthenticated();
    expect((await c.send(map("127.0.1.4", 6)))?.result).toBe(W.RESULT_AUTHENTICATION_REQUIRED);
    await authenticated;
    expect(await c.request(map("127.0.1.4", 6))).toMatchObject({ tagged: true, result: W.RESULT_SUCCESS });
  });

  it("optional: untagged requests served, tagged ones answered tagged; off: the extension is unknown", { timeout: 30_000 }, async () => {
    const plain = await exchange("127.0.2.1", HOST, PCP_PORT, map("127.0.2.1", 7));
    expect(plain.reply[3]).toBe(W.RESULT_SUCCESS);
    const c = await client("127.0.2.2");
    await c.authenticate();
    expect(await c.request(map("127.0.2.2", 8))).toMatchObject({ tagged: true, result: W.RESULT_SUCCESS });
    const initiation = encodePa({
      response: false,
      result: W.RESULT_INITIATION,
      sessionId: 0,
      sequence: 0,
      clientAddress: toAddress16("127.0.3.1"),
      options: [u32Option(W.OPTION_NONCE, 7)],
    });
    expect((await exchange("127.0.3.1", HOST, PCP_PORT, initiation)).reply[3]).toBe(W.RESULT_UNSUPP_OPCODE);
    const tagged = mapRequest({ client: "127.0.3.1", nonce: nonceOf(9), lifetime: 600 }, [option(W.OPTION_AUTHENTICATION_TAG, new Uint8Array(28))]);
    expect((await exchange("127.0.3.1", HOST, PCP_PORT, tagged)).reply[3]).toBe(W.RESULT_UNSUPP_OPTION);
  });

  it("THIRD_PARTY policy: a proxy's THIRD_PARTY requests need its session", { timeout: 30_000 }, async () => {
    const tp = mapRequest({ client: "127.0.4.1", nonce: nonceOf(10), lifetime: 600 }, [thirdParty("10.9.8.7")]);
    const c = await client("127.0.4.1", "bob", USERS[1].password);
    const authenticated = c.whenAuthenticated();
    expect((await c.send(tp))?.result).toBe(W.RESULT_AUTHENTICATION_REQUIRED);
    await authenticated;
    expect(await c.request(tp)).toMatchObject({ tagged: true, result: W.RESULT_SUCCESS });
  });

  it("the AAA server's Session-Timeout: re-authentication before the lifetime ends", { timeout: 30_000 }, async () => {
    const c = await client("127.0.1.5", "brief", USERS[2].password);
    await c.authenticate();
    expect(c.lifetimeS).toBe(5);
    await waitFor(() => c.authentications >= 2, { timeout: 15_000 });
    expect(c.keyId).toBe(2);
    expect(await c.request(map("127.0.1.5", 11))).toMatchObject({ tagged: true, result: W.RESULT_SUCCESS });
  });

  it("termination: client-initiated, and by the operator (pcpctl auth terminate)", { timeout: 30_000 }, async () => {
    const a = await client("127.0.1.6");
    await a.authenticate();
    const id = a.sessionId;
    await a.terminate();
    await waitFor(async () => !(await ctl(["auth", "list"])).sessions.some((s: { sessionId: number }) => s.sessionId === id));
    const b = await client("127.0.1.7");
    await b.authenticate();
    const listed = await waitFor(async () =>
      (await ctl(["auth", "list"])).sessions.find((s: { sessionId: number; state: string }) => s.sessionId === b.sessionId && s.state === "open"),
    );
    expect(listed).toMatchObject({ client: "127.0.1.7", identity: "alice" });
    expect(await ctl(["auth", "terminate", String(b.sessionId)])).toMatchObject({ terminated: true });
    await waitFor(() => b.terminatedByServer);
    // The SA is gone: its tags now name an unknown session [7652 §3.2].
    const metrics = await (await fetch(url.replace(/^ws/, "http").replace(/\/[^/]*$/, "/metrics"))).text();
    expect(metrics).toMatch(/pcpd_auth_successes_total\{shard="0"\} [1-9]/);
    expect(metrics).toMatch(/pcpd_auth_terminations_total\{shard="0"\} [1-9]/);
  });

  it("restart: sessions are lost, a tagged request gets UNKNOWN_SESSION_ID, the client authenticates again", { timeout: 40_000 }, async () => {
    const c = await client("127.0.1.10");
    await c.authenticate();
    child.kill("SIGTERM");
    await new Promise((resolve) => child.once("exit", resolve));
    await startServer();
    const r = await c.request(map("127.0.1.10", 12));
    expect(r).toMatchObject({ tagged: false, result: W.RESULT_UNKNOWN_SESSION_ID });
    expect(c.established).toBe(false); // RFC 7652 §3.2: the client must start over
    await c.authenticate();
    expect(await c.request(map("127.0.1.10", 12))).toMatchObject({ tagged: true, result: W.RESULT_SUCCESS });
  });

  it("AAA unreachable: the exchange ends with NETWORK_FAILURE; an expiring session cannot re-authenticate and ends", { timeout: 40_000 }, async () => {
    const c = await client("127.0.1.8", "brief", USERS[2].password);
    await c.authenticate();
    await radius.stop();
    await waitFor(() => c.terminatedByServer, { timeout: 20_000 });
    const d = await client("127.0.1.9");
    const e = await d.authenticate().catch((x: unknown) => x);
    expect((e as PaFailure).result).toBe(W.RESULT_NETWORK_FAILURE);
    const counters = await ctl(["auth", "list"]);
    expect(counters.counters.failures.unreachable).toBeGreaterThanOrEqual(1);
  });
});
