// The batched UDP addon (native/udp_batch.c) on real sockets: one recvmmsg fills many slots
// (payload, real length, source, port, destination), one sendmmsg answers the slots marked
// as replies, SO_RCVBUF is applied, a SO_REUSEPORT group steers each source address always
// to the member steerIndex() names, and a listener keeps serving after the engine's memory
// grew (the old buffer detached); a busy socket leaves its epoll set while drained and
// comes back; a listener classifies each source address once until its policy changes.
// Ports 25000–25019.
import dgram from "node:dgram";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import { chooseIo, nativeStats, steerIndex, type NativeAddon, type NativeSocket } from "../../src/io/native.js";
import { toAddress16 } from "../../src/net/address.js";
import { UdpListener } from "../../src/io/udp-listener.js";
import { MonotonicClock } from "../../src/core/clock.js";
import { engineConfig, engineFrom } from "../helpers/engine-config.js";
import { announceRequest } from "../helpers/packets.js";
import { exchange } from "../helpers/udp.js";
import { waitFor } from "../helpers/wait.js";

const io = chooseIo({});
const addon = io.addon as NativeAddon;
const open: NativeSocket[] = [];
const clients: dgram.Socket[] = [];

beforeAll(() => {
  // CI builds it (npm ci, scripts/test-deps.sh): not loading here is a failure, not a skip.
  expect(io.path, io.reason).toBe("batched");
});

afterEach(() => {
  for (const s of open.splice(0)) addon.close(s);
  for (const c of clients.splice(0)) c.close();
});

function socket(address: string, port: number, rcvbuf = 0, reuse = false): NativeSocket {
  const s = addon.open(address, port, rcvbuf, reuse);
  open.push(s);
  return s;
}

async function client(address: string): Promise<dgram.Socket> {
  const c = dgram.createSocket(address.includes(":") ? "udp6" : "udp4");
  clients.push(c);
  await new Promise<void>((resolve) => c.bind(0, address, resolve));
  return c;
}

const slotAt = (i: number) => i * W.SLOT_SIZE;
const u16 = (m: Uint8Array, at: number) => m[at] | (m[at + 1] << 8);

/** Receives until `want` datagrams are in (bounded by a deadline), in calls of up to `batch`. */
async function receive(s: NativeSocket, memory: Uint8Array, want: number, batch = W.SLOT_COUNT): Promise<number> {
  let got = 0;
  await waitFor(
    async () => {
      got += addon.recv(s, memory, slotAt(got), Math.min(batch, want - got));
      return got >= want ? true : undefined;
    },
    { timeout: 5000, interval: 5 },
  );
  return got;
}

