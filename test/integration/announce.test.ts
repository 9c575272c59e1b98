// Rapid recovery on a real link: the server runs in a network namespace of its own, a
// listener in a second namespace across a veth pair, addresses only inside the two.
// At start (an Epoch reset) the server multicasts gratuitous ANNOUNCEs to 224.0.0.1:5350
// and [ff02::1]:5350, and NAT-PMP external-address announcements to 224.0.0.1:5350, from
// its unicast listen addresses, on the schedule of RFC 6887 §14.1.3 / RFC 6886 §3.2.1
// (checklist 117, 118, 142). The schedule is measured on the wire: a capture in the
// listener's namespace timestamps each datagram in the kernel as the veth delivers it.
// The same namespaces carry a MAP exchange across the link.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import { waitFor, waitForLine, withTimeout } from "../helpers/wait.js";
import { tempDir } from "../helpers/temp.js";

const CLI = new URL("../../dist/cli/pcp-server.js", import.meta.url).pathname;
const id = process.pid % 100000;
const NS_SERVER = `pcpd-s${id}`;
const NS_CLIENT = `pcpd-c${id}`;
const IF_SERVER = `pcps${id}`;
const IF_CLIENT = `pcpc${id}`;
const SERVER4 = "10.53.51.1";
const CLIENT4 = "10.53.51.2";
const SERVER6 = "fd53:51::1";
const CLIENT6 = "fd53:51::2";
const COPIES = 4;
const COPIES_SENT = 2 * COPIES + COPIES; // PCP on both families, NAT-PMP on IPv4
const FIRST_GAP = 250;

const ip = (...args: string[]) => execFileSync("ip", args, { stdio: "pipe" });

/** Creates the namespaces; returns why not when this machine cannot. */
function setUp(): string | undefined {
  try {
    ip("netns", "add", NS_SERVER);
  } catch (e) {
    return `network namespaces unavailable (${(e as Error).message.split("\n")[0]})`;
  }
  ip("netns", "add", NS_CLIENT);
  ip("link", "add", IF_SERVER, "type", "veth", "peer", "name", IF_CLIENT);
  ip("link", "set", IF_SERVER, "netns", NS_SERVER);
  ip("link", "set", IF_CLIENT, "netns", NS_CLIENT);
  for (const [ns, dev, a4, a6] of [
    [NS_SERVER, IF_SERVER, SERVER4, SERVER6],
    [NS_CLIENT, IF_CLIENT, CLIENT4, CLIENT6],
  ]) {
    ip("-n", ns, "addr", "add", `${a4}/24`, "dev", dev);
    ip("-n", ns, "-6", "addr", "add", `${a6}/64`, "dev", dev, "nodad");
    ip("-n", ns, "link", "set", dev, "up");
    ip("-n", ns, "link", "set", "lo", "up");
  }
  return undefined;
}

// Runs in the client namespace: prints every datagram to port 5350 as a JSON line, then
// (on "map" from stdin) sends one MAP to the server and prints the reply.
const LISTENER = `
const dgram = require("node:dgram");
const out = (o) => process.stdout.write(JSON.stringify(o) + "\\n");
let ready = 0;
for (const type of ["udp4", "udp6"]) {
  const s = dgram.createSocket({ type, ipv6Only: type === "udp6" });
  s.on("message", (m, r) => out({ family: type, from: r.address, port: r.port, hex: m.toString("hex") }));
  s.bind(5350, type === "udp4" ? "0.0.0.0" : "::", () => ++ready === 2 && out({ ready: true }));
}
process.stdin.on("data", () => {
  const c = dgram.createSocket("udp4");
  const req = Buffer.alloc(60);
  req[0] = 2; req[1] = 1; req.writeUInt32BE(600, 4);
  req.writeUInt16BE(0xffff, 18); req.set([10, 53, 51, 2], 20);
  req.fill(7, 24, 36); req[36] = 6; req.writeUInt16BE(8080, 40);
  req.writeUInt16BE(0xffff, 54);
  c.on("message", (m, r) => { out({ reply: m.toString("hex"), from: r.address, port: r.port }); c.close(); });
  c.bind(0, "${CLIENT4}", () => c.send(req, 5351, "${SERVER4}"));
});
`;

