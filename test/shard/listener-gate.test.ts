// The HA gate at the last moment: the UDP listener reads it again right before every send,
// so a reply whose gate closed after its batch was admitted (a process frozen between the
// check and the send, a check-pointed reply held for the stream) never leaves; a stopped
// listener sends nothing held and never throws (a send on a closed socket used to kill the
// worker: ERR_SOCKET_DGRAM_NOT_RUNNING).
import { afterEach, describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import { UdpListener } from "../../src/io/udp-listener.js";
import { MonotonicClock } from "../../src/core/clock.js";
import { engineConfig, engineFrom } from "../helpers/engine-config.js";
import { checkpointRequired, mapRequest, nonceOf } from "../helpers/packets.js";
import { exchange } from "../helpers/udp.js";
import { waitFor } from "../helpers/wait.js";

const SERVER = "127.0.0.91";
const CLIENT = "127.0.0.92";
const OPEN = 1n << 62n;

function listenerWith(o: { afterBatch?: () => void; durable?: () => Promise<void>; gate?: BigInt64Array; clock?: MonotonicClock }): UdpListener {
  const config = engineConfig({
    listen: { addresses: [SERVER] },
    pcp: { checkpointRequired: true },
    ha: { enabled: true, node: "a", nats: { servers: ["nats://127.0.0.1:1"] }, groups: [{ name: "g", addresses: [SERVER] }] },
  });
  return new UdpListener({
    endpoints: [{ address: SERVER, port: 0 }],
    engine: engineFrom(config, 0, { seed: 1n }),
    clock: o.clock ?? new MonotonicClock(),
    classify: () => W.INGRESS_SUBSCRIBER,
    afterBatch: o.afterBatch,
    durable: o.durable,
    gate: o.gate,
    monotonicNs: () => 1000n,
  });
}

const map = (l: UdpListener, port: number, options = [] as ReturnType<typeof checkpointRequired>[], timeoutMs = 1000) =>
  exchange(
    CLIENT,
    SERVER,
    l.boundAddresses()[0].port,
    mapRequest({ client: CLIENT, protocol: W.PROTO_UDP, internalPort: port, lifetime: 3600, nonce: nonceOf(port) }, options),
    timeoutMs,
  );

describe("UDP listener: the gate read again before every send", () => {
  let listener: UdpListener | undefined;
  afterEach(async () => {
    await listener?.stop();
    listener = undefined;
  });

  it("drops a direct reply whose gate closed between the batch's check and its send", async () => {
    const gate = new BigInt64Array(new SharedArrayBuffer(8));
    Atomics.store(gate, 0, OPEN);
    let closeNext = false;
    // afterBatch runs between serving and sending: where a frozen process would have stopped.
    listener = listenerWith({ gate, afterBatch: () => closeNext && Atomics.store(gate, 0, 0n) });
    await listener.start();
    expect((await map(listener, 80)).reply[3]).toBe(W.RESULT_SUCCESS);
    expect(listener.gateDrops).toBe(0);
    closeNext = true;
    await expect(map(listener, 81, [], 300)).rejects.toThrow(/no reply/);
    expect(listener.gateDrops).toBe(1);
  });

  it("drops a held check-pointed reply whose gate closed while it waited", async () => {
    const gate = new BigInt64Array(new SharedArrayBuffer(8));
    Atomics.store(gate, 0, OPEN);
    let release: () => void = () => undefined;
    let held = 0;
    listener = listenerWith({ gate, durable: () => (held++, new Promise<void>((resolve) => (release = resolve))) });
    await listener.start();
    const reply = map(listener, 90, [checkpointRequired()], 500);
    await waitFor(() => held === 1);
    Atomics.store(gate, 0, 0n); // the lease lapsed while the stream had not acknowledged
    release();
    await expect(reply).rejects.toThrow(/no reply/);
    expect(listener.gateDrops).toBe(1);
    // Open again: a held reply released with the gate open goes out.
    Atomics.store(gate, 0, OPEN);
    const second = map(listener, 91, [checkpointRequired()], 2000);
    await waitFor(() => held === 2);
    release();
    expect((await second).reply[3]).toBe(W.RESULT_SUCCESS);
  });

  it("a held check-pointed reply carries the Epoch of its send, not of its batch (RFC 6887 §8.5)", async () => {
    let ns = 0n;
    const clock = new MonotonicClock(1000, () => ns);
    let release: () => void = () => undefined;
    let held = 0;
    listener = listenerWith({ clock, durable: () => (held++, new Promise<void>((resolve) => (release = resolve))) });
    await listener.start();
    const plain = await map(listener, 96);
    expect(plain.reply.readUInt32BE(W.HDR_EPOCH)).toBe(1000);
    const reply = map(listener, 97, [checkpointRequired()], 2000);
    await waitFor(() => held === 1);
    // The stream acknowledges 6 s later (a leader election): answered meanwhile, the client
    // saw Epoch 1006; the held reply must not go back to 1000 (a reset, to the client).
    ns += 6_000_000_000n;
    expect((await map(listener, 98)).reply.readUInt32BE(W.HDR_EPOCH)).toBe(1006);
    release();
    const late = (await reply).reply;
    expect([late[3], late.readUInt32BE(W.HDR_EPOCH)]).toEqual([W.RESULT_SUCCESS, 1006]);
  });

  it("a stopped listener drops held replies without throwing, even with its gate written open again", async () => {
    const gate = new BigInt64Array(new SharedArrayBuffer(8));
    Atomics.store(gate, 0, OPEN);
    let release: () => void = () => undefined;
    let held = 0;
    const l = listenerWith({ gate, durable: () => (held++, new Promise<void>((resolve) => (release = resolve))) });
    await l.start();
    const reply = map(l, 95, [checkpointRequired()], 500);
    await waitFor(() => held === 1);
    Atomics.store(gate, 0, 0n); // a handover closes the gate…
    await l.stop(); // …and the sockets
    Atomics.store(gate, 0, OPEN); // a late lease renewal writes it open again
    const uncaught: unknown[] = [];
    const onUncaught = (e: unknown) => uncaught.push(e);
    process.on("unhandledRejection", onUncaught);
    process.on("uncaughtException", onUncaught);
    try {
      release();
      await expect(reply).rejects.toThrow(/no reply/);
    } finally {
      process.off("unhandledRejection", onUncaught);
      process.off("uncaughtException", onUncaught);
    }
    expect(uncaught).toEqual([]);
    expect(l.gateDrops).toBe(1);
  });
});

describe("a reply reaches the kernel before send() returns", () => {
  it("resolves literal addresses at once (Node's own lookup defers the send a tick, past the gate's last read)", async () => {
    const { Worker } = await import("node:worker_threads");
    const dgram = await import("node:dgram");
    const { literalLookup } = await import("../../src/io/udp-listener.js");
    // A receiver on another thread stamps the arrival while this thread is kept busy.
    const receiver = new Worker(
      `const { parentPort } = require("node:worker_threads");
       const s = require("node:dgram").createSocket("udp4");
       s.on("message", () => parentPort.postMessage(performance.timeOrigin + performance.now()));
       s.bind(0, "127.0.0.93", () => parentPort.postMessage(s.address().port));`,
      { eval: true },
    );
    const port = await new Promise<number>((resolve) => receiver.once("message", resolve));
    const arrived = new Promise<number>((resolve) => receiver.once("message", resolve));
    const socket = dgram.createSocket({ type: "udp4", lookup: literalLookup });
    await new Promise<void>((resolve) => socket.bind(0, "127.0.0.94", resolve));
    socket.send(Buffer.from("x"), port, "127.0.0.93");
    const busyUntil = performance.timeOrigin + performance.now() + 300;
    while (performance.timeOrigin + performance.now() < busyUntil); // this thread "frozen" right after the call
    expect(await arrived).toBeLessThan(busyUntil);
    socket.close();
    await receiver.terminate();
  });
});
