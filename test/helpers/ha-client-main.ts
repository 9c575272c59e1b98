// The HA tests' PCP client process (run by ./ha-client.ts inside the client namespace:
// `node --import tsx ha-client-main.ts ADDRESS`). Commands come as JSON lines on stdin,
// replies go out as JSON lines on stdout with the receive time (CLOCK_MONOTONIC ms).
//   {cmd:"load", id, to, from, outstanding, checkpoint, rtoMs, tries}  mapping i = from, from+1, …
//   {cmd:"stop", id}                                                    → {ev:"stopped", id}
//   {cmd:"refresh", id, to, items:[{i, port, address}], …}              → acks, then {ev:"done", id}
//   {cmd:"natpmp", id, to, op, internalPort, suggestedPort, lifetime}   → {ev:"natpmp", id, …}
// Mapping i is a THIRD_PARTY MAP for mappingKey(i) with nonce haNonce(i). A request that gets
// no reply is sent again (same bytes, same socket) every rtoMs, up to `tries` times. Each new
// request for a mapping uses the next of 32 sockets, so (nonce, client port) names one
// request across its retransmissions: the capture check of "no request answered by two
// nodes" keys on it. The Epoch of every reply is checked per server (RFC 6887 §8.5); a
// detected reset is reported and every mapping that server acknowledged is re-created
// (RFC 6887 §8.5: "the PCP client … MUST re-create its mappings").
import dgram from "node:dgram";
import readline from "node:readline";
import * as W from "../../src/wire.generated.js";
import { formatAddress16 } from "../../src/net/address.js";
import { checkpointRequired, mapRequest, natPmpMap, thirdParty } from "./packets.js";
import { mappingKey } from "./mapping-load.js";
import { EpochTracker, haNonce } from "./ha-client.js";

const address = process.argv[2];
const SOCKETS = 32;
const now = () => Number(process.hrtime.bigint()) / 1e6;
/** Event lines, written once per turn of the event loop (a write each cost the client a tenth of its CPU). */
let lines: string[] = [];
const out = (o: Record<string, unknown>) => {
  if (lines.length === 0) setImmediate(flush);
  lines.push(JSON.stringify(o));
};
function flush(): void {
  process.stdout.write(`${lines.join("\n")}\n`);
  lines = [];
}

interface Pending {
  id: string;
  to: string;
  i: number;
  socket: number;
  bytes: Uint8Array;
  sentAt: number;
  tries: number;
  maxTries: number;
  rtoMs: number;
  natPmp?: boolean;
  done: () => void;
}

const epochs = new EpochTracker();
/** Per server: what it acknowledged (mapping → external address and port), for re-creation after a reset. */
const acknowledged = new Map<string, Map<number, { port: number; address: string }>>();
const pending = new Map<string, Pending>();
const requestsOf = new Map<number, number>();
const loads = new Map<string, { running: boolean; sent: number }>();
let recreations = 0;
let natPmpSeq = 0;

const sockets: dgram.Socket[] = [];
const keyOf = (socket: number, i: number, natPmp = false) => `${natPmp ? "p" : "m"}${socket}:${i}`;

function mapBytes(i: number, checkpoint: boolean, suggest?: { port: number; address: string }): Uint8Array {
  const k = mappingKey(i);
  const options = [thirdParty(k.internalAddress), ...(checkpoint ? [checkpointRequired()] : [])];
  return mapRequest(
    { client: address, internalPort: k.internalPort, lifetime: 3600, nonce: haNonce(i), externalPort: suggest?.port, externalAddress: suggest?.address },
    options,
  );
}

function transmit(p: Pending): void {
  p.tries++;
  p.sentAt = now();
  sockets[p.socket].send(p.bytes, W.PCP_SERVER_PORT, p.to);
}

