// The nft scripts the nftables backend writes, pinned byte for byte against golden files
// (test/dataplane/golden/*.nft): the table definitions of both families (with and without
// activity tracking and IPv6 subscriber prefixes) and one transaction that exercises every
// branch of both families' element statements. The scripts are captured from the backend
// itself (its `nft` command replaced by one that writes stdin to a file), so what is pinned
// is exactly what reaches nft. Where nft and network namespaces exist, the kernel applies
// the pinned scripts in a namespace of its own (pdp-gold): the golden files are valid nft;
// and again (plo-noproto) with netbase's /etc/protocols and /etc/services hidden, as on a
// minimal host without netbase: the scripts need no name lookup.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NftablesBackend, type NftOptions } from "../../src/dataplane/nftables.js";
import type { DataplaneOp, Forwarding } from "../../src/dataplane/ops.js";
import { forwarding, forwarding6 } from "../helpers/forwarding.js";
import { tempDir } from "../helpers/temp.js";
import { withoutNetbase } from "../helpers/nat-lab.js";

const GOLDEN = new URL("./golden/", import.meta.url).pathname;
const dir = tempDir("pcpd-nft-scripts");
const NS = "pdp-gold";

/** The scripts a backend with these options hands to nft, in order. */
async function capture(o: Omit<NftOptions, "command">, use: (b: NftablesBackend) => Promise<void>): Promise<string> {
  const file = join(dir, `${o.table}-${Math.random().toString(36).slice(2)}.nft`);
  // `sh -c 'cat >> file' sh -f -`: the backend's arguments land in $1 $2, stdin in the file.
  await use(new NftablesBackend({ ...o, command: ["sh", "-c", `cat >> '${file}'`, "sh"] }));
  return readFileSync(file, "utf8");
}

const v4 = forwarding;
const v6 = forwarding6;
const same6 = { address: "2001:db8:1::3", port: 9090 };

/** Every branch of both families' statements: MAP with and without FILTERs, PEER-only, untranslated IPv6. */
const MAPPINGS: Forwarding[] = [
  v4(),
  v4({
    protocol: 17,
    external: { address: "198.51.100.1", port: 1235 },
    internal: { address: "10.0.0.2", port: 8081 },
    filters: [
      { address: "192.0.2.0", prefixLength: 24, port: 0 },
      { address: "203.0.113.9", prefixLength: 32, port: 443 },
    ],
  }),
  v4({ external: { address: "198.51.100.1", port: 1236 }, internal: { address: "10.0.0.3", port: 5000 }, inbound: false }),
  v6({ filters: [{ address: "2001:db8:2::", prefixLength: 48, port: 443 }] }),
  v6({ protocol: 17, external: same6, internal: same6, filters: [{ address: "2001:db8:3::", prefixLength: 64, port: 0 }] }),
  v6({ external: { address: "2001:db8::100", port: 1240 }, internal: { address: "2001:db8:1::4", port: 7000 }, inbound: false }),
  v6({ external: { address: "2001:db8:1::5", port: 7001 }, internal: { address: "2001:db8:1::5", port: 7001 }, inbound: false }),
];
/** All maps, then all unmaps: applied after a reset, it installs and removes every element again. */
const TRANSACTION: DataplaneOp[] = [
  ...MAPPINGS.map((mapping) => ({ op: "map" as const, mapping })),
  ...MAPPINGS.map((mapping) => ({ op: "unmap" as const, mapping })),
];

const PLAIN: Omit<NftOptions, "command"> = { table: "pcpd" };
const TRACKING: Omit<NftOptions, "command"> = {
  table: "pcpdact",
  subscribers6: ["2001:db8:1::/64", "2001:db8:4::/56"],
  activity: { udpIdle: 120, tcpIdle: 7440 },
};

const golden = (name: string) => readFileSync(join(GOLDEN, name), "utf8");

describe("nft scripts of the nftables backend (golden)", () => {
  it("reset without tracking or IPv6 subscribers", async () => {
    expect(await capture(PLAIN, (b) => b.reset())).toBe(golden("reset-plain.nft"));
  });

  it("reset with activity tracking and IPv6 subscriber prefixes", async () => {
    expect(await capture(TRACKING, (b) => b.reset())).toBe(golden("reset-tracking.nft"));
  });

  it("one transaction mapping and unmapping every kind of mapping of both families", async () => {
    expect(await capture(PLAIN, (b) => b.apply(TRANSACTION))).toBe(golden("transaction.nft"));
  });
});

