// The shared NATS pieces against a real 3-node nats-server cluster: the group's stream and the
// lease bucket are created once at R3 and found again, and the fencing the replication relies
// on holds — a publish expecting an older last subject sequence is refused.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { connectNats, ensureGroupStream, haNames, leaseBucket } from "../../src/replication/nats.js";
import { natsUnavailable, startNatsCluster, type NatsCluster } from "../helpers/nats.js";

const skip = natsUnavailable();

describe.skipIf(skip)("NATS for HA (3-node JetStream cluster)", () => {
  let cluster: NatsCluster;
  let nc: NatsConnection;
  beforeAll(async () => {
    cluster = await startNatsCluster({ size: 3, basePort: 24_310 });
    nc = await connectNats({ servers: cluster.urls, timeoutMs: 2000 }, "test");
  }, 60_000);
  afterAll(async () => {
    await nc?.close();
    await cluster?.stop();
  });

  it("creates a group's stream at R3 once, with one subject per shard", async () => {
    await ensureGroupStream(nc, "t", "g1", 3);
    await ensureGroupStream(nc, "t", "g1", 3); // found, not recreated
    const info = await (await jetstreamManager(nc)).streams.info(haNames.stream("t", "g1"));
    expect(info.config.num_replicas).toBe(3);
    expect(info.config.subjects).toEqual(["pcpd.t.g1.>"]);
  });

  it("refuses a publish that expects an older last subject sequence (fencing)", async () => {
    await ensureGroupStream(nc, "t", "g2", 3);
    const js = jetstream(nc);
    const subject = haNames.subject("t", "g2", 0);
    const first = await js.publish(subject, new Uint8Array([1]), { expect: { lastSubjectSequence: 0 } });
    const second = await js.publish(subject, new Uint8Array([2]), { expect: { lastSubjectSequence: first.seq } });
    expect(second.seq).toBeGreaterThan(first.seq);
    await expect(js.publish(subject, new Uint8Array([3]), { expect: { lastSubjectSequence: first.seq } })).rejects.toThrow(/wrong last sequence/i);
  });

  it("keeps a lease bucket in which only one of two racing creates wins", async () => {
    const kv = await leaseBucket(nc, "t", 3);
    const results = await Promise.allSettled([kv.create("g1", new TextEncoder().encode("a")), kv.create("g1", new TextEncoder().encode("b"))]);
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
  });
});
