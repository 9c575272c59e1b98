// The tag gate's cost on the batched path (bench/auth.bench.ts measures it): replies to
// requests from a source with authentication on leave with the batch's one sendmmsg —
// tagged in their slots, or as the engine wrote them — not one send each; only answers the
// gate must rewrite (UNKNOWN_SESSION_ID without the request's tag) go on their own. Real
// engine, real addon, real UDP on loopback (ports 25220–25229), the PCP side of RFC 7652
// against the in-test EAP method. And the allocation-free helpers the gate and the tagging
// use agree with the straightforward forms they replaced.
import { createHmac, randomBytes } from "node:crypto";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import * as W from "../../src/wire.generated.js";
import { chooseIo } from "../../src/io/native.js";
import { createListener, type UdpListener } from "../../src/io/udp-listener.js";
import { MonotonicClock } from "../../src/core/clock.js";
import { PaServer } from "../../src/auth/pa-server.js";
import { PcpAuthClient } from "../../src/auth/pa-client.js";
import { mac, verifyMac } from "../../src/auth/pa-crypto.js";
import { commonTag, option, optionOffset, optionPositions, withCommonTag, withoutCommonTag } from "../../src/auth/pa-wire.js";
import type { UnsolicitedSocket } from "../../src/io/listener-base.js";
import { engineConfig, engineFrom } from "../helpers/engine-config.js";
import { mapRequest, nonceOf } from "../helpers/packets.js";
import { ToyPeer, ToyRelay } from "./helpers/toy-eap.js";

const PORT = 25220;
const AUTH_SOURCE = "127.0.0.1"; // authentication optional
const OFF_SOURCE = "127.0.0.2"; // authentication off
const io = chooseIo({});

let listener: UdpListener | undefined;
let auth: PaServer | undefined;
const clients: PcpAuthClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await listener?.stop();
  auth?.close();
  listener = auth = undefined;
});

beforeAll(() => {
  // CI builds the addon (scripts/test-deps.sh): not loading is a failure, not a skip.
  expect(io.path, io.reason).toBe("batched");
});

async function serve(): Promise<{ listener: UdpListener; auth: PaServer }> {
  const clock = new MonotonicClock();
  const engine = engineFrom(engineConfig({ subscribers: ["127.0.0.0/8"], quotas: { mappingsPerSubscriber: 1024 } }), clock.seconds(), {}, "release");
  auth = new PaServer({
    relay: new ToyRelay({ alice: "correct horse" }),
    epoch: () => clock.epoch(),
    maxSessions: 8,
    sessionsPerClient: 4,
    sessionLifetimeS: 3600,
    reauthAt: 0.8,
    send: (socket, msg, port, address) => listener!.sendFrom(socket as UnsolicitedSocket, msg, port, address),
  });
  listener = createListener({
    endpoints: [{ address: "127.0.0.1", port: PORT }],
    engine,
    clock,
    classify: (source) => W.INGRESS_SUBSCRIBER | (source === AUTH_SOURCE ? W.INGRESS_AUTH : 0),
    auth,
  });
  await listener.start();
  return { listener, auth };
}

async function client(bind: string): Promise<PcpAuthClient> {
  const c = new PcpAuthClient({
    server: { address: "127.0.0.1", port: PORT },
    bind,
    newPeer: () => new ToyPeer("alice", "correct horse"),
    timeoutMs: 5000,
    retransmitMs: 300,
  });
  clients.push(c);
  await c.open();
  return c;
}

const map = (c: PcpAuthClient, n: number) => mapRequest({ client: c.localAddress, internalPort: 30_000 + n, nonce: nonceOf(n), lifetime: 600 });

describe("the tag gate on the batched path", () => {
  it("tagged and untagged replies to an authenticating source leave with the batch; UNKNOWN_SESSION_ID on its own", async () => {
    const { listener, auth } = await serve();
    const tagged = await client(AUTH_SOURCE);
    await tagged.authenticate();
    const plain = await client(AUTH_SOURCE);
    const off = await client(OFF_SOURCE);
    const sendFrom = vi.spyOn(listener, "sendFrom");
    // 64 tagged requests in flight at once (sequence numbers rising in send order), 64
    // untagged from the same address, 64 from a source with authentication off.
    const [t, u, o] = await Promise.all([
      Promise.all(Array.from({ length: 64 }, (_, i) => tagged.request(map(tagged, i)))),
      Promise.all(Array.from({ length: 64 }, (_, i) => plain.send(map(plain, 100 + i)))),
      Promise.all(Array.from({ length: 64 }, (_, i) => off.send(map(off, 200 + i)))),
    ]);
    for (const r of t)
      expect(r && { result: r.result, tagged: r.tagged, length: r.reply.length }).toEqual({ result: 0, tagged: true, length: W.MAP_MIN_SIZE + 32 });
    for (const r of [...u, ...o])
      expect(r && { result: r.result, tagged: r.tagged, length: r.reply.length }).toEqual({ result: 0, tagged: false, length: W.MAP_MIN_SIZE });
    expect(sendFrom).not.toHaveBeenCalled();
    expect(auth.counters()).toMatchObject({ tagFailures: 0, replays: 0 });
    // A tag naming no session: answered without it [6887 §8.2 copies the request; 7652 §3.2], sent on its own.
    const stray = withCommonTag(map(plain, 300), { key: Buffer.alloc(32, 7), keyId: 1, mac: W.AUTH_HMAC_SHA2_256_128 }, 0x01020304, 0)!;
    const r = await plain.send(stray);
    expect(r && { result: r.result, tagged: r.tagged, tag: commonTag(r.reply) }).toEqual({
      result: W.RESULT_UNKNOWN_SESSION_ID,
      tagged: false,
      tag: undefined,
    });
    expect(sendFrom).toHaveBeenCalledTimes(1);
  });
});