/** Why the kernel check cannot run here, or undefined once namespace `NS` exists. */
function kernel(NS: string): string | undefined {
  try {
    execFileSync("nft", ["--version"], { stdio: "ignore" });
  } catch {
    return "nft not installed (scripts/test-deps.sh installs nftables when run as root)";
  }
  try {
    execFileSync("ip", ["netns", "del", NS], { stdio: "ignore" }); // left by a run that was killed
  } catch {
    // none: the usual case
  }
  try {
    execFileSync("ip", ["netns", "add", NS], { stdio: ["ignore", "ignore", "pipe"] });
  } catch (e) {
    return `network namespaces unavailable (${(e as Error).message.split("\n")[0]})`;
  }
  return undefined;
}

describe("the golden scripts in the kernel", () => {
  let skip: string | undefined;
  beforeAll(() => {
    skip = kernel(NS);
  });
  afterAll(() => {
    if (!skip) execFileSync("ip", ["netns", "del", NS], { stdio: "ignore" });
  });
  const nft = (script: string) => execFileSync("ip", ["netns", "exec", NS, "nft", "-f", "-"], { input: script, stdio: ["pipe", "pipe", "pipe"] });
  const list = (family: string, table: string) =>
    execFileSync("ip", ["netns", "exec", NS, "nft", "list", "table", family, table], { stdio: ["ignore", "pipe", "pipe"] }).toString();

  it("nft applies both resets and the transaction, which leaves the tables empty again", (ctx) => {
    if (skip) return ctx.skip(skip);
    for (const name of ["reset-plain.nft", "reset-tracking.nft"]) nft(golden(name));
    const before = list("ip", "pcpd") + list("ip6", "pcpd");
    nft(golden("transaction.nft"));
    expect(list("ip", "pcpd") + list("ip6", "pcpd")).toBe(before);
    expect(list("ip6", "pcpdact")).toContain("2001:db8:4::/56");
  });

  it("the elements of the transaction's maps are accepted on their own", (ctx) => {
    if (skip) return ctx.skip(skip);
    const maps = golden("transaction.nft")
      .split("\n")
      .filter((l) => l.startsWith("add "));
    nft(`${maps.join("\n")}\n`);
    expect(list("ip", "pcpd")).toContain("10.0.0.3 . 5000 : 198.51.100.1 . 1236");
    expect(list("ip6", "pcpd")).toContain("2001:db8:1::2 . 8080 . 2001:db8:2::/48 . 443");
  });
});

describe("the golden scripts on a host without netbase (no /etc/protocols, /etc/services)", () => {
  const NS = "plo-noproto";
  const empty = join(dir, "empty");
  let skip: string | undefined;
  beforeAll(() => {
    skip = kernel(NS);
  });
  afterAll(() => {
    if (!skip) execFileSync("ip", ["netns", "del", NS], { stdio: "ignore" });
  });
  /** nft in namespace NS as on a host without netbase. */
  const bare = (args: string[], input?: string) => {
    const [command, ...rest] = withoutNetbase(empty, ["ip", "netns", "exec", NS, "nft", ...args]);
    return execFileSync(command, rest, { input, stdio: ["pipe", "pipe", "pipe"] }).toString();
  };

  it("nft there cannot resolve a protocol name: the hiding works", (ctx) => {
    if (skip) return ctx.skip(skip);
    const named = "table ip6 probe {\n  chain c {\n    meta l4proto ipv6-icmp accept\n  }\n}\n";
    expect(() => bare(["-f", "-"], named)).toThrow(/Could not resolve protocol name/);
    expect(readFileSync("/etc/protocols", "utf8")).toMatch(/ipv6-icmp/); // the host's own file, untouched
  });

  it("nft there applies both resets and the transaction: the rules carry protocol numbers", (ctx) => {
    if (skip) return ctx.skip(skip);
    for (const name of ["reset-plain.nft", "reset-tracking.nft", "transaction.nft"]) bare(["-f", "-"], golden(name));
    const tracking = bare(["list", "table", "ip6", "pcpdact"]);
    expect(tracking).toContain("meta l4proto 58 accept");
    expect(tracking).toContain("meta l4proto != 6 meta l4proto . ip6 saddr . th sport @mapped update @active");
    expect(bare(["list", "table", "ip", "pcpd"])).toContain("dnat ip to meta l4proto . ip daddr . th dport map @inbound");
  });
});
