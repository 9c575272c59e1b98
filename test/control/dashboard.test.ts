// The dashboard in a real headless Chromium (Debian's chromium, over the DevTools
// protocol), served by a real pcp-server process: refused without the token, live with it
// (counters moving under real PCP traffic over UDP, the mapping events arriving over the
// batched event frames, a lookup finding a mapping), and open without a token when
// control.anonymousRole is "read". A screenshot of every step goes to build/artifacts/dashboard/.
import { spawn, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import { chromiumPath, launchChromium, type Browser } from "../helpers/chromium.js";
import { description, mapRequest, nonceOf } from "../helpers/packets.js";
import { tempDir } from "../helpers/temp.js";
import { exchange } from "../helpers/udp.js";

const SERVER = new URL("../../dist/cli/pcp-server.js", import.meta.url).pathname;
const ARTIFACTS = new URL("../../build/artifacts/dashboard/", import.meta.url).pathname;
const UDP = "127.0.0.1";
// This suite's ports (25400–25499): control, UDP, DevTools, per server.
const PORTS = { token: { control: 25400, udp: 25410 }, anonymous: { control: 25401, udp: 25411 }, devtools: 25420 };
const READ_TOKEN = "dashboard-read-token-0123456789";
const chromium = chromiumPath();

interface Server {
  child: ChildProcess;
  log: string;
}

async function startServer(name: string, control: Record<string, unknown>, udpPort: number): Promise<Server> {
  const dir = tempDir(`pcpd-dashboard-${name}`);
  const config = join(dir, "pcpd.json");
  writeFileSync(
    config,
    JSON.stringify({
      listen: { addresses: [UDP], port: udpPort },
      control: { address: "127.0.0.1", tokenFile: join(dir, "control.token"), ...control },
      log: { level: "info" },
      persistence: { enabled: false },
    }),
  );
  const server: Server = { child: spawn(process.execPath, [SERVER, "--config", config], { stdio: ["ignore", "pipe", "pipe"] }), log: "" };
  await new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      server.log += chunk;
      if (server.log.includes("control channel listening") && server.log.includes("pcp server listening")) resolve();
    };
    server.child.stdout!.on("data", onData);
    server.child.stderr!.on("data", onData);
    server.child.once("exit", (code) => reject(new Error(`server exited ${code}: ${server.log}`)));
  });
  return server;
}

async function stopServer(s: Server | undefined): Promise<void> {
  if (!s || s.child.exitCode !== null) return;
  const gone = new Promise((resolve) => s.child.once("exit", resolve));
  s.child.kill("SIGTERM");
  const timer = setTimeout(() => s.child.kill("SIGKILL"), 10_000);
  await gone;
  clearTimeout(timer);
}

/** The page's counter row `name`: its value as a number. */
const counter = (name: string) =>
  `(() => { const row = [...document.querySelectorAll("#counters tr")].find((r) => r.cells[0].textContent === ${JSON.stringify(name)}); return row ? Number(row.cells[1].textContent.replace(/,/g, "")) : -1; })()`;
const text = (selector: string) => `document.querySelector(${JSON.stringify(selector)}).textContent`;

/** `count` MAP requests over real UDP from 127.0.0.1 (internal ports from `firstPort`), each answered SUCCESS. */
async function mapPorts(udpPort: number, firstPort: number, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const port = firstPort + i;
    const r = await exchange(
      UDP,
      UDP,
      udpPort,
      mapRequest({ client: UDP, internalPort: port, nonce: nonceOf(1), lifetime: 600 }, [description(`cam ${port}`)]),
    );
    expect(r.reply[3]).toBe(W.RESULT_SUCCESS);
  }
}