interface Line {
  ready?: boolean;
  family?: string;
  from?: string;
  port?: number;
  hex?: string;
  reply?: string;
}

let skip: string | undefined;
let listener: ChildProcess | undefined;
let server: ChildProcess | undefined;
const lines: Line[] = [];

const seen = () => `seen: ${JSON.stringify(lines)}`;

/** One captured datagram to port 5350: kernel timestamp (ns since the Unix epoch), source, UDP payload size. */
interface Captured {
  ns: bigint;
  source: string;
  size: number;
}
let capture: ChildProcess | undefined;
let captureFile = "";
const captured: Captured[] = [];

/** "1733312345.123456789" (frame.time_epoch) → ns, without going through a double. */
function epochNs(text: string): bigint {
  const [s, f = ""] = text.split(".");
  return BigInt(s) * 1_000_000_000n + BigInt(f.padEnd(9, "0").slice(0, 9));
}

beforeAll(async () => {
  skip = setUp();
  if (skip) return;
  const dir = tempDir("pcpd-announce");
  captureFile = join(dir, "announce.pcapng");
  // Stops by itself after the copies expected (nothing else goes to port 5350 on this link).
  capture = spawn(
    "ip",
    ["netns", "exec", NS_CLIENT, "dumpcap", "-q", "-i", IF_CLIENT, "-f", "udp dst port 5350", "-c", String(COPIES_SENT), "-w", captureFile],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  await waitForLine(capture.stderr!, /Capturing on/, { timeout: 10_000 }); // dumpcap's ready line
  listener = spawn("ip", ["netns", "exec", NS_CLIENT, process.execPath, "-e", LISTENER], { stdio: ["pipe", "pipe", "inherit"] });
  let buffered = "";
  listener.stdout!.on("data", (chunk) => {
    buffered += chunk;
    const parts = buffered.split("\n");
    buffered = parts.pop()!;
    for (const p of parts) lines.push(JSON.parse(p));
  });
  await waitFor(() => lines.some((l) => l.ready), { timeout: 10_000, message: seen });
  const config = join(dir, "pcpd.json");
  writeFileSync(
    config,
    JSON.stringify({
      listen: { addresses: [SERVER4, SERVER6] },
      subscribers: ["10.53.51.0/24", "fd53:51::/64"],
      announce: { multicast: [IF_SERVER], count: COPIES, firstGapMs: FIRST_GAP },
      log: { level: "warn" },
      persistence: { enabled: false },
    }),
  );
  server = spawn("ip", ["netns", "exec", NS_SERVER, process.execPath, CLI, "--config", config], { stdio: ["ignore", "inherit", "inherit"] });
  const exited = once(capture, "exit");
  await waitFor(() => lines.filter((l) => l.hex).length >= COPIES_SENT, { timeout: 15_000, message: seen });
  await withTimeout(exited, 5_000, `dumpcap stopping after ${COPIES_SENT} packets`); // the capture has every copy
  const fields = execFileSync(
    "tshark",
    ["-r", captureFile, "-T", "fields", "-E", "separator=,", "-e", "frame.time_epoch", "-e", "ip.src", "-e", "ipv6.src", "-e", "udp.length"],
    { encoding: "utf8" },
  );
  for (const row of fields.trim().split("\n")) {
    const [time, src4, src6, udpLength] = row.split(",");
    captured.push({ ns: epochNs(time), source: src4 || src6, size: Number(udpLength) - 8 });
  }
}, 40_000);

afterAll(() => {
  capture?.kill("SIGKILL");
  server?.kill("SIGKILL");
  listener?.kill("SIGKILL");
  if (!skip) for (const ns of [NS_SERVER, NS_CLIENT]) execFileSync("ip", ["netns", "del", ns], { stdio: "ignore" });
});

const received = (family: string, size: number) => lines.filter((l) => l.family === family && l.hex && l.hex.length === 2 * size);

describe("gratuitous announcements after an Epoch reset (in network namespaces)", () => {
  it("items 117, 142: PCP ANNOUNCE to 224.0.0.1:5350 and [ff02::1]:5350, NAT-PMP to 224.0.0.1:5350, from the unicast listen address and port 5351", (ctx) => {
    if (skip) return ctx.skip(skip);
    const pcp4 = received("udp4", W.PCP_HEADER_SIZE);
    const pcp6 = received("udp6", W.PCP_HEADER_SIZE);
    const natPmp = received("udp4", W.NATPMP_ADDRESS_RESPONSE_SIZE);
    for (const [list, source] of [
      [pcp4, SERVER4],
      [pcp6, SERVER6],
      [natPmp, SERVER4],
    ] as const) {
      expect(list).toHaveLength(COPIES);
      for (const l of list) {
        expect(l.from).toBe(source);
        expect(l.port).toBe(W.PCP_SERVER_PORT);
      }
    }
    for (const l of [...pcp4, ...pcp6]) {
      const m = Buffer.from(l.hex!, "hex");
      expect([m[0], m[1], m[3]]).toEqual([W.PCP_VERSION, W.R_BIT | W.OP_ANNOUNCE, W.RESULT_SUCCESS]);
      expect(m.readUInt32BE(4)).toBe(0); // lifetime
      expect(m.subarray(12).every((b) => b === 0)).toBe(true);
    }
    for (const l of natPmp) {
      const m = Buffer.from(l.hex!, "hex");
      expect([m[0], m[1], m.readUInt16BE(2)]).toEqual([W.NATPMP_VERSION, 0x80, 0]);
      expect(`${m[8]}.${m[9]}.${m[10]}`).toBe("203.0.113"); // an external address of the pool
    }
  });

  it("item 118: on the wire, first gap ≥ 250 ms, each later gap at least double, Epoch never going back", (ctx) => {
    if (skip) return ctx.skip(skip);
    // Gaps between kernel timestamps of the capture: each taken as the veth hands the
    // datagram on, inside the server's send call, on the same clock for every packet. The
    // server counts each gap from its send callback (after that call returned), so the gaps
    // hold exactly; the only tolerance is the capture's resolution, 1 µs (pcapng default).
    const RESOLUTION_NS = 1000n;
    const kinds = [
      [SERVER4, W.PCP_HEADER_SIZE],
      [SERVER6, W.PCP_HEADER_SIZE],
      [SERVER4, W.NATPMP_ADDRESS_RESPONSE_SIZE],
    ] as const;
    for (const [source, size] of kinds) {
      const at = captured.filter((c) => c.source === source && c.size === size).map((c) => c.ns);
      expect(at, `${source} ${size}-byte copies captured`).toHaveLength(COPIES);
      const gaps = at.slice(1).map((t, i) => t - at[i]);
      expect(gaps[0] + RESOLUTION_NS, `first gap ${gaps[0]} ns`).toBeGreaterThanOrEqual(BigInt(FIRST_GAP) * 1_000_000n);
      for (let k = 1; k < gaps.length; k++) expect(gaps[k] + RESOLUTION_NS, `gaps (ns) ${gaps.join(", ")}`).toBeGreaterThanOrEqual(2n * gaps[k - 1]);
    }
    for (const list of [received("udp4", W.PCP_HEADER_SIZE), received("udp6", W.PCP_HEADER_SIZE), received("udp4", W.NATPMP_ADDRESS_RESPONSE_SIZE)]) {
      const epochs = list.map((l) => Buffer.from(l.hex!, "hex").readUInt32BE(l.hex!.length === 48 ? 8 : 4));
      for (let k = 1; k < epochs.length; k++) expect(epochs[k]).toBeGreaterThanOrEqual(epochs[k - 1]);
      expect(epochs[0]).toBeLessThanOrEqual(1); // a fresh Epoch
      expect(epochs.at(-1)).toBeGreaterThanOrEqual(1); // 1.75 s later
    }
  });

  it("serves a MAP across the link (end to end in the namespaces)", async (ctx) => {
    if (skip) return ctx.skip(skip);
    listener!.stdin!.write("map\n");
    await waitFor(() => lines.some((l) => l.reply), { timeout: 5_000, message: seen });
    const r = lines.find((l) => l.reply)!;
    const m = Buffer.from(r.reply!, "hex");
    expect(r.from).toBe(SERVER4);
    expect([m[1], m[3]]).toEqual([W.R_BIT | W.OP_MAP, W.RESULT_SUCCESS]);
    expect(m.readUInt16BE(42)).toBeGreaterThanOrEqual(1024);
  });
});
