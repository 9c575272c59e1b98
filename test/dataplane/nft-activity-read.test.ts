// The nftables backend's activity read (src/dataplane/nftables.ts) against the kernel, in a
// network namespace this test makes: each queried element on its own over netlink (the
// addon's nftElements, native/nft_elements.c) answers what a listing of the whole set by nft
// answers — present endpoints with their time left, missing ones 0, IPv4 and IPv6, a
// protocol nft prints by number — and a table that does not exist is an error, not "idle".
// Namespace prefix pnfa-.
import { execFileSync, spawnSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadAddon } from "../../src/io/native.js";

const NS = `pnfa-${process.pid}`;
const root = process.getuid?.() === 0;
const nft = spawnSync("nft", ["--version"]).status === 0;
const addon = loadAddon(process.env, "nftElements");
const why = !root ? "needs root (network namespaces)" : !nft ? "needs nft (scripts/test-deps.sh)" : typeof addon === "string" ? addon : "";

describe.skipIf(why !== "")(`activity read element by element over netlink ${why}`, () => {
  beforeAll(() => {
    execFileSync("ip", ["netns", "add", NS]);
  });
  afterAll(() => {
    spawnSync("ip", ["netns", "del", NS]);
  });

  it("answers as the listing does: time left for the endpoints in the set, 0 for the others; a missing table is an error", () => {
    const child = new URL("./fixtures/activity-read-child.ts", import.meta.url).pathname;
    const r = spawnSync("ip", ["netns", "exec", NS, process.execPath, "--import", "tsx", child], { encoding: "utf8", timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split("\n").at(-1)!) as {
      elements: number[];
      listing: number[];
      manyFound: number;
      manyLength: number;
      noTable: string;
    };
    const timeouts = [100, 0, 50, 30, 0, 20, 0];
    out.elements.forEach((s, i) => {
      if (timeouts[i] === 0) expect(s, `query ${i}`).toBe(0);
      else expect(s, `query ${i}`).toBeGreaterThan(timeouts[i] - 30); // the child ran in well under 30 s
      expect(s, `query ${i}`).toBeLessThanOrEqual(timeouts[i]);
      expect(Math.abs(s - out.listing[i]), `query ${i}: netlink ${s}, listing ${out.listing[i]}`).toBeLessThanOrEqual(1);
    });
    expect([out.manyFound, out.manyLength]).toEqual([1, 5001]);
    expect(out.noTable).toMatch(/reading the ip activity set: nftElements: no such table or set/);
  });
});