describe.skipIf(!chromium)(`dashboard in headless Chromium${chromium ? "" : " (skipped: chromium is not installed; scripts/test-deps.sh installs it)"}`, () => {
  let browser: Browser;
  let withToken: Server | undefined;
  let anonymous: Server | undefined;
  const page = (port: number, fragment = "") => `http://127.0.0.1:${port}/dashboard${fragment}`;
  const shot = (name: string) => browser.screenshot(join(ARTIFACTS, `${name}.png`));

  beforeAll(async () => {
    [withToken, anonymous, browser] = await Promise.all([
      startServer("token", { port: PORTS.token.control, tokens: [{ token: READ_TOKEN, role: "read" }] }, PORTS.token.udp),
      startServer("anonymous", { port: PORTS.anonymous.control, anonymousRole: "read" }, PORTS.anonymous.udp),
      launchChromium(PORTS.devtools),
    ]);
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    await Promise.all([stopServer(withToken), stopServer(anonymous)]);
  });

  it("refuses without the token, and with a wrong one", async () => {
    await browser.goto(page(PORTS.token.control));
    expect(await browser.waitFor<string>(`${text("#status")}.includes("refused") && ${text("#status")}`)).toBe("refused: a valid token is required");
    expect(await browser.evaluate(text("#counters tbody"))).toBe(""); // nothing shown
    await shot("01-refused-without-token");
    await browser.goto("about:blank");
    await browser.goto(page(PORTS.token.control, "#token=not-the-token-of-this-server"));
    await browser.waitFor(`${text("#status")}.includes("refused")`);
    await shot("02-refused-wrong-token");
  });

  it("with the token (in the URL fragment): counters move under PCP traffic, events arrive, a lookup finds a mapping", async () => {
    await browser.goto("about:blank");
    await browser.goto(page(PORTS.token.control, `#token=${READ_TOKEN}`));
    expect(await browser.waitFor<string>(`${text("#status")}.startsWith("connected") && ${text("#status")}`)).toBe("connected (read)");
    expect(await browser.evaluate("location.hash")).toBe(""); // the token left the address bar
    expect(await browser.waitFor<string>(`${text("#server")}.includes("pcpd-control/2") && ${text("#server")}`)).toMatch(/role read/);
    const packets0 = await browser.waitFor<number>(`${counter("packets")} >= 0 && ${counter("packets")} + 1`).then((n) => n - 1);
    expect(await browser.evaluate(counter("mappings"))).toBe(0);
    await shot("03-connected-idle");

    await mapPorts(PORTS.token.udp, 9000, 20);
    await browser.waitFor(`${counter("mappings")} === 20 && ${counter("packets")} >= ${packets0 + 20}`);
    expect(await browser.evaluate(counter("created"))).toBe(20);
    expect(await browser.evaluate(`${text("#shards tbody")}`)).toMatch(/^0up/); // shard 0 up
    expect(await browser.evaluate(`document.querySelectorAll("#pool tbody tr").length`)).toBeGreaterThan(0);
    await shot("04-counters-after-traffic");

    // Every create arrives as an event, over the batched frames.
    const events = await browser.waitFor<string[]>(
      `(() => { const l = [...document.querySelectorAll("#events li")].map((li) => li.textContent); return l.filter((t) => t.includes(" create ")).length >= 20 && l; })()`,
    );
    for (let port = 9000; port < 9020; port++) expect(events.some((t) => t.includes(`create  dynamic tcp 127.0.0.1:${port} → `))).toBe(true);
    expect(await browser.evaluate(text("#events-count"))).toMatch(/^20 events, latest 20 shown/);
    await shot("05-events");

    // Lookup by internal address, protocol and port (mappings.get).
    await browser.evaluate(
      `(() => { document.getElementById("lookup-address").value = "127.0.0.1"; document.getElementById("lookup-port").value = "9007"; document.getElementById("lookup-go").click(); })()`,
    );
    const found = await browser.waitFor<string>(`${text("#lookup-result tbody")}.includes("127.0.0.1:9007") && ${text("#lookup-result tbody")}`);
    expect(found).toContain("cam 9007");
    expect(await browser.evaluate(text("#lookup-note"))).toBe("1 mapping(s)");
    await shot("06-lookup-found");
    // A port nobody mapped: found nothing.
    await browser.evaluate(`(() => { document.getElementById("lookup-port").value = "9999"; document.getElementById("lookup-go").click(); })()`);
    await browser.waitFor(`${text("#lookup-note")} === "no mapping found"`);
    // A listing by internal address (no port): every mapping of 127.0.0.1.
    await browser.evaluate(`(() => { document.getElementById("lookup-port").value = ""; document.getElementById("lookup-go").click(); })()`);
    await browser.waitFor(`${text("#lookup-note")} === "20 mapping(s)"`);
    // Mappings per pool address: counted by paging mappings.list.
    await browser.evaluate(`document.getElementById("pool-count").click()`);
    const perAddress = await browser.waitFor<number[]>(
      `${text("#pool-note")}.startsWith("counted") && [...document.querySelectorAll("#pool tbody tr")].map((r) => Number(r.cells[4].textContent))`,
    );
    expect(perAddress.reduce((a, b) => a + b, 0)).toBe(20);
    await shot("07-lookup-list-and-pool-counts");
    expect(browser.console.filter((l) => l.startsWith("exception"))).toEqual([]);
  });

  it("without a token where control.anonymousRole is read", async () => {
    await browser.goto("about:blank");
    await browser.goto(page(PORTS.anonymous.control));
    expect(await browser.waitFor<string>(`${text("#status")}.startsWith("connected") && ${text("#status")}`)).toBe("connected (read)");
    await mapPorts(PORTS.anonymous.udp, 7000, 3);
    await browser.waitFor(`${counter("mappings")} === 3`);
    await browser.waitFor(`document.querySelectorAll("#events li").length === 3`);
    await shot("08-anonymous-read");
  });
});
