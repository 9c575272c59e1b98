// Test-side builders for PCP and NAT-PMP requests, and a harness that runs datagrams
// through a PacketEngine one at a time.
import * as W from "../../src/wire.generated.js";
import { formatAddress16, toAddress16 } from "../../src/net/address.js";
import type { PacketEngine, SlotOutcome } from "../../src/engine/packet-engine.js";

export const CLIENT = "192.0.2.1";
export const CLIENT16 = toAddress16(CLIENT);
export const EPOCH = 0x11223344;

export interface Option {
  code: number;
  data?: Uint8Array | number[];
  /** Length field to write instead of data.length (hostile cases). */
  length?: number;
  reserved?: number;
}

export function option(code: number, data: Uint8Array | number[] = [], extra: Partial<Option> = {}): Option {
  return { code, data, ...extra };
}

export function encodeOptions(options: Option[]): Uint8Array {
  const parts: number[] = [];
  for (const o of options) {
    const data = Array.from(o.data ?? []);
    const length = o.length ?? data.length;
    parts.push(o.code, o.reserved ?? 0, length >> 8, length & 0xff, ...data);
    while (parts.length % 4) parts.push(0);
  }
  return Uint8Array.from(parts);
}

export interface Header {
  version?: number;
  opcode: number;
  lifetime?: number;
  client?: string | Uint8Array;
  response?: boolean;
}

function header(h: Header, bodyLength: number, options: Uint8Array): Uint8Array {
  const out = new Uint8Array(24 + bodyLength + options.length);
  const view = new DataView(out.buffer);
  out[0] = h.version ?? 2;
  out[1] = h.opcode | (h.response ? 0x80 : 0);
  view.setUint32(4, h.lifetime ?? 0);
  out.set(typeof h.client === "object" ? h.client : toAddress16(h.client ?? CLIENT), 8);
  out.set(options, 24 + bodyLength);
  return out;
}

export interface MapFields {
  nonce?: number[];
  protocol?: number;
  internalPort?: number;
  externalPort?: number;
  externalAddress?: string;
}

const NONCE = [0x10, 0x21, 0x32, 0x43, 0x54, 0x65, 0x76, 0x87, 0x98, 0xa9, 0xba, 0xcb];

function mapBody(out: Uint8Array, f: MapFields): void {
  const view = new DataView(out.buffer, out.byteOffset);
  out.set(f.nonce ?? NONCE, W.MP_NONCE);
  out[W.MP_PROTOCOL] = f.protocol ?? W.PROTO_TCP;
  view.setUint16(W.MP_INTERNAL_PORT, f.internalPort ?? 8080);
  view.setUint16(W.MP_EXTERNAL_PORT, f.externalPort ?? 0);
  out.set(toAddress16(f.externalAddress ?? "0.0.0.0"), W.MP_EXTERNAL_ADDR);
}

export function mapRequest(h: Partial<Header> & MapFields = {}, options: Option[] = []): Uint8Array {
  const out = header({ opcode: W.OP_MAP, lifetime: 3600, ...h }, W.MAP_PAYLOAD_SIZE, encodeOptions(options));
  mapBody(out, h);
  return out;
}

export interface PeerFields extends MapFields {
  remotePort?: number;
  remoteAddress?: string;
}

export function peerRequest(h: Partial<Header> & PeerFields = {}, options: Option[] = []): Uint8Array {
  const out = header({ opcode: W.OP_PEER, lifetime: 3600, ...h }, W.PEER_PAYLOAD_SIZE, encodeOptions(options));
  mapBody(out, { protocol: W.PROTO_UDP, ...h });
  new DataView(out.buffer).setUint16(W.PEER_REMOTE_PORT, h.remotePort ?? 443);
  out.set(toAddress16(h.remoteAddress ?? "198.51.100.7"), W.PEER_REMOTE_ADDR);
  return out;
}