describe("the allocation-free helpers", () => {
  /** A MAP request with `n` random options, some of them AUTHENTICATION_TAG; sometimes cut short. */
  function randomMessage(seed: number): Uint8Array {
    let s = seed;
    const rnd = (k: number) => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) >>> 8) % k;
    const options = Array.from({ length: rnd(5) }, () =>
      option([W.OPTION_AUTHENTICATION_TAG, W.OPTION_THIRD_PARTY, 128][rnd(3)], Buffer.alloc(rnd(40), rnd(256))),
    );
    const msg = Buffer.concat([Buffer.from(mapRequest({ nonce: nonceOf(seed) })), ...options]);
    return rnd(4) === 0 ? msg.subarray(0, msg.length - 1 - rnd(8)) : msg;
  }

  it("the MAC (two one-shot hashes through scratch buffers) is HMAC-SHA-256-128 for any key and message length", () => {
    for (const keyLength of [0, 1, 32, 63, 64, 65, 100]) {
      for (const length of [0, 1, 55, 56, 64, 92, 1100, 2048, 2049, 3000]) {
        const key = randomBytes(keyLength);
        const message = randomBytes(length);
        const want = createHmac("sha256", key).update(message).digest().subarray(0, 16);
        expect(mac(W.AUTH_HMAC_SHA2_256_128, key, message).toString("hex"), `key ${keyLength} message ${length}`).toBe(want.toString("hex"));
        if (length < 16) continue;
        // verifyMac reads [at, at + 16) as zero, the message unchanged.
        const at = length - 16;
        const signed = Buffer.from(message);
        signed.fill(0, at);
        createHmac("sha256", key).update(signed).digest().copy(signed, at, 0, 16);
        const copy = Buffer.from(signed);
        expect(verifyMac(W.AUTH_HMAC_SHA2_256_128, key, signed, at, 16)).toBe(true);
        expect(signed.equals(copy)).toBe(true);
        signed[0] ^= 1;
        expect(verifyMac(W.AUTH_HMAC_SHA2_256_128, key, signed, at, 16)).toBe(false);
      }
    }
  });

  it("optionOffset finds what optionPositions finds, or nothing in a malformed message", () => {
    for (let seed = 1; seed <= 2000; seed++) {
      const msg = randomMessage(seed);
      for (const code of [W.OPTION_AUTHENTICATION_TAG, W.OPTION_THIRD_PARTY, 128, 9]) {
        const positions = optionPositions(msg);
        expect(optionOffset(msg, code), `seed ${seed} code ${code}`).toBe(positions?.find((o) => o.code === code)?.at ?? -1);
      }
    }
  });

  it("withCommonTag equals the request without its tag, a fresh tag appended and signed; verifyMac checks it", () => {
    const t = { key: Buffer.alloc(32, 9), keyId: 3, mac: W.AUTH_HMAC_SHA2_256_128 };
    for (let seed = 1; seed <= 500; seed++) {
      const msg = randomMessage(seed);
      const out = withCommonTag(msg, t, 0xabcdef01, seed);
      // The straightforward form: body, then the option, HMAC over all with the MAC field zero.
      const data = Buffer.alloc(W.AUTH_TAG_FIXED_SIZE + 16);
      data.writeUInt32BE(0xabcdef01, W.AUTH_TAG_SESSION_ID);
      data.writeUInt32BE(seed, W.AUTH_TAG_SEQUENCE);
      data.writeUInt32BE(3, W.AUTH_TAG_KEY_ID);
      const want = Buffer.concat([withoutCommonTag(msg), option(W.OPTION_AUTHENTICATION_TAG, data)]);
      createHmac("sha256", t.key)
        .update(want)
        .digest()
        .subarray(0, 16)
        .copy(want, want.length - 16);
      expect(out && Buffer.from(out).toString("hex"), `seed ${seed}`).toBe(want.toString("hex"));
      // Well-formed with at most one tag before: the gate reads the fresh one back.
      const tags = optionPositions(msg)?.filter((o) => o.code === W.OPTION_AUTHENTICATION_TAG).length;
      if (tags !== undefined && tags <= 1)
        expect(commonTag(out!), `seed ${seed}`).toMatchObject({ sessionId: 0xabcdef01, sequence: seed, keyId: 3, dataAt: out!.length - 16, dataLength: 16 });
      expect(verifyMac(t.mac, t.key, out!, out!.length - 16, 16)).toBe(true);
      const flipped = Buffer.from(out!);
      flipped[seed % flipped.length] ^= 1 << (seed % 8);
      expect(verifyMac(t.mac, t.key, flipped, out!.length - 16, 16)).toBe(false);
    }
  });
});
