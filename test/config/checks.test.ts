// Contradictory or dangerous settings refused with one line each (start and reload), the
// memory estimate against the engine's real tables, and what a reload must be: a complete
// file whose pool the running engine can take.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { configIssues } from "../helpers/config-issues.js";
import { loadFile, loadReload } from "../../src/config/load.js";
import { parseConfig, poolAddresses } from "../../src/config/schema.js";
import { contradictions, EPHEMERAL_PORT_ENV, poolReloadIssues, tableBytes, warnings } from "../../src/config/checks.js";
import { PacketEngine } from "../../src/engine/packet-engine.js";
import { tempDir } from "../helpers/temp.js";

const issues = configIssues;

describe("contradictory or dangerous values (start and reload)", () => {
  it.each([
    [{ lifetimes: { peerMin: 90000 } }, "lifetimes.peerMin: 90000 must be ≤ lifetimes.max (86400)"],
    [{ pcp: { shortErrorLifetime: 0 } }, "pcp.shortErrorLifetime: 0 s is outside 1..3600"],
    [{ pcp: { longErrorLifetime: 4_000_000 } }, "pcp.longErrorLifetime: 4000000 s is outside 1..86400"],
    [{ pcp: { shortErrorLifetime: 600, longErrorLifetime: 60 } }, "pcp.longErrorLifetime: 60 s must be ≥ pcp.shortErrorLifetime (600)"],
    [{ pool: { addresses: ["198.51.100.0/23"] } }, "pool.addresses: 198.51.100.0/23 holds 510 usable addresses, but the engine's address table holds 256"],
    [{ pool: { addresses: ["192.0.2.0/24", "198.51.100.0/29"] } }, "pool.addresses: 260 pool addresses, but the engine's address table holds 256"],
    [{ pcp: { thirdPartyId: { ids: ["0a0b"] } } }, "pcp.thirdPartyId.ids: lists 1 identifier(s) but pcp.thirdPartyId.enabled is false"],
    [{ logging: { syslog: { enabled: true, port: 5351 } } }, "logging.syslog.port: 127.0.0.1:5351 is this server's own PCP listen address"],
    [{ logging: { ipfix: { enabled: true, port: 70000 } } }, "logging.ipfix.port"],
    [{ logging: { syslog: { transport: "tls" } } }, "logging.syslog.transport"],
  ])("%j → one line naming the field", (document, line) => {
    const found = issues(document);
    expect(found).toHaveLength(1);
    expect(found[0]).toContain(line);
  });

  describe("wildcard listen addresses (docs/io.md)", () => {
    let saved: string | undefined;
    beforeEach(() => {
      saved = process.env.PCPD_IO;
    });
    afterEach(() => {
      if (saved === undefined) delete process.env.PCPD_IO;
      else process.env.PCPD_IO = saved;
    });
    it.each([
      [["0.0.0.0"], "listen.addresses.0: 0.0.0.0 is a wildcard: on the dgram path replies would leave from whatever address the kernel picks"],
      [["127.0.0.1", "::"], "listen.addresses.1: :: is a wildcard"],
    ])("%j refused with PCPD_IO=dgram", (addresses, line) => {
      process.env.PCPD_IO = "dgram";
      const found = issues({ listen: { addresses } });
      expect(found).toHaveLength(1);
      expect(found[0]).toContain(line);
    });
    it("accepted on the batched path (IP_PKTINFO answers from the address asked)", () => {
      process.env.PCPD_IO = "batched";
      expect(issues({ listen: { addresses: ["0.0.0.0", "::"] } })).toEqual([]);
    });
  });

  describe("listen.port 0", () => {
    let saved: string | undefined;
    beforeEach(() => {
      saved = process.env[EPHEMERAL_PORT_ENV];
      delete process.env[EPHEMERAL_PORT_ENV];
    });
    afterEach(() => {
      if (saved !== undefined) process.env[EPHEMERAL_PORT_ENV] = saved;
    });
    it(`is refused unless ${EPHEMERAL_PORT_ENV}=1 (tests)`, () => {
      expect(issues({ listen: { port: 0 } })).toEqual([
        `listen.port: 0 (an ephemeral port) is for tests only: clients send to 5351 (RFC 6887 §14.1.1, §19.1); ${EPHEMERAL_PORT_ENV}=1 allows it`,
      ]);
      process.env[EPHEMERAL_PORT_ENV] = "1";
      expect(issues({ listen: { port: 0 } })).toEqual([]);
    });
  });

  it("a pool prefix's network and broadcast addresses are not handed out, unless listed as /32", () => {
    expect(poolAddresses(["192.0.2.0/29"])).toEqual(["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.5", "192.0.2.6"]);
    expect(poolAddresses(["192.0.2.0/30"])).toEqual(["192.0.2.1", "192.0.2.2"]);
    expect(poolAddresses(["192.0.2.0/31"])).toEqual(["192.0.2.0", "192.0.2.1"]); // RFC 3021: no network or broadcast
    expect(poolAddresses(["192.0.2.0/32", "192.0.2.255"])).toEqual(["192.0.2.0", "192.0.2.255"]);
    expect(poolAddresses(["192.0.2.0/24"])).toHaveLength(254);
    expect(poolAddresses(["2001:db8::/126"])).toHaveLength(4);
  });

  it("capacity beyond the machine's memory is refused with the figure; over half of it is a warning", () => {
    const c = parseConfig({ capacity: { mappings: 1_000_000, subscribers: 200_000, peers: 500_000, filters: 500_000 } });
    const need = tableBytes(c.capacity);
    expect(contradictions(c, 4, 4 * need + 1)).toEqual([]);
    const refused = contradictions(c, 4, 4 * need - 1);
    expect(refused).toHaveLength(1);
    expect(refused[0].path).toEqual(["capacity"]);
    expect(refused[0].message).toMatch(/^the engine tables need about \d+ MiB \(4 workers × \d+ MiB\) but the machine has \d+ MiB$/);
    expect(warnings(c, 4, 3 * need)).toHaveLength(1);
    expect(warnings(c, 4, 16 * need)).toEqual([]);
  });

  it("the estimate matches what initEngine allocates (the heap top moved) within 10 %", () => {
    const grown = (capacity: Record<string, number>) => {
      const c = parseConfig({ capacity, persistence: { enabled: false } });
      const engine = new PacketEngine("release", c);
      const before = engine.exports.heapProbe();
      engine.initEngine(c, 0, { seed: 1n, shard: 0, shards: 1 });
      return { real: engine.exports.heapProbe() - before, estimate: tableBytes(c.capacity) };
    };
    const small = grown({ mappings: 1000, subscribers: 1000, peers: 1000, filters: 1000, descriptions: 1000, realms: 1000 });
    const big = grown({ mappings: 2_000_000, subscribers: 400_000, peers: 1_000_000, filters: 1_000_000, descriptions: 200_000, realms: 100_000 });
    const real = big.real - small.real;
    const estimate = big.estimate - small.estimate;
    console.log(`engine tables: ${(real / 2 ** 20).toFixed(1)} MiB allocated, ${(estimate / 2 ** 20).toFixed(1)} MiB estimated`);
    expect(Math.abs(estimate - real) / real).toBeLessThan(0.1);
  });
});

