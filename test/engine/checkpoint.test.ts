// CHECKPOINT_REQUIRED (RFC 7767): checklist item 155, the per-subscriber quota, renewal
// without the option, the slot flag that holds the reply until the mapping is on disk, and
// check-pointed mappings journaled at every change (never coalesced).
import { describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import type { PacketEngine } from "../../src/engine/packet-engine.js";
import { engineConfig, engineFrom } from "../helpers/engine-config.js";
import { checkpointRequired, mapRequest, nonceOf, peerRequest, serveOne } from "../helpers/packets.js";

const CLIENT = "192.0.2.1";
const T0 = 100;
const WALL = 1_700_000_000;

function engine(on = true, quota = 2): PacketEngine {
  // Honoured while persistence is on; refreshes coalesced (the default).
  return engineFrom(engineConfig({ pcp: { checkpointRequired: true }, persistence: { enabled: on, checkpointsPerSubscriber: quota } }), T0);
}

const codes = (response: Uint8Array, body: number) => {
  const out: number[] = [];
  for (let at = W.PCP_HEADER_SIZE + body; at < response.length; ) {
    out.push(response[at]);
    at += 4 + ((((response[at + 2] << 8) | response[at + 3]) + 3) & ~3);
  }
  return out;
};
const map = (e: PacketEngine, port: number, checkpoint: boolean, now = T0) =>
  serveOne(e, mapRequest({ client: CLIENT, internalPort: port, lifetime: 3600, nonce: nonceOf(port) }, checkpoint ? [checkpointRequired()] : []), now, {
    source: CLIENT,
  });
const flagged = (e: PacketEngine, port: number) => ((e.lookup(CLIENT, W.PROTO_TCP, port)?.flags ?? 0) & W.MAPF_CHECKPOINT) !== 0;

describe("§3.13 CHECKPOINT_REQUIRED (RFC 7767)", () => {
  it("item 155: not in the request → not in the response; honoured → echoed, flagged, the reply waits for the disk", () => {
    const e = engine();
    const plain = map(e, 80, false);
    expect(codes(plain.response, W.MAP_PAYLOAD_SIZE)).toEqual([]);
    expect(e.replyWaitsForDisk(0)).toBe(false);
    const asked = map(e, 81, true);
    expect(asked.result).toBe(W.RESULT_SUCCESS);
    expect(codes(asked.response, W.MAP_PAYLOAD_SIZE)).toEqual([W.OPTION_CHECKPOINT_REQUIRED]);
    expect(e.replyWaitsForDisk(0)).toBe(true);
    expect(flagged(e, 81)).toBe(true);
    const peer = serveOne(e, peerRequest({ client: CLIENT, internalPort: 5000, nonce: nonceOf(5) }, [checkpointRequired()]), T0, { source: CLIENT });
    expect(codes(peer.response, W.PEER_PAYLOAD_SIZE)).toEqual([W.OPTION_CHECKPOINT_REQUIRED]);
  });

  it("item 155: in the request but not honoured (no persistence, or over the subscriber's quota) → served, not echoed", () => {
    const off = engine(false);
    const o = map(off, 80, true);
    expect(o.result).toBe(W.RESULT_SUCCESS);
    expect(codes(o.response, W.MAP_PAYLOAD_SIZE)).toEqual([]);
    expect(off.replyWaitsForDisk(0)).toBe(false);

    const e = engine(true, 2);
    expect(codes(map(e, 80, true).response, W.MAP_PAYLOAD_SIZE)).toEqual([W.OPTION_CHECKPOINT_REQUIRED]);
    expect(codes(map(e, 81, true).response, W.MAP_PAYLOAD_SIZE)).toEqual([W.OPTION_CHECKPOINT_REQUIRED]);
    const third = map(e, 82, true);
    expect(third.result).toBe(W.RESULT_SUCCESS);
    expect(codes(third.response, W.MAP_PAYLOAD_SIZE)).toEqual([]); // quota of 2
    expect(codes(map(e, 80, true).response, W.MAP_PAYLOAD_SIZE)).toEqual([W.OPTION_CHECKPOINT_REQUIRED]); // its own renewal still is
    // A renewal without the option clears the flag and frees room; an ended mapping too.
    map(e, 80, false);
    expect(flagged(e, 80)).toBe(false);
    expect(codes(map(e, 82, true).response, W.MAP_PAYLOAD_SIZE)).toEqual([W.OPTION_CHECKPOINT_REQUIRED]);
    serveOne(e, mapRequest({ client: CLIENT, internalPort: 81, lifetime: 0, nonce: nonceOf(81) }), T0, { source: CLIENT });
    expect(codes(map(e, 83, true).response, W.MAP_PAYLOAD_SIZE)).toEqual([W.OPTION_CHECKPOINT_REQUIRED]);
  });

  it("a check-pointed mapping's refreshes are all journaled (never coalesced), and the flag survives a restore", () => {
    const e = engine();
    map(e, 80, true);
    map(e, 81, false);
    e.persistPending(WALL);
    e.drainEvents();
    map(e, 80, true, T0 + 10);
    map(e, 81, false, T0 + 10);
    const records = e.persistPending(WALL);
    e.drainEvents();
    expect(records.reduce((n, r) => n + r.length, 0)).toBe(W.PREC_HEADER_SIZE); // only port 80's refresh
    const b = engine();
    for (const r of records) b.restore(r, WALL, T0 + 10);
    expect(flagged(b, 80)).toBe(true);
    expect(codes(map(b, 80, true, T0 + 20).response, W.MAP_PAYLOAD_SIZE)).toEqual([W.OPTION_CHECKPOINT_REQUIRED]);
  });
});
