// The replication messages on a shard's subject (docs/replication.md): headers that say
// what a message is and where it belongs in the subject's chain, and a body of portable
// mapping records (the journal's records, src/engine: persistPending / persistTable) in
// u32-length-prefixed chunks, each chunk whole records and at most W.PERSIST_BUFFER bytes,
// so a follower hands each one to engine.restore as it is.
import { headers, type MsgHdrs } from "@nats-io/transport-node";
import * as W from "../wire.generated.js";
import { ErrorCodes, PcpdError } from "../errors.js";

export const HEADER = {
  kind: "Pcpd-Kind",
  node: "Pcpd-Node",
  term: "Pcpd-Term",
  /** The writer shard's Epoch at publication (a complete follower continues it). */
  epoch: "Pcpd-Epoch",
  /** Wall-clock ms at publication (the Epoch goes on by the time since). */
  wall: "Pcpd-Wall",
  /** The subject sequence this message was published to follow (its expected last subject sequence). */
  prev: "Pcpd-Prev",
} as const;

export const MESSAGE_KINDS = ["records", "takeover", "handover", "snapshot-begin", "snapshot", "snapshot-end"] as const;
export type MessageKind = (typeof MESSAGE_KINDS)[number];

export interface MessageMeta {
  kind: MessageKind;
  node: string;
  term: number;
  epoch: number;
  wall: number;
  prev: number;
}

export function encodeHeaders(m: MessageMeta, msgId?: string): MsgHdrs {
  const h = headers();
  h.set(HEADER.kind, m.kind);
  h.set(HEADER.node, m.node);
  h.set(HEADER.term, String(m.term));
  h.set(HEADER.epoch, String(m.epoch));
  h.set(HEADER.wall, String(m.wall));
  h.set(HEADER.prev, String(m.prev));
  // JetStream's de-duplication id: a publish retried after a lost ack is recognised (src/replication/writer.ts).
  if (msgId !== undefined) h.set("Nats-Msg-Id", msgId);
  return h;
}

/** The headers of a message on a shard's subject, or undefined if it is not one of ours. */
export function decodeMeta(h: MsgHdrs | undefined): MessageMeta | undefined {
  if (!h) return undefined;
  const kind = h.get(HEADER.kind) as MessageKind;
  if (!MESSAGE_KINDS.includes(kind)) return undefined;
  const num = (name: string) => {
    const v = Number(h.get(name));
    return Number.isSafeInteger(v) && v >= 0 ? v : undefined;
  };
  const term = num(HEADER.term);
  const epoch = num(HEADER.epoch);
  const wall = num(HEADER.wall);
  const prev = num(HEADER.prev);
  if (term === undefined || epoch === undefined || wall === undefined || prev === undefined) return undefined;
  return { kind, node: h.get(HEADER.node), term, epoch, wall, prev };
}

/** Bytes of the record at `at` (its header says how many FILTERs, PEERs, text and requester follow). */
export function recordSize(view: DataView, at: number): number {
  return (
    W.PREC_HEADER_SIZE +
    view.getUint8(at + W.PREC_FILTER_COUNT) * W.PREC_FILTER_SIZE +
    view.getUint8(at + W.PREC_PEER_COUNT) * W.PREC_PEER_SIZE +
    view.getUint8(at + W.PREC_DESCRIPTION_LENGTH) +
    view.getUint8(at + W.PREC_REALM_ID_LENGTH) +
    (view.getUint8(at + W.PREC_REQUESTER) ? W.PREC_REQUESTER_SIZE : 0)
  );
}

/** `part` (whole records) cut at record boundaries into pieces of at most `max` bytes. */
export function splitRecords(part: Uint8Array, max: number): Uint8Array[] {
  if (part.length <= max) return [part];
  const view = new DataView(part.buffer, part.byteOffset, part.byteLength);
  const out: Uint8Array[] = [];
  let start = 0;
  for (let at = 0; at < part.length; ) {
    const size = recordSize(view, at);
    if (at + size > part.length) throw new PcpdError(ErrorCodes.RECORDS_TOO_LARGE, `record at ${at} runs past its part (${part.length} bytes)`);
    if (size > max) throw new PcpdError(ErrorCodes.RECORDS_TOO_LARGE, `a record of ${size} bytes does not fit a message body of ${max}`);
    if (at + size - start > max) {
      out.push(part.subarray(start, at));
      start = at;
    }
    at += size;
  }
  out.push(part.subarray(start));
  return out;
}

/** Prefix bytes per chunk. */
export const CHUNK_PREFIX = 4;

/**
 * Bodies of at most `maxBody` bytes for `parts` (whole records each, in order): parts are
 * packed, a part too big for one body is split at record boundaries.
 */
export function encodeBodies(parts: Uint8Array[], maxBody: number): Uint8Array[] {
  const room = Math.min(W.PERSIST_BUFFER, maxBody - CHUNK_PREFIX);
  const bodies: Uint8Array[] = [];
  let group: Uint8Array[] = [];
  let size = 0;
  const close = () => {
    if (size === 0) return;
    const body = new Uint8Array(size);
    const view = new DataView(body.buffer);
    let at = 0;
    for (const c of group) {
      view.setUint32(at, c.length, true);
      body.set(c, at + CHUNK_PREFIX);
      at += CHUNK_PREFIX + c.length;
    }
    bodies.push(body);
    group = [];
    size = 0;
  };
  for (const part of parts) {
    if (part.length === 0) continue;
    for (const chunk of splitRecords(part, room)) {
      if (size + CHUNK_PREFIX + chunk.length > maxBody) close();
      group.push(chunk);
      size += CHUNK_PREFIX + chunk.length;
    }
  }
  close();
  return bodies;
}

/** The chunks of a body (views into it); throws on a malformed body. */
export function decodeBody(body: Uint8Array): Uint8Array[] {
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const out: Uint8Array[] = [];
  for (let at = 0; at < body.length; ) {
    if (at + CHUNK_PREFIX > body.length) throw new PcpdError(ErrorCodes.REPLICATION_MALFORMED, `body cut inside a chunk prefix at ${at}`);
    const length = view.getUint32(at, true);
    at += CHUNK_PREFIX;
    if (length > W.PERSIST_BUFFER || at + length > body.length)
      throw new PcpdError(ErrorCodes.REPLICATION_MALFORMED, `chunk of ${length} bytes at ${at} runs past the body (${body.length}) or the engine buffer`);
    out.push(body.subarray(at, at + length));
    at += length;
  }
  return out;
}

/** Records in a body (whole records in each chunk). */
export function countRecords(body: Uint8Array): number {
  let n = 0;
  for (const chunk of decodeBody(body)) {
    const view = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    for (let at = 0; at + W.PREC_HEADER_SIZE <= chunk.length; at += recordSize(view, at)) n++;
  }
  return n;
}
