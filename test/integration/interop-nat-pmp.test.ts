// Interop with the npm NAT-PMP client `nat-pmp` 1.0.0 (TooTallNate/node-nat-pmp), run
// unmodified against a real server on 127.0.0.11:5351.
//
// How that client works (node_modules/nat-pmp/index.js):
// - `connect(gateway)` takes the gateway address only; requests always go to port 5351, and
//   the client's own socket is bound to port 5350 on every interface (0.0.0.0:5350), so the
//   kernel picks the source address (127.0.0.1 for 127.0.0.11 on Linux loopback).
// - One request at a time, never retransmitted; a reply is matched to the pending request
//   by opcode only (128 + request opcode), and its source is not checked.
// - It asserts that a success reply is exactly 12 bytes (address) or 16 bytes (map); a
//   longer or shorter reply throws from its socket's message handler. The harness below
//   wraps that handler so such a throw fails the pending call with the reply's bytes.
// - `portMapping({ type, private, public, ttl })`: type defaults to tcp, ttl to 7200 when
//   omitted. `portUnmapping(opts)` only forces ttl = 0, so the delete keeps a non-zero
//   suggested external port (RFC 6886 §3.4 says it MUST be 0 and the gateway MUST ignore it).
// - Error replies (result ≠ 0) reach the callback as an Error whose `code` is the result.
//
// Every value the client reports is asserted, and cross-checked with NAT-PMP and PCP requests
// of our own from the same source address (the mapping's internal address).
import dgram from "node:dgram";
import type { EventEmitter } from "node:events";
import { createRequire } from "node:module";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pino } from "pino";
import * as W from "../../src/wire.generated.js";
import { parseConfig } from "../../src/config/schema.js";
import { startServer, type RunningServer } from "../../src/server/server.js";
import { assigned, mapRequest, natPmpMap, u16, u32 } from "../helpers/packets.js";

const ADDRESS = "127.0.0.11"; // this file's own loopback address (others are used in parallel)
const POOL = "198.51.100.20"; // a one-address pool, so "the pool address" is exact
const MAX_LIFETIME = 86400;
const TIMEOUT_MS = 3000;

// ---- the client library, typed as far as this test uses it ----
interface ClientReply {
  msg: Buffer;
  vers: number;
  op: number;
  resultCode: number;
  resultMessage?: string;
  epoch: number;
  ip?: number[];
  private?: number;
  internal?: number;
  public?: number;
  external?: number;
  ttl?: number;
  type?: string;
}
type Callback = (err: (Error & { code?: number }) | null, reply?: ClientReply) => void;
interface MapOptions {
  type?: "tcp" | "udp";
  private: number;
  public?: number;
  ttl?: number;
}
interface NatPmpClient extends EventEmitter {
  onmessage(msg: Buffer, rinfo: dgram.RemoteInfo): void;
  externalIp(cb: Callback): void;
  portMapping(opts: MapOptions, cb: Callback): void;
  portUnmapping(opts: MapOptions, cb: Callback): void;
  close(): void;
}
const natPmp = createRequire(import.meta.url)("nat-pmp") as {
  connect(gateway: string): NatPmpClient;
  CLIENT_PORT: number;
  SERVER_PORT: number;
};

/** The library's client, with its replies recorded and its failures routed to the pending call. */
class Harness {
  readonly client: NatPmpClient;
  readonly replies: { msg: Buffer; from: dgram.RemoteInfo }[] = [];
  private fail?: (e: Error) => void;

  constructor(gateway: string) {
    this.client = natPmp.connect(gateway);
    const parse = this.client.onmessage; // the client dispatches socket events to this.on<event>
    this.client.onmessage = (msg, rinfo) => {
      this.replies.push({ msg: Buffer.from(msg), from: rinfo });
      try {
        parse.call(this.client, msg, rinfo);
      } catch (e) {
        this.fail?.(new Error(`nat-pmp client rejected the reply ${msg.toString("hex")} from ${rinfo.address}:${rinfo.port}: ${(e as Error).message}`));
      }
    };
    this.client.on("error", (e: Error) => this.fail?.(e));
  }