/** Sends mapping i's request on its next socket; `done` runs once it was answered or given up. */
function request(o: { id: string; to: string; i: number; bytes: Uint8Array; rtoMs: number; tries: number; natPmp?: boolean }, done: () => void): void {
  const n = requestsOf.get(o.i) ?? 0;
  requestsOf.set(o.i, n + 1);
  const socket = (((o.i + n) % SOCKETS) + SOCKETS) % SOCKETS;
  const key = keyOf(socket, o.i, o.natPmp);
  const prior = pending.get(key);
  if (prior) {
    // 32 requests for one mapping outstanding at once never happen in these tests (they did
    // when a client re-created its mappings again and again): the one given up is reported
    // under its own id, so its load or refresh counts it as failed instead of unanswered.
    pending.delete(key);
    out({ ev: "error", message: `request ${key} still outstanding, given up for ${o.id}`, id: prior.id, i: prior.i });
    prior.done();
  }
  const p: Pending = { ...o, socket, sentAt: 0, tries: 0, maxTries: o.tries, natPmp: o.natPmp, done };
  pending.set(key, p);
  transmit(p);
}

// Retransmissions: one sweep for every outstanding request.
setInterval(() => {
  const t = now();
  for (const [key, p] of pending) {
    if (t - p.sentAt < p.rtoMs) continue;
    if (p.tries >= p.maxTries) {
      pending.delete(key);
      out({ ev: "lost", id: p.id, i: p.i, to: p.to, tries: p.tries });
      p.done();
    } else transmit(p);
  }
}, 25);

function onPcp(reply: Buffer, from: string, socket: number, at: number): void {
  if (reply.length < W.PCP_HEADER_SIZE + W.MAP_PAYLOAD_SIZE || reply[1] !== (W.R_BIT | W.OP_MAP)) {
    out({ ev: "other", from, hex: reply.toString("hex"), at });
    return;
  }
  const i = reply.readUInt32BE(W.MP_NONCE + 2);
  const key = keyOf(socket, i);
  const p = pending.get(key);
  const epoch = reply.readUInt32BE(W.HDR_EPOCH);
  const check = epochs.check(from, epoch, at);
  const result = reply[3];
  const port = reply.readUInt16BE(W.MP_EXTERNAL_PORT);
  const external = formatAddress16(reply.subarray(W.MP_EXTERNAL_ADDR, W.MP_EXTERNAL_ADDR + 16));
  if (!p) {
    // A second answer to a request already answered (or given up): the capture says by whom.
    out({ ev: "dup", i, from, socket, result, port, address: external, epoch, at });
    return;
  }
  pending.delete(key);
  if (!check.valid) reset(from, epoch, check, at);
  if (result === W.RESULT_SUCCESS) {
    let m = acknowledged.get(from);
    if (!m) acknowledged.set(from, (m = new Map()));
    m.set(i, { port, address: external });
    out({
      ev: "ack",
      id: p.id,
      i,
      port,
      address: external,
      epoch,
      at,
      server: from,
      epochOk: check.valid,
      tries: p.tries,
      checkpointed: echoes(reply, W.OPTION_CHECKPOINT_REQUIRED),
    });
  } else out({ ev: "fail", id: p.id, i, result, epoch, at, server: from, epochOk: check.valid });
  p.done();
}

/** Whether a reply carries option `code` (RFC 7767 §3: CHECKPOINT_REQUIRED echoed = the mapping was check-pointed). */
function echoes(reply: Buffer, code: number): boolean {
  for (let at = W.PCP_HEADER_SIZE + W.MAP_PAYLOAD_SIZE; at + W.OPT_HEADER_SIZE <= reply.length; ) {
    if (reply[at] === code) return true;
    at += W.OPT_HEADER_SIZE + ((reply.readUInt16BE(at + 2) + 3) & ~3);
  }
  return false;
}

/** A reset seen (RFC 6887 §8.5): report it, and re-create everything that server had acknowledged. */
function reset(server: string, epoch: number, check: { serverDelta: number; clientDelta: number }, at: number): void {
  const mine = [...(acknowledged.get(server) ?? new Map())].map(([i, a]) => ({ i, ...a }));
  const id = `recreate-${++recreations}`;
  out({ ev: "epoch-reset", id, server, epoch, ...check, at, mappings: mine.length });
  refresh({ id, to: server, items: mine, outstanding: 64, rtoMs: 300, tries: 20, checkpoint: false });
}

