import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import { configIssues } from "../helpers/config-issues.js";
import { loadConfig } from "../../src/config/load.js";
import { parseConfig, poolAddresses, workerCount } from "../../src/config/schema.js";
import { classifier } from "../../src/config/policy.js";
import { encodeConfig } from "../../src/config/region.js";
import { expandPrefix, parsePrefix, prefixContains } from "../../src/net/cidr.js";
import { toAddress16 } from "../../src/net/address.js";
import { tempDir } from "../helpers/temp.js";

const issues = configIssues;

describe("configuration", () => {
  it("an empty document is the safe embedded default: loopback, documentation-range pool", () => {
    const c = parseConfig({});
    expect(c.listen).toEqual({ addresses: ["127.0.0.1", "::1"], port: 5351, receiveBuffer: 4 * 1024 * 1024, reusePort: false });
    // 203.0.113.0/28 without its network and broadcast addresses.
    expect(poolAddresses(c.pool.addresses)).toHaveLength(14);
    expect(poolAddresses(c.pool.addresses)[0]).toBe("203.0.113.1");
    const region = new DataView(encodeConfig(c, { seed: 1n }).buffer);
    expect([W.CFG_MIN_LIFETIME, W.CFG_MAX_LIFETIME, W.CFG_HOLD_DOWN].map((at) => region.getUint32(at, true))).toEqual([120, 86400, 120]);
    expect(region.getUint8(W.CFG_NONCE_POLICY)).toBe(W.NONCE_STRICT);
    expect(c.announce).toEqual({ multicast: [], count: 10, firstGapMs: 250 });
  });

  it("one worker per listen address by default, up to the CPU count", () => {
    const c = parseConfig({ listen: { addresses: ["127.0.0.1", "127.0.0.2", "::1"] } });
    expect(workerCount(c, 2)).toBe(2);
    expect(workerCount(c, 8)).toBe(3);
    expect(workerCount({ ...c, workers: 1 }, 8)).toBe(1);
  });

  it.each([
    [{ pool: { blockSize: 1 } }, "pool.blockSize"],
    [{ listen: { port: 70000 } }, "listen.port"],
    [{ listen: { addresses: ["localhost"] } }, "listen.addresses.0: must be an IPv4 or IPv6 address"],
    [{ subscribers: ["10.0.0.0/33"] }, "subscribers.0"],
    [{ lifetimes: { min: 600, max: 300 } }, "lifetimes.max: must be ≥ lifetimes.min"],
    [{ noncePolicy: "sometimes" }, "noncePolicy"],
    [{ workers: 3 }, "workers: 3 workers need at least 3 listen addresses"],
    [{ listen: { addresses: ["127.0.0.1", "127.0.0.1"] } }, "listen.addresses: duplicate address"],
    [{ announce: { count: 11 } }, "announce.count"],
    [{ announce: { firstGapMs: 100 } }, "announce.firstGapMs"],
    [{ pool: { addresses: ["10.0.0.0/16"] } }, "pool.addresses: 10.0.0.0/16 holds 65534 usable addresses, but the engine's address table holds 256"],
    [{ pool: { addresses: ["192.0.2.0/31", "192.0.2.1"] } }, "pool.addresses: pool addresses overlap"],
    [{ colour: "blue" }, "(document)"],
    [{ capacity: { mappings: "many" } }, "capacity.mappings"],
  ])("rejects %j naming the field", (document, field) => {
    const found = issues(document);
    expect(found.length).toBeGreaterThan(0);
    expect(found.join("\n")).toContain(field);
  });

  it("reads YAML and JSON files; command-line overrides win; unreadable or broken files are named", () => {
    const dir = tempDir("pcpd");
    writeFileSync(join(dir, "a.yaml"), "listen:\n  port: 6000\nnoncePolicy: relaxed\n");
    writeFileSync(join(dir, "b.json"), JSON.stringify({ pool: { addresses: ["198.51.100.7"] } }));
    writeFileSync(join(dir, "bad.yaml"), "listen: [\n");
    expect(loadConfig(join(dir, "a.yaml"))).toMatchObject({ listen: { port: 6000 }, noncePolicy: "relaxed" });
    expect(loadConfig(join(dir, "a.yaml"), { port: 7000, listen: ["127.0.0.9"] }).listen).toEqual({
      addresses: ["127.0.0.9"],
      port: 7000,
      receiveBuffer: 4 * 1024 * 1024,
      reusePort: false,
    });
    expect(loadConfig(join(dir, "b.json")).pool.addresses).toEqual(["198.51.100.7"]);
    expect(() => loadConfig(join(dir, "bad.yaml"))).toThrow(/bad\.yaml: not valid YAML/);
    expect(() => loadConfig(join(dir, "missing.yaml"))).toThrow(/missing\.yaml: cannot read \(ENOENT\)/);
  });

  it("classifies sources by the subscriber and third-party prefixes", () => {
    const classify = classifier(parseConfig({ subscribers: ["10.0.0.0/8", "2001:db8::/32"], thirdPartySources: ["192.0.2.10"] }));
    expect(classify("10.1.2.3")).toBe(W.INGRESS_SUBSCRIBER);
    expect(classify("2001:db8:1::5")).toBe(W.INGRESS_SUBSCRIBER);
    expect(classify("192.0.2.10")).toBe(W.INGRESS_THIRD_PARTY);
    expect(classify("192.0.2.11")).toBe(0);
    expect(classify("11.0.0.1")).toBe(0);
  });

  it("prefixes: containment and expansion", () => {
    expect(prefixContains(parsePrefix("198.51.100.0/24"), toAddress16("198.51.100.77"))).toBe(true);
    expect(prefixContains(parsePrefix("198.51.100.0/24"), toAddress16("198.51.101.1"))).toBe(false);
    expect(prefixContains(parsePrefix("::/0"), toAddress16("2001:db8::1"))).toBe(true);
    expect(expandPrefix(parsePrefix("192.0.2.254/31"), 8)).toEqual(["192.0.2.254", "192.0.2.255"]);
    expect(expandPrefix(parsePrefix("2001:db8::fe/127"), 8)).toEqual(["2001:db8::fe", "2001:db8::ff"]);
    expect(() => parsePrefix("10.0.0.0/8/8")).toThrow(TypeError);
  });
});
