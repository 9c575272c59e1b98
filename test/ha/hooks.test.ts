// The claim and release hooks (src/ha/hooks.ts) run real commands: `ip addr add/del` inside
// a network namespace this test makes (the default the issue names for tests), a command
// that fails (its stderr in the typed error), one that hangs past the timeout, one that
// does not exist.
import { execFileSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hookArgv, runHook, runHookEach } from "../../src/ha/hooks.js";
import { ErrorCodes, HaHookError } from "../../src/errors.js";

const NS = `pmh-hooks-${process.pid}`;
const root = process.getuid?.() === 0;
const inNs = ["ip", "netns", "exec", NS];
const addrs = () => execFileSync("ip", ["-n", NS, "addr", "show", "dev", "lo"], { encoding: "utf8" });

describe("hook argv", () => {
  it("replaces every placeholder, inside arguments too; a host prefix is /32 or /128", () => {
    expect(hookArgv(["x", "{prefix}", "{address}", "g={group},n={node}", "{prefix}"], { address: "192.0.2.7", group: "g1", node: "n1" })).toEqual([
      "x",
      "192.0.2.7/32",
      "192.0.2.7",
      "g=g1,n=n1",
      "192.0.2.7/32",
    ]);
    expect(hookArgv(["{prefix}", "{unknown}"], { address: "2001:db8::7", group: "g", node: "n" })).toEqual(["2001:db8::7/128", "{unknown}"]);
  });
});

describe.skipIf(!root)("hooks (real commands in a network namespace)", () => {
  beforeAll(() => {
    execFileSync("ip", ["netns", "add", NS]);
    execFileSync("ip", ["-n", NS, "link", "set", "lo", "up"]);
  });
  afterAll(() => {
    execFileSync("ip", ["netns", "del", NS]);
  });

  const claim = [...inNs, "ip", "addr", "add", "{prefix}", "dev", "lo"];
  const release = [...inNs, "ip", "addr", "del", "{prefix}", "dev", "lo"];
  const ctx = (address: string) => ({ address, group: "g1", node: "n1" });

  it("claims and releases addresses with ip addr (IPv4 and IPv6)", async () => {
    await runHookEach(claim, [ctx("198.51.100.10"), ctx("2001:db8::10")], 5000, false);
    expect(addrs()).toContain("198.51.100.10/32");
    expect(addrs()).toContain("2001:db8::10/128");
    await runHookEach(release, [ctx("198.51.100.10"), ctx("2001:db8::10")], 5000, true);
    expect(addrs()).not.toContain("198.51.100.10");
    expect(addrs()).not.toContain("2001:db8::10");
  });

  it("a failing command rejects with HA_HOOK_FAILED, its exit status and stderr", async () => {
    const e = await runHook(release, ctx("198.51.100.99"), 5000).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(HaHookError);
    expect((e as HaHookError).code).toBe(ErrorCodes.HA_HOOK_FAILED);
    expect((e as HaHookError).message).toMatch(/exited \d+/);
    expect((e as HaHookError).stderr).toMatch(/Address not found|Cannot assign requested address|RTNETLINK/);
    expect((e as HaHookError).argv).toContain("198.51.100.99/32");
  });

  it("a release of several addresses tries them all and rethrows the first failure", async () => {
    await runHook(claim, ctx("198.51.100.20"), 5000);
    const e = await runHookEach(release, [ctx("198.51.100.98"), ctx("198.51.100.20")], 5000, true).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(HaHookError);
    expect((e as HaHookError).argv).toContain("198.51.100.98/32");
    expect(addrs()).not.toContain("198.51.100.20"); // released despite the first failing
    // A claim stops at the first failure.
    await runHook(claim, ctx("198.51.100.21"), 5000);
    await expect(runHookEach(claim, [ctx("198.51.100.21"), ctx("198.51.100.22")], 5000, false)).rejects.toThrow(HaHookError);
    expect(addrs()).not.toContain("198.51.100.22");
  });

  it("kills a hook that outlives its timeout, and reports a command that cannot be run", async () => {
    const started = performance.now();
    await expect(runHook(["sleep", "5"], ctx("198.51.100.1"), 200)).rejects.toThrow(/did not exit within 200 ms/);
    expect(performance.now() - started).toBeLessThan(4000);
    await expect(runHook(["/nonexistent/pcpd-hook", "{address}"], ctx("198.51.100.1"), 1000)).rejects.toThrow(/could not be run \(ENOENT\)/);
  });

  it("runs nothing for an empty hook", async () => {
    await expect(runHook([], ctx("198.51.100.1"), 100)).resolves.toBeUndefined();
  });
});
