// The activity batcher (src/dataplane/activity.ts): queries of every shard arriving in one
// event-loop turn are one backend read; one read at a time, the queries arriving during a
// read answered together by the next; a failed read rejects its own queries only.
import { describe, expect, it } from "vitest";
import { ActivityBatcher, type ActivityQuery } from "../../src/dataplane/activity.js";

const query = (mapping: number): ActivityQuery => ({
  mapping,
  protocol: 17,
  family: 4,
  internal: { address: "10.0.0.1", port: 1000 + mapping },
  external: { address: "198.51.100.1", port: 2000 + mapping },
});

/** A backend whose reads finish when the test says; each answers mapping × 10 per query. */
function slowSource() {
  const reads: { queries: number[]; finish: (fail?: Error) => void }[] = [];
  let inFlight = 0;
  let most = 0;
  const source = (queries: ActivityQuery[]) =>
    new Promise<number[]>((resolve, reject) => {
      most = Math.max(most, ++inFlight);
      reads.push({
        queries: queries.map((q) => q.mapping),
        finish: (fail) => {
          inFlight--;
          if (fail) reject(fail);
          else resolve(queries.map((q) => q.mapping * 10));
        },
      });
    });
  return { source, reads, most: () => most };
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

describe("ActivityBatcher", () => {
  it("one read per turn's queries; one read at a time, the next answering everything that came meanwhile", async () => {
    const s = slowSource();
    const b = new ActivityBatcher(s.source);
    const first = [b.ask([query(1), query(2)]), b.ask([query(3)])];
    await turn();
    expect(s.reads.map((r) => r.queries)).toEqual([[1, 2, 3]]);
    // While it runs, queries of several turns wait: no second read beside it.
    const later = [b.ask([query(4)])];
    await turn();
    later.push(b.ask([query(5), query(6)]));
    await turn();
    expect(s.reads).toHaveLength(1);
    s.reads[0].finish();
    expect(await Promise.all(first)).toEqual([[10, 20], [30]]);
    await turn();
    expect(s.reads.map((r) => r.queries)).toEqual([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    s.reads[1].finish(new Error("nft exited 1"));
    await expect(later[0]).rejects.toThrow("nft exited 1");
    await expect(later[1]).rejects.toThrow("nft exited 1");
    // After a failure the next queries get a read of their own.
    const again = b.ask([query(7)]);
    await turn();
    s.reads[2].finish();
    expect(await again).toEqual([70]);
    expect(s.most()).toBe(1);
    expect([b.reads, b.queries]).toEqual([3, 7]);
  });
});