describe("a reload needs a complete file", () => {
  const dir = tempDir("pcpd-complete");
  const file = join(dir, "pcpd.yaml");
  const start = "listen:\n  addresses: [127.0.0.1]\npool:\n  addresses: [192.0.2.1]\nlifetimes:\n  max: 3600\n";
  writeFileSync(file, start);
  const { sections } = loadFile(file);

  it("empty, comment-only or null: refused", () => {
    for (const text of ["", "\n", "# all gone\n", "~\n", "{}\n"]) {
      writeFileSync(file, text);
      expect(() => loadReload(file, {}, sections)).toThrow(/empty: a reload needs the complete configuration/);
    }
  });

  it("a section the running configuration sets is missing (truncated): refused naming it; written as {} it is accepted", () => {
    writeFileSync(file, "listen:\n  addresses: [127.0.0.1]\npool:\n  addresses: [192.0.2.1]\n");
    expect(() => loadReload(file, {}, sections)).toThrow(
      /lifetimes missing \(the running configuration sets it; a truncated file\?\): write a section as \{\} to return it to its defaults/,
    );
    writeFileSync(file, "listen:\n  addresses: [127.0.0.1]\npool:\n  addresses: [192.0.2.1]\nlifetimes: {}\n");
    expect(loadReload(file, {}, sections).config.lifetimes.max).toBe(86400);
    writeFileSync(file, `${start}natPmp: silent\n`);
    expect(loadReload(file, {}, sections)).toMatchObject({ config: { natPmp: "silent" }, sections: ["listen", "pool", "lifetimes", "natPmp"] });
  });

  it("started without a file: a reload keeps the embedded defaults", () => {
    expect(loadReload(undefined, {}, []).config).toEqual(parseConfig({}));
  });
});

describe("a reload's pool is checked against the running engine before anything is retired", () => {
  const engine = (addresses: string[], retired: string[] = []) =>
    [...addresses, ...retired].map((address) => ({ address, retired: retired.includes(address) }));
  const full = poolAddresses(["192.0.2.0/24", "198.51.100.1", "198.51.100.2"]);

  it("more entries than the address table (retired ones count until a restart): refused", () => {
    expect(poolReloadIssues(engine(full), ["203.0.113.1"], 256)).toEqual([
      expect.stringContaining("the engine's address table would need 257 entries (256 in use"),
    ]);
    expect(poolReloadIssues(engine(full.slice(0, 200), full.slice(200)), ["203.0.113.1"], 256)).toHaveLength(1);
    // A retired address coming back takes no new entry.
    expect(poolReloadIssues(engine(full.slice(0, 200), full.slice(200)), [full[255]], 256)).toEqual([]);
  });

  it("a family served now with no address left (MAP would answer UNSUPP_PROTOCOL): refused", () => {
    expect(poolReloadIssues(engine(["192.0.2.1", "2001:db8::1"]), ["2001:db8::2"], 256)).toEqual([expect.stringContaining("no IPv4 address left")]);
    expect(poolReloadIssues(engine(["192.0.2.1", "2001:db8::1"]), ["192.0.2.2"], 256)).toEqual([expect.stringContaining("no IPv6 address left")]);
    expect(poolReloadIssues(engine(["192.0.2.1"]), ["192.0.2.2", "2001:db8::1"], 256)).toEqual([]);
  });
});
