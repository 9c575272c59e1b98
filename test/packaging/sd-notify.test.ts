// pcp-server's systemd notifications (sd_notify(3), src/cli/sd-notify.ts, native/sd_notify.c)
// against a real AF_UNIX datagram socket bound by the test (python3 plays systemd's side:
// SO_PASSCRED on, so every datagram carries the sender's pid in SCM_CREDENTIALS, the way
// systemd attributes it to a unit). Checked: the exact messages in order, and that they come
// from the server's own process; a path and an @abstract socket; the watchdog; the
// systemd-notify fallback without the addon; a bad $NOTIFY_SOCKET. Ports 25520–25529.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, describe, expect, it } from "vitest";
import { systemdNotifier } from "../../src/cli/sd-notify.js";
import { ADDON_PATH, loadAddon } from "../../src/io/native.js";
import { tempDir } from "../helpers/temp.js";
import { waitFor } from "../helpers/wait.js";

const ROOT = new URL("../../", import.meta.url).pathname;
const SERVER = join(ROOT, "dist/cli/pcp-server.js");
const HAS_PYTHON = spawnSync("python3", ["-c", "import socket; socket.SCM_CREDENTIALS"]).status === 0;
const HAS_ADDON = existsSync(ADDON_PATH);
const HAS_NOTIFY = spawnSync("systemd-notify", ["--version"]).status === 0;
const dir = tempDir("psd-notify");

// systemd's notification socket: one JSON line per datagram, with the sender's credentials.
const RECEIVER = `
import json, socket, struct, sys
name = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
s.bind("\\0" + name[1:] if name.startswith("@") else name)
print(json.dumps({"bound": name}), flush=True)
while True:
    data, anc, flags, addr = s.recvmsg(4096, socket.CMSG_SPACE(12))
    pid = None
    for level, kind, cred in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack("iII", cred[:12])[0]
    print(json.dumps({"pid": pid, "data": data.decode()}), flush=True)
`;

interface Datagram {
  pid: number;
  data: string;
}

const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
});

async function receiver(name: string): Promise<Datagram[]> {
  const got: Datagram[] = [];
  let bound = false;
  const py = spawn("python3", ["-c", RECEIVER, name], { stdio: ["ignore", "pipe", "inherit"] });
  children.push(py);
  createInterface({ input: py.stdout! }).on("line", (line) => {
    const m = JSON.parse(line) as Datagram | { bound: string };
    if ("bound" in m) bound = true;
    else got.push(m);
  });
  await waitFor(() => bound || py.exitCode !== null);
  expect(py.exitCode).toBeNull();
  return got;
}

interface Server {
  child: ChildProcess;
  out: string;
  exited: Promise<number | null>;
}

