// listen.reusePort and rapid recovery [RFC 6887 §14.1.3, §8.5]: the shards of a reuseport
// group share one address, each with its own Epoch. At the server's first start every
// shard's Epoch starts together and one multicast ANNOUNCE (shard 0's) speaks for all; a
// shard that later loses its table alone — its worker replaced, or the operator's Epoch
// reset — must tell its clients itself (it cannot unicast: the list of its clients is what
// it lost). Real workers in a pio- network namespace, multicast looped back on a veth
// interface. Port 25040.
import { execFileSync, spawnSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chooseIo } from "../../src/io/native.js";

const NS = `pio-a${process.pid}`;
const root = process.getuid?.() === 0;
const ip = spawnSync("ip", ["-V"]).status === 0;
const why = !root ? "needs root (network namespaces)" : !ip ? "needs iproute2 (scripts/test-deps.sh)" : "";

describe.skipIf(why !== "")(`listen.reusePort: each shard's Epoch reset is announced ${why}`, () => {
  beforeAll(() => {
    expect(chooseIo({}).path).toBe("batched");
    execFileSync("ip", ["netns", "add", NS]);
    const inNs = (...args: string[]) => execFileSync("ip", ["-n", NS, ...args]);
    inNs("link", "set", "lo", "up");
    // A veth pair within the namespace: pio0 carries the server's address; its peer is up
    // (so pio0 has a carrier) but takes no multicast, so each ANNOUNCE arrives once (the
    // kernel's loopback copy of the all-nodes group on pio0).
    inNs("link", "add", "pio0", "type", "veth", "peer", "name", "pio1");
    inNs("link", "set", "pio1", "multicast", "off", "up");
    inNs("link", "set", "pio0", "multicast", "on", "up");
    inNs("addr", "add", "10.98.0.1/24", "dev", "pio0");
  });
  afterAll(() => {
    spawnSync("ip", ["netns", "del", NS]);
  });

  it("one ANNOUNCE at the first start; a replaced worker and an operator's reset of shard 1 each announce shard 1's new Epoch", () => {
    const child = new URL("./fixtures/reuseport-announce-child.ts", import.meta.url).pathname;
    const r = spawnSync("ip", ["netns", "exec", NS, process.execPath, "--import", "tsx", child, "25040"], { encoding: "utf8", timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split("\n").at(-1)!) as {
      announces: { phase: string; epoch: number; from: string; port: number }[];
      epochs: Record<string, number[]>;
    };
    // Every copy from the unicast listen address and the server port [§14.1.3].
    for (const a of out.announces) expect(`${a.from}:${a.port}`).toBe("10.98.0.1:25040");
    expect(out.announces.map((a) => a.phase)).toEqual(["start", "replaced", "reset"]);
    // Each later one carries shard 1's new Epoch (its clients see the reset); shard 0 kept counting.
    const [, replaced, reset] = out.announces;
    expect(replaced.epoch).toBeLessThanOrEqual(out.epochs.replaced[1]);
    expect(replaced.epoch).toBeLessThan(out.epochs.replaced[0]);
    expect(reset.epoch).toBeLessThanOrEqual(out.epochs.reset[1]);
    expect(reset.epoch).toBeLessThan(out.epochs.reset[0]);
  });
});