export function announceRequest(h: Partial<Header> = {}, options: Option[] = []): Uint8Array {
  return header({ opcode: W.OP_ANNOUNCE, lifetime: 0, ...h }, 0, encodeOptions(options));
}

export function natPmpMap(opcode: number, internalPort: number, suggestedPort: number, lifetime: number): Uint8Array {
  const out = new Uint8Array(12);
  const view = new DataView(out.buffer);
  out[1] = opcode;
  view.setUint16(4, internalPort);
  view.setUint16(6, suggestedPort);
  view.setUint32(8, lifetime);
  return out;
}

// ---- option payloads ----
export const thirdParty = (address: string) => option(W.OPTION_THIRD_PARTY, toAddress16(address));
export const preferFailure = () => option(W.OPTION_PREFER_FAILURE);
export function filter(prefixLength: number, address: string, port = 0): Option {
  const data = new Uint8Array(20);
  data[1] = prefixLength;
  new DataView(data.buffer).setUint16(2, port);
  data.set(toAddress16(address), 4);
  return option(W.OPTION_FILTER, data);
}
export const description = (text: string | number[]) => option(W.OPTION_DESCRIPTION, typeof text === "string" ? new TextEncoder().encode(text) : text);
export function portSet(size: number, firstPort: number, parity = false): Option {
  return option(W.OPTION_PORT_SET, [size >> 8, size & 0xff, firstPort >> 8, firstPort & 0xff, parity ? 1 : 0]);
}
export function prefix64(length = 12): Option {
  const data = new Uint8Array(14);
  data[1] = length;
  return option(W.OPTION_PREFIX64, data);
}
export const thirdPartyId = (id: number[]) => option(W.OPTION_THIRD_PARTY_ID, id);
export const checkpointRequired = () => option(W.OPTION_CHECKPOINT_REQUIRED);

// ---- harness ----
export interface Send {
  source?: string;
  sourcePort?: number;
  ingress?: number;
  overloaded?: boolean;
  epoch?: number;
}

function loadOne(engine: PacketEngine, payload: Uint8Array, s: Send): void {
  engine.load(0, {
    payload,
    source: toAddress16(s.source ?? CLIENT),
    sourcePort: s.sourcePort ?? 40000,
    ingress: s.ingress ?? W.INGRESS_SUBSCRIBER,
    overloaded: s.overloaded,
  });
}

function outcomeCopy(engine: PacketEngine): SlotOutcome {
  const o = engine.outcome(0);
  return { ...o, response: o.response.slice() };
}

/** Runs one datagram through the codec alone in slot 0 and returns a copy of the outcome. */
export function run(engine: PacketEngine, payload: Uint8Array, s: Send = {}): SlotOutcome {
  loadOne(engine, payload, s);
  engine.processBatch(1, s.epoch ?? EPOCH);
  return outcomeCopy(engine);
}

export const hexOf = (b: Uint8Array) => Buffer.from(b).toString("hex");
export const u32 = (b: Uint8Array, at: number) => new DataView(b.buffer, b.byteOffset).getUint32(at);
export const u16 = (b: Uint8Array, at: number) => new DataView(b.buffer, b.byteOffset).getUint16(at);

/** Runs one datagram through codec and engine in slot 0 at engine time `now`. */
export function serveOne(engine: PacketEngine, payload: Uint8Array, now: number, s: Send = {}): SlotOutcome {
  loadOne(engine, payload, s);
  engine.serve(1, s.epoch ?? EPOCH, now);
  return outcomeCopy(engine);
}

/** Assigned external port and address of a MAP/PEER reply. */
export function assigned(o: { response: Uint8Array }): { port: number; address: string } {
  return { port: u16(o.response, W.MP_EXTERNAL_PORT), address: formatAddress16(o.response.slice(W.MP_EXTERNAL_ADDR, W.MP_EXTERNAL_ADDR + 16)) };
}

export const nonceOf = (n: number) => Array.from({ length: 12 }, (_, i) => (n * 37 + i) & 0xff);
