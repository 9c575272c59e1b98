// The ha.* configuration: a consistent HA document is accepted, and each contradiction is
// refused with one line naming the field (src/config/checks.ts haIssues).
import { describe, expect, it } from "vitest";
import { configIssues } from "../helpers/config-issues.js";
import { parseConfig } from "../../src/config/schema.js";
import { shardGroups } from "../../src/config/checks.js";

const A = ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"];
/** Four listen addresses on two workers: worker 0 serves .1 and .3, worker 1 serves .2 and .4. */
const base = (ha: Record<string, unknown> = {}, rest: Record<string, unknown> = {}) => ({
  listen: { addresses: A, port: 5351 },
  workers: 2,
  persistence: { enabled: false },
  ha: {
    enabled: true,
    node: "n1",
    groups: [
      { name: "g0", addresses: ["192.0.2.1", "192.0.2.3"], preferred: "n1" },
      { name: "g1", addresses: ["192.0.2.2", "192.0.2.4"], preferred: "n2" },
    ],
    ...ha,
  },
  ...rest,
});

describe("ha configuration", () => {
  it("accepts groups that partition the listen addresses by worker, and derives each group's shards", () => {
    expect(configIssues(base())).toEqual([]);
    const c = parseConfig(
      base({ hooks: { claim: ["ip", "addr", "add", "{prefix}", "dev", "eth0"], release: ["ip", "addr", "del", "{prefix}", "dev", "eth0"] } }),
    );
    expect(shardGroups(c, 2)).toEqual([
      { name: "g0", addresses: ["192.0.2.1", "192.0.2.3"], preferred: "n1", shards: [0] },
      { name: "g1", addresses: ["192.0.2.2", "192.0.2.4"], preferred: "n2", shards: [1] },
    ]);
    // One group for everything is fine too (every shard in it).
    expect(shardGroups(parseConfig(base({ groups: [{ name: "all", addresses: A }] })), 2)[0].shards).toEqual([0, 1]);
  });

  it("is off by default and then checks nothing of ha.*", () => {
    expect(configIssues({ ha: { groups: [{ name: "x", addresses: ["203.0.113.9"] }] } })).toEqual([]);
  });

  it.each([
    [base({}, { persistence: { enabled: true } }), "persistence.enabled: must be false with ha.enabled"],
    [base({ groups: [] }), "ha.groups: ha.enabled needs at least one group"],
    [base({}, { listen: { addresses: A, port: 0 } }), "listen.port: must be a fixed port with ha.enabled"],
    [base({ leaseMs: 1000, safetyMarginMs: 500 }), "ha.safetyMarginMs: 500 ms must be under half of ha.leaseMs (1000)"],
    [
      base({
        groups: [
          { name: "g0", addresses: ["192.0.2.1", "192.0.2.3"] },
          { name: "g0", addresses: ["192.0.2.2", "192.0.2.4"] },
        ],
      }),
      "ha.groups.1.name: duplicate group name g0",
    ],
    [
      base({
        groups: [
          { name: "g0", addresses: ["192.0.2.1", "192.0.2.3", "198.51.100.1"] },
          { name: "g1", addresses: ["192.0.2.2", "192.0.2.4"] },
        ],
      }),
      "ha.groups.0.addresses.2: 198.51.100.1 is not in listen.addresses",
    ],
    [base({ hooks: { claim: ["ip", "addr", "add", "{prefix}", "dev", "eth0"] } }), "ha.hooks.release: ha.hooks.claim and ha.hooks.release are set together"],
    [base({ hooks: { release: ["true"] } }), "ha.hooks.claim: ha.hooks.claim and ha.hooks.release are set together"],
  ])("%j → one line naming the field", (document, line) => {
    const found = configIssues(document);
    expect(found).toHaveLength(1);
    expect(found[0]).toContain(line);
  });

  it("refuses an address in two groups, an address in none, and a worker's addresses split between groups", () => {
    expect(
      configIssues(
        base({
          groups: [
            { name: "g0", addresses: ["192.0.2.1", "192.0.2.3"] },
            { name: "g1", addresses: ["192.0.2.2", "192.0.2.4", "192.0.2.1"] },
          ],
        }),
      ),
    ).toEqual(["ha.groups.1.addresses.2: 192.0.2.1 is already in group g0"]);
    expect(
      configIssues(
        base({
          groups: [
            { name: "g0", addresses: ["192.0.2.1", "192.0.2.3"] },
            { name: "g1", addresses: ["192.0.2.2"] },
          ],
        }),
      ),
    ).toEqual(["ha.groups: listen address 192.0.2.4 is in no group (every served address moves with one)"]);
    const split = configIssues(
      base({
        groups: [
          { name: "g0", addresses: ["192.0.2.1", "192.0.2.2"] },
          { name: "g1", addresses: ["192.0.2.3", "192.0.2.4"] },
        ],
      }),
    );
    expect(split).toHaveLength(2);
    expect(split[0]).toContain("192.0.2.3 (group g1) and 192.0.2.1 (group g0) are served by the same worker");
  });

  it("refuses malformed names and out-of-range timings at the schema", () => {
    expect(configIssues(base({ node: "bad name" }))[0]).toContain("ha.node");
    expect(configIssues(base({ cluster: "a.b" }))[0]).toContain("ha.cluster");
    expect(configIssues(base({ leaseMs: 100 }))[0]).toContain("ha.leaseMs");
    expect(configIssues(base({ groups: [{ name: "g/0", addresses: A }] }))[0]).toContain("ha.groups.0.name");
  });
});