  listening(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.client.once("listening", () => resolve());
      this.fail = (e) => reject(new Error(`nat-pmp client could not bind 0.0.0.0:${natPmp.CLIENT_PORT}: ${e.message}`));
    });
  }

  /** Runs one client call; rejects on an error reply, a reply the client throws on, or silence. */
  call(what: string, start: (cb: Callback) => void): Promise<ClientReply> {
    return new Promise((resolve, reject) => {
      const done = (err: Error | null, reply?: ClientReply) => {
        clearTimeout(timer);
        this.fail = undefined;
        if (err) reject(new Error(`nat-pmp ${what}: ${err.message}${"code" in err ? ` (result ${err.code})` : ""}`));
        else resolve(reply!);
      };
      const timer = setTimeout(() => done(new Error(`no answer within ${TIMEOUT_MS} ms (the client never retransmits)`)), TIMEOUT_MS);
      this.fail = (e) => done(e);
      start((err, reply) => done(err, reply));
    });
  }

  lastFrom(): dgram.RemoteInfo | undefined {
    return this.replies.at(-1)?.from;
  }
}

// ---- our own requests, from the client's source address ----
/** The source address the kernel gives a datagram to `to` from an unbound socket (as the client's). */
async function sourceFor(to: string): Promise<string> {
  const probe = dgram.createSocket("udp4");
  try {
    await new Promise<void>((resolve, reject) => {
      probe.once("error", reject);
      probe.connect(W.PCP_SERVER_PORT, to, () => resolve());
    });
    return probe.address().address;
  } finally {
    probe.close();
  }
}

function exchange(from: string, payload: Uint8Array): Promise<Buffer> {
  const socket = dgram.createSocket("udp4");
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.close();
      reject(new Error(`no reply from ${ADDRESS}:${W.PCP_SERVER_PORT} to ${Buffer.from(payload).toString("hex")}`));
    }, TIMEOUT_MS);
    socket.on("message", (reply) => {
      clearTimeout(timer);
      socket.close();
      resolve(reply);
    });
    socket.bind(0, from, () => socket.send(payload, W.PCP_SERVER_PORT, ADDRESS));
  });
}

const ipv4At = (b: Uint8Array, at: number) => Array.from(b.subarray(at, at + 4)).join(".");
const nonce = (n: number) => Array.from({ length: 12 }, (_, i) => (n * 29 + i + 1) & 0xff);
const ZERO_NONCE = Array<number>(12).fill(0);