describe("batched UDP addon", () => {
  it("one recvmmsg fills up to a batch of slots: payload, real length, source, port, destination", async () => {
    const s = socket("127.0.0.1", 25000, 1 << 20);
    const c = await client("127.0.0.1");
    const cport = c.address().port;
    // On loopback a datagram is in the receiver's queue when its send completed: all 300
    // are queued before the first call, which then takes a full batch.
    await Promise.all(
      Array.from({ length: 300 }, (_, i) => new Promise<void>((resolve) => c.send(Uint8Array.of(i & 0xff, i >> 8, 7, 7), 25000, "127.0.0.1", () => resolve()))),
    );
    const memory = new Uint8Array(W.SLOT_SIZE * W.SLOT_COUNT);
    const before = nativeStats(addon, s).recvCalls;
    const n = addon.recv(s, memory, 0, W.SLOT_COUNT);
    expect(n).toBe(W.SLOT_COUNT);
    expect(nativeStats(addon, s).recvCalls - before).toBe(1);
    for (let i = 0; i < n; i++) {
      const at = slotAt(i);
      expect(u16(memory, at + W.SLOT_WIRE_LEN)).toBe(4);
      expect(Array.from(memory.subarray(at + W.SLOT_DATA, at + W.SLOT_DATA + 4))).toEqual([i & 0xff, i >> 8, 7, 7]);
      expect(memory.subarray(at + W.SLOT_SRC_ADDR, at + W.SLOT_SRC_ADDR + 16)).toEqual(toAddress16("127.0.0.1"));
      expect(memory.subarray(at + W.SLOT_DST_ADDR, at + W.SLOT_DST_ADDR + 16)).toEqual(toAddress16("127.0.0.1"));
      expect(u16(memory, at + W.SLOT_SRC_PORT)).toBe(cport);
    }
    expect(addon.recv(s, memory, 0, W.SLOT_COUNT)).toBe(44);
    expect(addon.recv(s, memory, 0, W.SLOT_COUNT)).toBe(0); // empty: no error, no wait
  });

  it("keeps the real length of a datagram longer than a slot (cut at SLOT_DATA_CAP)", async () => {
    const s = socket("127.0.0.1", 25001);
    const c = await client("127.0.0.1");
    c.send(new Uint8Array(1500).fill(9), 25001, "127.0.0.1");
    const memory = new Uint8Array(W.SLOT_SIZE * 2);
    await receive(s, memory, 1);
    expect(u16(memory, W.SLOT_WIRE_LEN)).toBe(1500);
    expect(memory[W.SLOT_DATA + W.SLOT_DATA_CAP - 1]).toBe(9);
    expect(nativeStats(addon, s).truncated).toBe(1);
  });

  it("one sendmmsg answers exactly the slots whose verdict is a reply, to their sources", async () => {
    const s = socket("127.0.0.1", 25002);
    const c = await client("127.0.0.1");
    const replies: number[] = [];
    c.on("message", (m) => replies.push(m[0]));
    for (let i = 0; i < 10; i++) c.send(Uint8Array.of(i, 0, 0), 25002, "127.0.0.1");
    const memory = new Uint8Array(W.SLOT_SIZE * 10);
    expect(await receive(s, memory, 10)).toBe(10);
    for (let i = 0; i < 10; i++) {
      memory[slotAt(i) + W.SLOT_VERDICT] = i % 2 === 0 ? W.VERDICT_REPLY : W.VERDICT_DROP;
      memory[slotAt(i) + W.SLOT_RESP_LEN] = 3;
      memory[slotAt(i) + W.SLOT_RESP_LEN + 1] = 0;
    }
    expect(addon.send(s, memory, 0, 10)).toBe(5);
    await waitFor(async () => (replies.length === 5 ? true : undefined), { timeout: 5000 });
    expect(replies.sort()).toEqual([0, 2, 4, 6, 8]);
    expect(nativeStats(addon, s).sent).toBe(5);
  });

  it("counts a send the kernel refuses by its errno class, and returns the errno (no throw)", () => {
    const s = socket("127.0.0.1", 25008);
    const EMSGSIZE = 90;
    expect(addon.sendTo(s, new Uint8Array(70_000), "127.0.0.1", 25009)).toBe(EMSGSIZE); // over the 65,507-byte UDP limit
    expect(nativeStats(addon, s)).toMatchObject({ sent: 0, "unsent.EMSGSIZE": 1, "unsent.EAGAIN": 0, "unsent.other": 0 });
    expect(() => addon.sendTo(s, new Uint8Array(4), "127.0.0.1", 25009, new Uint8Array(3))).toThrow(/16-byte/);
  });

  it("refuses a slot area outside the buffer instead of writing past it", () => {
    const s = socket("127.0.0.1", 25003);
    expect(() => addon.recv(s, new Uint8Array(W.SLOT_SIZE), 0, 2)).toThrow(/outside the buffer/);
    expect(() => addon.send(s, new Uint8Array(W.SLOT_SIZE), W.SLOT_SIZE, 1)).toThrow(/outside the buffer/);
  });

  it("applies SO_RCVBUF (Linux keeps twice the bytes asked, up to net.core.rmem_max)", () => {
    const max = Number(readFileSync("/proc/sys/net/core/rmem_max", "utf8"));
    const asked = Math.min(256 * 1024, max);
    const s = socket("127.0.0.1", 25004, asked);
    expect(addon.rcvbuf(s)).toBe(asked * 2);
    const plain = socket("127.0.0.1", 25005);
    expect(addon.rcvbuf(plain)).not.toBe(asked * 2);
  });

  it("a SO_REUSEPORT group steers each source address always to the member steerIndex() names", async () => {
    const members = [0, 1, 2].map(() => socket("127.0.0.1", 25006, 0, true));
    addon.steer(members[0], members.length);
    const sources = Array.from({ length: 24 }, (_, i) => `127.0.${i % 3}.${10 + i}`);
    for (const from of sources) {
      const c = await client(from);
      for (let k = 0; k < 3; k++) c.send(Uint8Array.of(k), 25006, "127.0.0.1");
    }
    const memories = members.map(() => new Uint8Array(W.SLOT_SIZE * W.SLOT_COUNT));
    const counts = [0, 0, 0];
    await waitFor(
      async () => {
        members.forEach((m, i) => {
          counts[i] += addon.recv(m, memories[i], slotAt(counts[i]), W.SLOT_COUNT - counts[i]);
        });
        return counts.reduce((a, b) => a + b) === sources.length * 3 ? true : undefined;
      },
      { timeout: 5000, interval: 5 },
    );
    const seenAt = new Map<string, Set<number>>();
    members.forEach((_, m) => {
      for (let i = 0; i < counts[m]; i++) {
        const src = memories[m].subarray(slotAt(i) + W.SLOT_SRC_ADDR, slotAt(i) + W.SLOT_SRC_ADDR + 16);
        const text = `127.${src[13]}.${src[14]}.${src[15]}`;
        expect(steerIndex(src, members.length), text).toBe(m);
        seenAt.set(text, (seenAt.get(text) ?? new Set()).add(m));
      }
    });
    expect(seenAt.size).toBe(sources.length);
    for (const members of seenAt.values()) expect(members.size).toBe(1);
    expect(counts.every((n) => n > 0)).toBe(true); // the hash spreads them
  });

  it("a busy socket leaves its epoll set while it is drained and is back in it after: later datagrams still raise readable", async () => {
    const s = socket("127.0.0.1", 25008, 1 << 20);
    const fd = addon.fd(s);
    // Whether any epoll set of this process watches the socket (fdinfo lists a set's "tfd:").
    const watched = () =>
      readdirSync("/proc/self/fd").some((f) => {
        try {
          if (readlinkSync(`/proc/self/fd/${f}`) !== "anon_inode:[eventpoll]") return false;
          return new RegExp(`^tfd:\\s+${fd}\\s`, "m").test(readFileSync(`/proc/self/fdinfo/${f}`, "utf8"));
        } catch {
          return false; // closed meanwhile
        }
      });
    const c = await client("127.0.0.1");
    await Promise.all(
      Array.from({ length: 300 }, () => new Promise<void>((resolve) => c.send(Uint8Array.of(1, 2, 3, 4), 25008, "127.0.0.1", () => resolve()))),
    );
    const memory = new Uint8Array(W.SLOT_SIZE * W.SLOT_COUNT);
    let got = 0;
    let events = 0;
    let outDuringBusyDrain: boolean | undefined;
    addon.start(s, () => {
      events++;
      for (let n; (n = addon.recv(s, memory, 0, W.SLOT_COUNT)) > 0; ) {
        got += n;
        if (n >= 32) outDuringBusyDrain ??= !watched();
      }
    });
    expect(watched()).toBe(true); // idle: in the set
    await waitFor(() => (got >= 300 ? true : undefined), { timeout: 5000 });
    expect(outDuringBusyDrain).toBe(true);
    expect(watched()).toBe(true); // back after the drain
    c.send(Uint8Array.of(9), 25008, "127.0.0.1");
    await waitFor(() => (got === 301 ? true : undefined), { timeout: 5000 });
    // Level-triggered on an empty socket raises nothing: fifty turns of the loop, no event.
    const seen = events;
    for (let i = 0; i < 50; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(events).toBe(seen);
  });

  it("classifies each source address once (cached), and again after a policy swap", async () => {
    const engine = engineFrom(engineConfig(), 0, { seed: 1n }, "release");
    const seen = new Map<string, number>();
    const counting = (source: string) => {
      seen.set(source, (seen.get(source) ?? 0) + 1);
      return W.INGRESS_SUBSCRIBER;
    };
    const listener = new UdpListener({ endpoints: [{ address: "127.0.0.1", port: 25009 }], engine, clock: new MonotonicClock(), classify: counting, io });
    await listener.start();
    const sources = Array.from({ length: 40 }, (_, i) => `127.0.${i >> 3}.${10 + (i & 7)}`);
    const round = async () => {
      for (const from of sources) {
        const { reply } = await exchange(from, "127.0.0.1", 25009, announceRequest({ client: from }));
        expect(reply[3]).toBe(W.RESULT_SUCCESS);
      }
    };
    try {
      await round();
      await round();
      await round();
      expect([...seen.keys()].sort()).toEqual([...sources].sort());
      expect([...seen.values()].every((n) => n === 1)).toBe(true);
      seen.clear();
      listener.setPolicy({ classify: counting, limiter: undefined });
      await round();
      await round();
      expect(seen.size).toBe(sources.length);
      expect([...seen.values()].every((n) => n === 1)).toBe(true);
    } finally {
      await listener.stop();
    }
  });

  it("a listener keeps serving after the engine's memory grew (the old buffer detached)", async () => {
    const engine = engineFrom(engineConfig(), 0, { seed: 1n }, "release");
    const listener = new UdpListener({
      endpoints: [{ address: "127.0.0.1", port: 25007 }],
      engine,
      clock: new MonotonicClock(),
      classify: () => W.INGRESS_SUBSCRIBER,
      io,
    });
    await listener.start();
    try {
      expect(listener.path).toBe("batched");
      const first = await exchange("127.0.0.1", "127.0.0.1", 25007, announceRequest({ client: "127.0.0.1" }));
      expect(first.reply[3]).toBe(W.RESULT_SUCCESS);
      const old = engine.exports.memory.buffer;
      engine.exports.memory.grow(64);
      expect(old.byteLength).toBe(0); // detached
      const second = await exchange("127.0.0.1", "127.0.0.1", 25007, announceRequest({ client: "127.0.0.1" }));
      expect(second.reply[3]).toBe(W.RESULT_SUCCESS);
      expect(second.source).toBe("127.0.0.1");
    } finally {
      await listener.stop();
    }
  });
});
