// The shard pool while a shard restarts on a new thread: tasks for it wait for its start
// and are then answered, and they hold back neither its restart nor the other shards'
// tasks (piscina stops distributing at the first task it cannot place; an ha.status poll
// during a demotion used to stall a whole node that way).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pino } from "pino";
import { parseConfig } from "../../src/config/schema.js";
import { startServer, type RunningServer } from "../../src/server/server.js";
import { waitFor } from "../helpers/wait.js";

let server: RunningServer;

beforeAll(async () => {
  server = await startServer(
    parseConfig({ listen: { addresses: ["127.0.0.71", "127.0.0.72"], port: 0 }, workers: 2, log: { level: "silent" }, persistence: { enabled: false } }),
    pino({ level: "silent" }),
  );
});
afterAll(() => server.stop());

describe("shard pool during a restart", () => {
  it("answers tasks sent to a restarting shard once it runs again; the other shard answers meanwhile", async () => {
    const before = server.threads();
    await server.replaceWorker(0); // its thread ended (a task in flight there fails with it)
    // Sent while shard 0 has no thread: many, as a status poll would.
    expect(server.threads()[0]).toBeUndefined();
    const waiting = Array.from({ length: 40 }, () => server.task(0, { kind: "ping" }));
    // Shard 1 is not held up behind them.
    const other = await Promise.race([
      server.task(1, { kind: "ping" }).then(() => "answered"),
      new Promise((resolve) => setTimeout(() => resolve("stalled"), 5000)),
    ]);
    expect(other).toBe("answered");
    const epochs = await Promise.all(waiting);
    expect(epochs).toHaveLength(40);
    await waitFor(() => server.threads()[0] !== undefined && server.threads()[0] !== before[0]);
    expect(server.threads()[1]).toBe(before[1]);
  }, 30_000);
});
