// The operator's Epoch reset (epoch.reset, `pcpctl epoch reset`) with persistence on: the
// shard drops its table and its persisted files, starts at Epoch 0 (and announces it), and
// the main thread logs an operator action, not a worker death. A later restart of the
// process does not bring the dropped mappings back.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterAll, describe, expect, it } from "vitest";
import { pino } from "pino";
import * as W from "../../src/wire.generated.js";
import { parseConfig } from "../../src/config/schema.js";
import { startServer, type RunningServer } from "../../src/server/server.js";
import { TestTime } from "../../src/core/clock.js";
import { shardDirectory } from "../../src/persist/store.js";
import { mapRequest } from "../helpers/packets.js";
import { exchange } from "../helpers/udp.js";
import { waitFor } from "../helpers/wait.js";

const A = "127.0.0.63";
const dir = fs.mkdtempSync(join(tmpdir(), "pcpd-epoch-reset-"));
const config = parseConfig({
  listen: { addresses: [A], port: 0 },
  subscribers: ["127.0.0.0/8"],
  pool: { addresses: ["192.0.2.7"] },
  control: { enabled: false },
  log: { level: "info" },
  persistence: { directory: dir },
});
const lines: { level: number; msg: string }[] = [];
const logger = () =>
  pino(
    { level: "info" },
    new Writable({
      write: (chunk, _e, done) => (
        lines.push(
          ...String(chunk)
            .trim()
            .split("\n")
            .map((l) => JSON.parse(l)),
        ),
        done()
      ),
    }),
  );
let server: RunningServer | undefined;
/** Engine time, Epochs and wall-clock time move when the test says (src/core/clock.ts). */
const clock = new TestTime();
const options = { testClock: clock };

const until = (what: string, ok: () => boolean | Promise<boolean>) => waitFor(ok, { message: () => what });
const mappings = (s: RunningServer) => s.stats().shards[0].engine.mappings;
const persistedBytes = () => fs.readdirSync(shardDirectory(dir, 0, 1)).reduce((n, f) => n + fs.statSync(join(shardDirectory(dir, 0, 1), f)).size, 0);

afterAll(async () => {
  await server?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe("epoch reset by the operator, persistence on", () => {
  it("drops the shard's table and files, restarts it at Epoch 0, logged as an operator action; a process restart restores nothing", async () => {
    server = await startServer(config, logger(), undefined, options);
    const s = server;
    const empty = persistedBytes();
    const port = s.addresses[0].port;
    const reply = (await exchange(A, A, port, mapRequest({ client: A, internalPort: 4000, lifetime: 3600 }))).reply;
    expect(reply[3]).toBe(W.RESULT_SUCCESS);
    expect(mappings(s)).toBe(1n);
    await until("the mapping journaled", () => persistedBytes() > empty);
    clock.advance(100);
    expect(s.epochs()[0]).toBeGreaterThanOrEqual(100);
    const before = lines.length;

    const epoch = await s.resetShard(0);
    const logged = lines.slice(before);
    expect(logged.map((l) => l.msg).join("\n")).not.toContain("worker died");
    expect(logged.filter((l) => l.level >= 50)).toEqual([]); // nothing at error level
    expect(logged.map((l) => l.msg)).toContain("epoch reset by the operator: the shard restarts empty at epoch 0 and announces it");
    expect(mappings(s)).toBe(0n);
    expect(epoch).toBeLessThanOrEqual(1);
    expect(s.epochs()[0]).toBeLessThanOrEqual(1);
    // The restarted shard serves.
    expect((await exchange(A, A, port, mapRequest({ client: A, internalPort: 4001, lifetime: 3600 }))).reply[3]).toBe(W.RESULT_SUCCESS);
    expect(mappings(s)).toBe(1n);

    // A restart of the process brings back what was mapped after the reset, not before it.
    await s.stop();
    server = await startServer(config, logger(), undefined, options);
    expect(mappings(server)).toBe(1n);
    const again = await server.task(0, { kind: "lookup", internalAddress: A, protocol: W.PROTO_TCP, internalPort: 4000, family: 4 });
    expect(again.bytes.length).toBe(0);
  }, 30_000);

  it("the shard's directory is a mount point (a volume per shard): its files are dropped, the directory stays, the shard serves again at Epoch 0", async () => {
    const base = fs.mkdtempSync(join(tmpdir(), "pcpd-epoch-reset-mount-"));
    const shardDir = shardDirectory(base, 0, 1);
    fs.mkdirSync(shardDir, { recursive: true });
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=16m", "tmpfs", shardDir]);
    const s = await startServer({ ...config, persistence: { ...config.persistence, directory: base } }, logger(), undefined, options);
    try {
      const port = s.addresses[0].port;
      expect((await exchange(A, A, port, mapRequest({ client: A, internalPort: 4100, lifetime: 3600 }))).reply[3]).toBe(W.RESULT_SUCCESS);
      clock.advance(100);
      expect(s.epochs()[0]).toBeGreaterThanOrEqual(100);
      expect(await s.resetShard(0)).toBeLessThanOrEqual(1);
      expect(mappings(s)).toBe(0n);
      expect((await exchange(A, A, port, mapRequest({ client: A, internalPort: 4101, lifetime: 3600 }))).reply[3]).toBe(W.RESULT_SUCCESS);
    } finally {
      await s.stop();
      execFileSync("umount", [shardDir]);
      fs.rmSync(base, { recursive: true, force: true });
    }
  }, 30_000);
});