async function startServer(port: number, env: NodeJS.ProcessEnv): Promise<Server> {
  const config = join(dir, `s${port}.json`);
  writeFileSync(config, JSON.stringify({ listen: { addresses: ["127.0.0.1"], port }, control: { port: port + 1 }, persistence: { enabled: false } }));
  const child = spawn(process.execPath, [SERVER, "--config", config, "--log-format", "json"], {
    env: { ...process.env, XDG_RUNTIME_DIR: dir, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  const s: Server = { child, out: "", exited: new Promise((r) => child.once("exit", r)) };
  child.stdout!.on("data", (c) => (s.out += c));
  child.stderr!.on("data", (c) => (s.out += c));
  await waitFor(() => s.out.includes("pcp-server ready") || child.exitCode !== null, { timeout: 30_000, message: () => s.out });
  expect(child.exitCode, s.out).toBeNull();
  return s;
}

const status = (port: number) => `STATUS=serving PCP on 127.0.0.1:${port}; dataplane none; control ws://127.0.0.1:${port + 1}/control`;

describe.skipIf(!HAS_PYTHON || !HAS_ADDON)("sd_notify from the server's own process (the addon)", () => {
  for (const [label, name, port] of [
    ["a socket path", join(dir, "notify.sock"), 25520],
    ["an abstract socket (@name)", `@psd-notify-${process.pid}`, 25522],
  ] as const)
    it(`${label}: STATUS=starting, READY=1 with the summary once serving, STOPPING=1 at SIGTERM; every one from the server's pid`, async () => {
      const got = await receiver(name);
      const s = await startServer(port, { NOTIFY_SOCKET: name });
      await waitFor(() => got.length >= 2, { message: () => JSON.stringify(got) });
      expect(got).toEqual([
        { pid: s.child.pid, data: "STATUS=starting" },
        { pid: s.child.pid, data: `READY=1\n${status(port)}` },
      ]);
      expect(s.out).not.toContain("systemd notification not sent");
      expect(s.out).not.toContain("go through systemd-notify");
      s.child.kill("SIGTERM");
      expect(await s.exited).toBe(0);
      await waitFor(() => got.length >= 3, { message: () => JSON.stringify(got) });
      expect(got.slice(2)).toEqual([{ pid: s.child.pid, data: "STOPPING=1\nSTATUS=stopping" }]);
    });

  it("WatchdogSec: WATCHDOG=1 every half $WATCHDOG_USEC from the server's pid, and none for another WATCHDOG_PID", async () => {
    const name = `@psd-watchdog-${process.pid}`;
    const got = await receiver(name);
    const s = await startServer(25524, { NOTIFY_SOCKET: name, WATCHDOG_USEC: "200000" });
    await waitFor(() => got.filter((d) => d.data === "WATCHDOG=1").length >= 3, { message: () => JSON.stringify(got) });
    expect(new Set(got.map((d) => d.pid))).toEqual(new Set([s.child.pid]));
    s.child.kill("SIGTERM");
    expect(await s.exited).toBe(0);
    await waitFor(() => got.some((d) => d.data.startsWith("STOPPING=1")));

    const other = systemdNotifier({ NOTIFY_SOCKET: name, WATCHDOG_USEC: "200000", WATCHDOG_PID: String(process.pid + 1) });
    expect(other!.watchdog(() => {})).toBeUndefined();
  });

  it("a $NOTIFY_SOCKET nobody listens on, or one that is no unix socket name: a problem reported, no throw", async () => {
    const gone = systemdNotifier({ NOTIFY_SOCKET: join(dir, "nobody.sock") })!;
    expect(gone.via).toBe("addon");
    expect(await gone.notify("READY=1")).toMatch(/^sd_notify "READY=1" to .*nobody\.sock: sdNotify: No such file or directory$/);
    const relative = systemdNotifier({ NOTIFY_SOCKET: "vsock:2:999" })!;
    expect(await relative.notify("READY=1")).toMatch(/neither an absolute path nor @abstract/);
    expect(systemdNotifier({})).toBeUndefined();
  });
});

describe.skipIf(!HAS_PYTHON || !HAS_NOTIFY)("without the addon: systemd-notify --pid", () => {
  it("sends the same messages with MAINPID=<the server's pid>, and warns that the unit needs NotifyAccess=all", async () => {
    const name = join(dir, "fallback.sock");
    const got = await receiver(name);
    const s = await startServer(25526, { NOTIFY_SOCKET: name, PCPD_IO_ADDON: join(dir, "no-addon.node") });
    await waitFor(() => got.some((d) => d.data.includes("READY=1")), { message: () => JSON.stringify(got) });
    const ready = got.find((d) => d.data.includes("READY=1"))!;
    expect(ready.data.split("\n").sort()).toEqual([`MAINPID=${s.child.pid}`, "READY=1", status(25526)].sort());
    expect(s.out).toMatch(/"via":"systemd-notify \(addon not built \([^)]*no-addon\.node\): see docs\/io\.md\)"/);
    s.child.kill("SIGTERM");
    expect(await s.exited).toBe(0);
    await waitFor(() => got.some((d) => d.data.includes("STOPPING=1")), { message: () => JSON.stringify(got) });
  });

  it("an addon without sdNotify (built before it) falls back as well", () => {
    const addon = loadAddon();
    if (typeof addon === "string") return;
    const { sdNotify: _, ...older } = addon;
    expect(systemdNotifier({ NOTIFY_SOCKET: "/run/x" }, { addon: older as typeof addon })!.via).toBe("systemd-notify (the addon has no sdNotify: rebuild it)");
  });
});
