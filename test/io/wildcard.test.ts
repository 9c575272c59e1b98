// IP_PKTINFO on the batched path: a listener on the wildcard addresses answers every request
// from the address it was sent to (RFC 6887 §14.1.3, RFC 7723 §2.2: a secondary or anycast
// address), inside a network namespace holding three IPv4 and two IPv6 addresses.
// Namespace prefix pio-, ports 25010–25011.
import { execFileSync, spawnSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import { chooseIo } from "../../src/io/native.js";

const NS = `pio-${process.pid}`;
const root = process.getuid?.() === 0;
const ip = spawnSync("ip", ["-V"]).status === 0;
const why = !root ? "needs root (network namespaces)" : !ip ? "needs iproute2 (scripts/test-deps.sh)" : "";

describe.skipIf(why !== "")(`wildcard socket answers from the address asked ${why}`, () => {
  beforeAll(() => {
    expect(chooseIo({}).path).toBe("batched");
    execFileSync("ip", ["netns", "add", NS]);
    const inNs = (...args: string[]) => execFileSync("ip", ["-n", NS, ...args]);
    inNs("link", "set", "lo", "up");
    for (const a of ["10.99.0.1/32", "10.99.0.2/32", "10.99.0.3/32"]) inNs("addr", "add", a, "dev", "lo");
    for (const a of ["fd99::1/128", "fd99::2/128"]) inNs("addr", "add", a, "dev", "lo", "nodad");
  });
  afterAll(() => {
    spawnSync("ip", ["netns", "del", NS]);
  });

  const run = (env: NodeJS.ProcessEnv = {}) => {
    const child = new URL("./fixtures/wildcard-child.ts", import.meta.url).pathname;
    const r = spawnSync("ip", ["netns", "exec", NS, process.execPath, "--import", "tsx", child, "25010"], {
      encoding: "utf8",
      timeout: 60_000,
      env: { ...process.env, ...env },
    });
    expect(r.status, r.stderr).toBe(0);
    return JSON.parse(r.stdout.trim().split("\n").at(-1)!);
  };

  it("every reply, IPv4 and IPv6, ANNOUNCE and MAP, leaves from the address its request was sent to", () => {
    const out = run();
    expect(out.path).toBe("batched");
    expect(out.replies).toHaveLength(10);
    for (const reply of out.replies) {
      expect(reply.source, `${reply.from} → ${reply.to}`).toBe(reply.to);
      expect(reply.result).toBe(W.RESULT_SUCCESS);
    }
  });

  it("replies that leave one by one (RFC 7652: AUTHENTICATION_REQUIRED, then the PA-Server message) leave from the address asked too", () => {
    const out = run();
    const expected = (from: string, to: string) => [
      { from, to, source: to, opcode: W.OP_MAP, result: W.RESULT_AUTHENTICATION_REQUIRED },
      { from, to, source: to, opcode: W.OP_AUTHENTICATION, result: W.RESULT_AUTHENTICATION_REQUEST },
    ];
    expect(out.auth).toEqual([...expected("10.99.0.1", "10.99.0.2"), ...expected("fd99::1", "fd99::2")]);
  });

  it("(the control: Node's dgram socket on the wildcard lets the kernel pick, and some replies come from another address)", () => {
    const out = run({ PCPD_IO: "dgram" });
    expect(out.path).toBe("dgram");
    expect(out.replies.filter((r: { source: string; to: string }) => r.source !== r.to).length).toBeGreaterThan(0);
    expect(out.auth.filter((r: { source: string; to: string }) => r.source !== r.to).length).toBeGreaterThan(0);
  });
});