function onNatPmp(reply: Buffer, from: string, socket: number, at: number): void {
  if (reply.length < W.NATPMP_ADDRESS_RESPONSE_SIZE) return;
  const op = reply[1] & ~W.NATPMP_RESPONSE_BIT;
  const internalPort = op === W.NATPMP_OP_ADDRESS ? 0 : reply.readUInt16BE(W.NATPMP_RESP_INTERNAL_PORT);
  const seq = [...pending.values()].find((p) => p.natPmp && p.socket === socket && p.to === from);
  const epoch = reply.readUInt32BE(W.NATPMP_SSSOE);
  const check = epochs.check(`pmp:${from}`, epoch, at, true);
  if (!seq) {
    out({ ev: "dup", natPmp: true, from, socket, op, at });
    return;
  }
  pending.delete(keyOf(seq.socket, seq.i, true));
  out({
    ev: "natpmp",
    id: seq.id,
    op,
    result: reply.readUInt16BE(W.NATPMP_RESULT),
    epoch,
    epochOk: check.valid,
    internalPort,
    externalPort: op === W.NATPMP_OP_ADDRESS ? 0 : reply.readUInt16BE(W.NATPMP_RESP_EXTERNAL_PORT),
    address: op === W.NATPMP_OP_ADDRESS ? [...reply.subarray(W.NATPMP_EXTERNAL_ADDR, W.NATPMP_EXTERNAL_ADDR + 4)].join(".") : undefined,
    at,
    server: from,
  });
  seq.done();
}

function load(c: { id: string; to: string; from: number; outstanding: number; checkpoint: boolean; rtoMs: number; tries: number }): void {
  const state = { running: true, sent: 0 };
  loads.set(c.id, state);
  let next = c.from;
  const one = () => {
    if (!state.running) return;
    const i = next++;
    state.sent++;
    request({ id: c.id, to: c.to, i, bytes: mapBytes(i, c.checkpoint), rtoMs: c.rtoMs, tries: c.tries }, one);
  };
  for (let k = 0; k < c.outstanding; k++) one();
}

function refresh(c: {
  id: string;
  to: string;
  items: { i: number; port: number; address: string }[];
  outstanding: number;
  checkpoint: boolean;
  rtoMs: number;
  tries: number;
}): void {
  let next = 0;
  let finished = 0;
  const one = () => {
    if (next >= c.items.length) {
      if (finished === c.items.length) out({ ev: "done", id: c.id, count: c.items.length });
      return;
    }
    const item = c.items[next++];
    request({ id: c.id, to: c.to, i: item.i, bytes: mapBytes(item.i, c.checkpoint, item), rtoMs: c.rtoMs, tries: c.tries }, () => {
      finished++;
      one();
    });
  };
  if (c.items.length === 0) out({ ev: "done", id: c.id, count: 0 });
  for (let k = 0; k < Math.min(c.outstanding, c.items.length); k++) one();
}

let bound = 0;
for (let s = 0; s < SOCKETS; s++) {
  const socket = dgram.createSocket("udp4");
  sockets.push(socket);
  socket.on("message", (m, r) => {
    const at = now();
    if (m.length > 0 && m[0] === W.NATPMP_VERSION) onNatPmp(m, r.address, s, at);
    else onPcp(m, r.address, s, at);
  });
  socket.bind(0, address, () => {
    if (++bound === SOCKETS) out({ ev: "ready", ports: sockets.map((x) => x.address().port) });
  });
}

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const c = JSON.parse(line);
  if (c.cmd === "load") load(c);
  else if (c.cmd === "stop") {
    const l = loads.get(c.id);
    if (l) l.running = false;
    out({ ev: "stopped", id: c.id, sent: l?.sent ?? 0 });
  } else if (c.cmd === "refresh") refresh(c);
  else if (c.cmd === "natpmp") {
    const bytes = c.op === W.NATPMP_OP_ADDRESS ? Uint8Array.from([0, 0]) : natPmpMap(c.op, c.internalPort, c.suggestedPort, c.lifetime);
    // NAT-PMP has no nonce: requests are told apart by their socket (one NAT-PMP request per socket at a time).
    request({ id: c.id, to: c.to, i: -1 - (natPmpSeq++ % 1_000_000), bytes, rtoMs: c.rtoMs, tries: c.tries, natPmp: true }, () => undefined);
  } else out({ ev: "error", message: `unknown command ${line}` });
});
process.stdin.on("end", () => {
  if (lines.length > 0) flush();
  process.exit(0);
});