describe("interop: npm nat-pmp 1.0.0 client", () => {
  let server: RunningServer;
  let h: Harness;
  let source = ""; // the mapping's internal address: where the client's datagrams come from
  let startedAt = 0;
  const epochs: { what: string; epoch: number }[] = [];
  /** Records the epoch of a NAT-PMP reply (client-parsed or raw) for the ordering check. */
  const epochOf = (what: string, epoch: number) => epochs.push({ what, epoch });

  beforeAll(async () => {
    startedAt = Date.now();
    server = await startServer(
      parseConfig({
        listen: { addresses: [ADDRESS], port: W.PCP_SERVER_PORT },
        pool: { addresses: [POOL] },
        noncePolicy: "strict",
        lifetimes: { min: 120, max: MAX_LIFETIME, holdDown: 120 },
        log: { level: "silent" },
        persistence: { enabled: false },
      }),
      pino({ level: "silent" }),
    );
    source = await sourceFor(ADDRESS);
    h = new Harness(ADDRESS);
    await h.listening();
  });

  afterAll(async () => {
    h?.client.close();
    await server?.stop();
  });

  it("talks to the server on the gateway address and port 5351", () => {
    expect(natPmp.SERVER_PORT).toBe(W.PCP_SERVER_PORT);
    expect(server.addresses).toEqual([{ address: ADDRESS, port: W.PCP_SERVER_PORT }]);
  });

  it("externalIp() reports the pool address", async () => {
    const r = await h.call("externalIp", (cb) => h.client.externalIp(cb));
    expect(r.vers).toBe(W.NATPMP_VERSION);
    expect(r.op).toBe(W.NATPMP_RESPONSE_BIT | W.NATPMP_OP_ADDRESS);
    expect(r.resultCode).toBe(W.NATPMP_RESULT_SUCCESS);
    expect(r.resultMessage).toBe("Success");
    expect(r.ip!.join(".")).toBe(POOL);
    expect(r.msg.length).toBe(W.NATPMP_ADDRESS_RESPONSE_SIZE);
    // RFC 6886 §3.1: the reply comes from the gateway's address and port 5351.
    expect(h.lastFrom()).toMatchObject({ address: ADDRESS, port: W.PCP_SERVER_PORT });
    epochOf("client externalIp", r.epoch);

    // Our own address request from the same source reads the same address and epoch scale.
    const own = await exchange(source, Uint8Array.of(0, 0));
    expect(Array.from(own.subarray(0, 4))).toEqual([0, 0x80, 0, 0]);
    expect(ipv4At(own, W.NATPMP_EXTERNAL_ADDR)).toBe(r.ip!.join("."));
    epochOf("own address request", u32(own, W.NATPMP_SSSOE));
  });

  it("portMapping() UDP: the suggested port and the requested 7200 s are granted; NAT-PMP and PCP see the same mapping", async () => {
    const r = await h.call("portMapping udp 5000", (cb) => h.client.portMapping({ type: "udp", private: 5000, public: 5000, ttl: 7200 }, cb));
    expect(r.op).toBe(W.NATPMP_RESPONSE_BIT | W.NATPMP_OP_MAP_UDP);
    expect(r.resultCode).toBe(W.NATPMP_RESULT_SUCCESS);
    expect(r.type).toBe("udp");
    expect(r.private).toBe(5000);
    // A fresh server: port 5000 is free and not reserved, so the suggestion is honoured
    // (docs/engine.md MAP step 4, which NAT-PMP follows).
    expect(r.public).toBe(5000);
    expect(r.ttl).toBe(7200);
    expect(r.msg.length).toBe(W.NATPMP_MAP_RESPONSE_SIZE);
    epochOf("client map udp", r.epoch);

    // RFC 6886 §3.3: a request for an internal port that is already mapped gets the existing
    // external port, whatever port it suggests.
    const again = await exchange(source, natPmpMap(W.NATPMP_OP_MAP_UDP, 5000, 6000, 7200));
    expect(u16(again, W.NATPMP_RESULT)).toBe(W.NATPMP_RESULT_SUCCESS);
    expect(u16(again, W.NATPMP_RESP_INTERNAL_PORT)).toBe(5000);
    expect(u16(again, W.NATPMP_RESP_EXTERNAL_PORT)).toBe(r.public);
    expect(u32(again, W.NATPMP_RESP_LIFETIME)).toBe(7200);
    epochOf("own map udp refresh", u32(again, W.NATPMP_SSSOE));

    // PCP, strict nonces: the endpoint's mapping exists and was not made with this nonce,
    // so a MAP with a fresh nonce is refused with the mapping's remaining lifetime (RFC 6887 §11.3).
    const refused = await exchange(source, mapRequest({ client: source, protocol: W.PROTO_UDP, internalPort: 5000, lifetime: 7200, nonce: nonce(1) }));
    expect(refused[3]).toBe(W.RESULT_NOT_AUTHORIZED);
    expect(u32(refused, 4)).toBeGreaterThan(7200 - 10);
    expect(u32(refused, 4)).toBeLessThanOrEqual(7200);

    // NAT-PMP mappings carry the all-zero nonce (docs/engine.md NAT-PMP), so PCP with that
    // nonce refreshes the same mapping: the same external address and port as the client saw.
    const same = await exchange(source, mapRequest({ client: source, protocol: W.PROTO_UDP, internalPort: 5000, lifetime: 7200, nonce: ZERO_NONCE }));
    expect(same[3]).toBe(W.RESULT_SUCCESS);
    expect(assigned({ response: new Uint8Array(same) })).toEqual({ port: r.public, address: POOL });
  });

  it("portMapping() TCP with ttl 3600: granted 3600 on the suggested port", async () => {
    const r = await h.call("portMapping tcp 22", (cb) => h.client.portMapping({ type: "tcp", private: 22, public: 2222, ttl: 3600 }, cb));
    expect(r.op).toBe(W.NATPMP_RESPONSE_BIT | W.NATPMP_OP_MAP_TCP);
    expect(r.resultCode).toBe(W.NATPMP_RESULT_SUCCESS);
    expect(r.type).toBe("tcp");
    expect(r.private).toBe(22);
    expect(r.public).toBe(2222);
    expect(r.ttl).toBe(3600);
    epochOf("client map tcp", r.epoch);

    // TCP and UDP are separate mappings: the TCP one is found by a TCP request (no suggestion).
    const again = await exchange(source, natPmpMap(W.NATPMP_OP_MAP_TCP, 22, 0, 3600));
    expect(u16(again, W.NATPMP_RESP_EXTERNAL_PORT)).toBe(2222);
    epochOf("own map tcp refresh", u32(again, W.NATPMP_SSSOE));
    const refused = await exchange(source, mapRequest({ client: source, protocol: W.PROTO_TCP, internalPort: 22, lifetime: 3600, nonce: nonce(2) }));
    expect(refused[3]).toBe(W.RESULT_NOT_AUTHORIZED);
  });

  it("lifetimes (RFC 6886 §3.3): the library's default 7200 s is granted as asked; more than the server's maximum is reduced to it", async () => {
    const byDefault = await h.call("portMapping default", (cb) => h.client.portMapping({ private: 8080 }, cb));
    expect(byDefault.op).toBe(W.NATPMP_RESPONSE_BIT | W.NATPMP_OP_MAP_TCP); // type defaults to tcp
    expect(byDefault.private).toBe(8080);
    expect(byDefault.public).toBeGreaterThanOrEqual(1024); // pool.portMin
    expect(byDefault.ttl).toBe(7200);
    epochOf("client map default", byDefault.epoch);

    const long = await h.call("portMapping udp 9000 ttl 100000", (cb) => h.client.portMapping({ type: "udp", private: 9000, public: 9000, ttl: 100000 }, cb));
    expect(long.private).toBe(9000);
    expect(long.public).toBe(9000);
    expect(long.ttl).toBe(MAX_LIFETIME);
    epochOf("client map long", long.epoch);

    // The PCP view of that mapping agrees: its remaining lifetime is the reduced one.
    const refused = await exchange(source, mapRequest({ client: source, protocol: W.PROTO_UDP, internalPort: 9000, lifetime: 100000, nonce: nonce(3) }));
    expect(refused[3]).toBe(W.RESULT_NOT_AUTHORIZED);
    expect(u32(refused, 4)).toBeGreaterThan(MAX_LIFETIME - 10);
    expect(u32(refused, 4)).toBeLessThanOrEqual(MAX_LIFETIME);
  });

  it("portUnmapping() (lifetime 0, suggested port left non-zero by the library) deletes the mapping", async () => {
    const r = await h.call("portUnmapping udp 5000", (cb) => h.client.portUnmapping({ type: "udp", private: 5000, public: 5000 }, cb));
    // RFC 6886 §3.4: result 0, internal port echoed, external port 0, lifetime 0.
    expect(r.op).toBe(W.NATPMP_RESPONSE_BIT | W.NATPMP_OP_MAP_UDP);
    expect(r.resultCode).toBe(W.NATPMP_RESULT_SUCCESS);
    expect(r.private).toBe(5000);
    expect(r.public).toBe(0);
    expect(r.ttl).toBe(0);
    epochOf("client unmap udp", r.epoch);

    // Gone for PCP: a fresh nonce is no longer refused and gets a new mapping, on another
    // port, because 5000 is in hold-down for its previous owner (RFC 6888 REQ-8, 120 s).
    const fresh = await exchange(source, mapRequest({ client: source, protocol: W.PROTO_UDP, internalPort: 5000, lifetime: 600, nonce: nonce(1) }));
    expect(fresh[3]).toBe(W.RESULT_SUCCESS);
    const now = assigned({ response: new Uint8Array(fresh) });
    expect(now.address).toBe(POOL);
    expect(now.port).not.toBe(5000);
    // Remove it again so the next check deletes a NAT-PMP mapping only.
    const removed = await exchange(source, mapRequest({ client: source, protocol: W.PROTO_UDP, internalPort: 5000, lifetime: 0, nonce: nonce(1) }));
    expect(removed[3]).toBe(W.RESULT_SUCCESS);

    // TCP as well; and deleting what no longer exists is still a success (RFC 6886 §3.4).
    for (const attempt of ["first", "repeated"]) {
      const t = await h.call(`portUnmapping tcp 22 (${attempt})`, (cb) => h.client.portUnmapping({ type: "tcp", private: 22, public: 2222 }, cb));
      expect(t.op).toBe(W.NATPMP_RESPONSE_BIT | W.NATPMP_OP_MAP_TCP);
      expect([t.resultCode, t.private, t.public, t.ttl]).toEqual([W.NATPMP_RESULT_SUCCESS, 22, 0, 0]);
      epochOf(`client unmap tcp ${attempt}`, t.epoch);
    }
    const tcpFresh = await exchange(source, mapRequest({ client: source, protocol: W.PROTO_TCP, internalPort: 22, lifetime: 600, nonce: nonce(2) }));
    expect(tcpFresh[3]).toBe(W.RESULT_SUCCESS);
    expect(assigned({ response: new Uint8Array(tcpFresh) }).port).not.toBe(2222);
  });

  it("every reply came from the gateway, and the epoch (seconds since start) only moved forward", () => {
    expect(h.replies.length).toBe(8);
    for (const r of h.replies) expect(r.from).toMatchObject({ address: ADDRESS, port: W.PCP_SERVER_PORT });
    const elapsed = Math.ceil((Date.now() - startedAt) / 1000);
    for (let i = 1; i < epochs.length; i++) {
      expect(epochs[i].epoch, `${epochs[i].what} after ${epochs[i - 1].what}`).toBeGreaterThanOrEqual(epochs[i - 1].epoch);
    }
    for (const e of epochs) expect(e.epoch, e.what).toBeLessThanOrEqual(elapsed + 1);
  });
});
