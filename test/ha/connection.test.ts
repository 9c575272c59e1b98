// The main thread's HA connection at start (src/ha/connection.ts connectHa): NATS that comes
// up a little after the node is waited for (retries logged), the group streams and the lease
// bucket are made; NATS that never comes refuses the start after the patience.
import { describe, expect, it } from "vitest";
import { pino } from "pino";
import { jetstreamManager } from "@nats-io/jetstream";
import { parseConfig } from "../../src/config/schema.js";
import { shardGroups } from "../../src/config/checks.js";
import { connectHa, ConnectionState } from "../../src/ha/connection.js";
import { haNames } from "../../src/replication/nats.js";
import { natsUnavailable, startNatsCluster, type NatsCluster } from "../helpers/nats.js";

const skip = natsUnavailable();
const config = (port: number) =>
  parseConfig({
    listen: { addresses: ["127.0.0.81"], port: 24_593 },
    persistence: { enabled: false },
    ha: {
      enabled: true,
      node: "c1",
      cluster: "ct",
      replicas: 1,
      nats: { servers: [`nats://127.0.0.1:${port}`], timeoutMs: 300 },
      groups: [{ name: "g", addresses: ["127.0.0.81"] }],
    },
  });

describe.skipIf(skip)("connectHa", () => {
  it("waits for NATS that starts after the node, then makes the stream and the lease bucket", async () => {
    const c = config(24_580);
    const logs: { msg: string }[] = [];
    const log = pino({ level: "info" }, { write: (s: string) => void logs.push(JSON.parse(s)) });
    let cluster: NatsCluster | undefined;
    const later = new Promise<void>((resolve) =>
      setTimeout(() => {
        void startNatsCluster({ size: 1, basePort: 24_580 }).then((n) => {
          cluster = n;
          resolve();
        });
      }, 1000),
    );
    try {
      const { nc, kv } = await connectHa(c, shardGroups(c, 1), log, 20_000);
      expect(logs.some((l) => l.msg === "ha: NATS not ready at start; retrying")).toBe(true);
      expect(new ConnectionState(nc).get()).toBe("connected");
      expect((await (await jetstreamManager(nc)).streams.info(haNames.stream("ct", "g"))).config.subjects).toEqual(["pcpd.ct.g.>"]);
      expect(await kv.get("g")).toBeNull();
      await nc.close();
    } finally {
      await later;
      await cluster?.stop();
    }
  }, 40_000);

  it("gives up after its patience when NATS never answers", async () => {
    const c = config(24_589); // nothing listens there
    await expect(connectHa(c, shardGroups(c, 1), pino({ level: "silent" }), 800)).rejects.toThrow();
  });
});
