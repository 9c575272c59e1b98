// The dgram path's receive-queue drops from /proc/net/udp{,6} (src/io/proc-udp.ts): a real
// socket found by its inode and by its address:port alike, on both families, and a real
// overflow — this thread blocked in a child process that sends a burst, so the socket with
// the kernel's smallest receive buffer is not read — counted, at once and off the event
// loop. Ports 25300–25302 (loopback).
import dgram from "node:dgram";
import { execFileSync } from "node:child_process";
import { afterEach, describe, expect, it } from "vitest";
import { procUdpKey, udpDrops, UdpDropsReader } from "../../src/io/proc-udp.js";
import { waitFor } from "../helpers/wait.js";

const open: dgram.Socket[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
});

async function bound(type: "udp4" | "udp6", address: string, port: number): Promise<dgram.Socket> {
  const s = dgram.createSocket({ type, ipv6Only: type === "udp6" });
  s.on("message", () => undefined);
  await new Promise<void>((resolve) => s.bind(port, address, resolve));
  open.push(s);
  return s;
}

describe("receive-queue drops from /proc/net/udp", () => {
  it("finds a socket by its inode, and by its local address:port, on IPv4 and IPv6", async () => {
    for (const [type, address, port] of [
      ["udp4", "127.0.0.1", 25300],
      ["udp6", "::1", 25301],
    ] as const) {
      const key = procUdpKey(await bound(type, address, port));
      expect(key.inode, type).toBeGreaterThan(0);
      expect(key.file).toBe(type === "udp6" ? "/proc/net/udp6" : "/proc/net/udp");
      const byAddress = { ...key, inode: undefined };
      expect(udpDrops([key, byAddress])).toEqual([0, 0]);
      // Another socket's inode on the same port (an fd reused after close) does not match.
      expect(udpDrops([{ ...key, inode: key.inode! + 1 }])).toEqual([undefined]);
    }
  });

  it("a closed socket is not found", async () => {
    const s = await bound("udp4", "127.0.0.1", 25302);
    const key = procUdpKey(s);
    open.splice(open.indexOf(s), 1);
    await new Promise<void>((resolve) => s.close(() => resolve()));
    expect(udpDrops([key, { ...key, inode: undefined }])).toEqual([undefined, undefined]);
  });

  it("counts what the kernel dropped on a full receive queue", async () => {
    const s = await bound("udp4", "127.0.0.1", 25302);
    s.setRecvBufferSize(1); // the kernel's minimum (about 4.6 KiB)
    const key = procUdpKey(s);
    // execFileSync blocks this thread, so nothing reads the socket while the child's 200
    // datagrams of 600 bytes arrive: the queue holds a handful.
    execFileSync(process.execPath, [
      "-e",
      `const s = require("node:dgram").createSocket("udp4"); let n = 0;
       const next = () => (n++ < 200 ? s.send(Buffer.alloc(600), 25302, "127.0.0.1", next) : s.close());
       next();`,
    ]);
    const [byInode, byAddress] = udpDrops([key, { ...key, inode: undefined }]);
    expect(byInode).toBeGreaterThan(100);
    expect(byAddress).toBe(byInode);
    // The scrape-time reader: the first poll has no read finished yet, a later one has the count.
    const reader = new UdpDropsReader([key]);
    expect(reader.poll()).toEqual([undefined]);
    expect(await waitFor(() => reader.poll()[0], { timeout: 5000, interval: 10 })).toBe(byInode);
  });
});
