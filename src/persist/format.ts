// On-disk frames of the journal and snapshot files. Every frame carries a CRC-32 of
// everything after the CRC field, the wall-clock time and the Epoch when it was written
// (the Epoch continues from the last frame at restart), and a sequence number.
//
//   0  u32 magic "PCPF"          16 u32 wall-clock seconds at write
//   4  u32 CRC-32 of [8, end)    20 u32 Epoch at write
//   8  u8  version, u8 kind      24 u64 sequence number
//  12  u32 payload length        32 payload (META: JSON; RECORDS: PREC_* records; END: u64 record count)
//
// Frames are checked one by one: a reader skips a bad one to the next offset where a
// valid frame starts, so one flipped bit loses one frame. A bad stretch that runs to the
// end of the newest file is a write torn by a crash (what the durability policy allows to
// lose); anything else is corruption: it is reported with the bytes skipped.
import fs from "node:fs";
import { crc32 } from "node:zlib";
import * as W from "../wire.generated.js";

export const MAGIC = 0x46504350; // "PCPF" little-endian
export const VERSION = 3; // 2: records carry the DESCRIPTION (PREC_HEADER_SIZE 72); 3: and a THIRD_PARTY mapping's requester (PREC_REQUESTER)
/**
 * The oldest version still read: version 2 records are version 3 records without a
 * requester (their PREC_REQUESTER byte was written as 0), so an upgrade keeps its state.
 */
export const OLDEST_READABLE = 2;
export const HEADER = 32;
/** Largest payload of a frame: whole records, as much as the engine takes back per call. */
export const MAX_PAYLOAD = W.PERSIST_BUFFER;

export const FRAME_META = 1;
export const FRAME_RECORDS = 2;
export const FRAME_END = 3;
/** Records were let go here (the disk failed longer than persistence.maxBacklogBytes lasts): u64 bytes dropped. */
export const FRAME_GAP = 4;

export interface FrameStamp {
  wall: number;
  epoch: number;
  seq: bigint;
}

export interface Frame extends FrameStamp {
  kind: number;
  payload: Uint8Array;
}

export function encodeFrame(kind: number, payload: Uint8Array, stamp: FrameStamp): Buffer {
  if (payload.length > MAX_PAYLOAD) throw new RangeError(`frame payload of ${payload.length} bytes exceeds ${MAX_PAYLOAD}`);
  const out = Buffer.allocUnsafe(HEADER + payload.length);
  out.writeUInt32LE(MAGIC, 0);
  out.writeUInt8(VERSION, 8);
  out.writeUInt8(kind, 9);
  out.writeUInt16LE(0, 10);
  out.writeUInt32LE(payload.length, 12);
  out.writeUInt32LE(stamp.wall >>> 0, 16);
  out.writeUInt32LE(stamp.epoch >>> 0, 20);
  out.writeBigUInt64LE(stamp.seq, 24);
  out.set(payload, HEADER);
  out.writeUInt32LE(crc32(out.subarray(8)), 4);
  return out;
}

/** A stretch of a file that did not check out: `bytes` skipped from `offset` up to the next valid frame (or the end). */
export type Damage = { kind: "torn" | "corrupt"; offset: number; reason: string; bytes: number };

type Check = { length: number } | { need: true } | { bad: string };

/** Whether a whole, valid frame starts at `at` (header, length, CRC, version). */
function check(bytes: Uint8Array, view: DataView, at: number): Check {
  if (bytes.length - at < HEADER) return { need: true };
  if (view.getUint32(at, true) !== MAGIC) return { bad: "bad magic" };
  const length = view.getUint32(at + 12, true);
  if (length > MAX_PAYLOAD) return { bad: `payload length ${length} out of range` };
  if (bytes.length - at < HEADER + length) return { need: true };
  if (crc32(bytes.subarray(at + 8, at + HEADER + length)) !== view.getUint32(at + 4, true)) return { bad: "checksum mismatch" };
  const version = view.getUint8(at + 8);
  if (version < OLDEST_READABLE || version > VERSION) return { bad: `format version ${version}` };
  return { length };
}

const MAGIC_BYTES = new Uint8Array(new Uint32Array([MAGIC]).buffer); // the byte order written (little-endian hosts)

export interface Decoded {
  frames: Frame[];
  /** Where a reader with more bytes should go on from. */
  consumed: number;
  /** Damaged stretches closed in these bytes (offsets: `base` + index). */
  damage: Damage[];
  /** A damaged stretch still open at `consumed` (its end is in bytes not read yet). */
  open?: Damage;
}

/**
 * Frames from `bytes` (file offset `base`), each checked on its own: after a frame that
 * does not check out the reader resynchronises at the next offset where a whole valid
 * frame starts (magic, length, CRC), so a damaged frame loses only itself. `final`: no
 * more bytes follow; `last`: this is the end of the newest file, the only place a write
 * can be torn by a crash. `open`: a damaged stretch carried over from the previous bytes.
 */
export function decodeFrames(bytes: Uint8Array, final: boolean, last: boolean, base = 0, open?: Damage): Decoded {
  const frames: Frame[] = [];
  const damage: Damage[] = [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  while (at < bytes.length) {
    const c = check(bytes, view, at);
    if ("length" in c) {
      if (open) {
        open.bytes = base + at - open.offset;
        damage.push(open);
        open = undefined;
      }
      frames.push({
        kind: view.getUint8(at + 9),
        wall: view.getUint32(at + 16, true),
        epoch: view.getUint32(at + 20, true),
        seq: view.getBigUint64(at + 24, true),
        payload: bytes.subarray(at + HEADER, at + HEADER + c.length),
      });
      at += HEADER + c.length;
      continue;
    }
    if ("need" in c && !final) break; // the rest comes with the next bytes
    open ??= { kind: "corrupt", offset: base + at, reason: "bad" in c ? c.bad : "frame cut short", bytes: 0 };
    const next = buf.indexOf(MAGIC_BYTES, at + 1);
    if (next >= 0) {
      at = next;
      continue;
    }
    // No frame starts here: keep the last 3 bytes (a magic may straddle) unless nothing follows.
    at = final ? bytes.length : Math.max(at + 1, bytes.length - 3);
    if (!final) break;
  }
  if (final && open) {
    open.bytes = base + bytes.length - open.offset;
    // Torn: the damage runs to the end of the newest file and is no longer than one frame.
    if (last && open.bytes <= HEADER + MAX_PAYLOAD) open.kind = "torn";
    damage.push(open);
    open = undefined;
  }
  return { frames, consumed: at, damage, open };
}

/** Bytes read per step (frames may straddle steps). */
const READ_CHUNK = 16 * 1024 * 1024;

/**
 * Reads a file's frames in steps, resynchronising after damage (decodeFrames); returns
 * every damaged stretch. Asynchronous reads: a snapshot checked while serving holds the
 * packet path for one step's CRC at most. `onFrame` may refuse a frame (a file of another
 * shard layout): reading stops there and the refusal is returned as damage.
 */
export async function readFrames(path: string, last: boolean, onFrame: (f: Frame) => Damage | undefined): Promise<Damage[]> {
  const file = await fs.promises.open(path, "r");
  const damage: Damage[] = [];
  try {
    const size = (await file.stat()).size;
    let carry = Buffer.alloc(0);
    let position = 0;
    let open: Damage | undefined;
    for (;;) {
      const chunk = Buffer.allocUnsafe(Math.min(READ_CHUNK, size - position));
      const got = chunk.length > 0 ? (await file.read(chunk, 0, chunk.length, position)).bytesRead : 0;
      position += got;
      const bytes = carry.length > 0 ? Buffer.concat([carry, chunk.subarray(0, got)]) : chunk.subarray(0, got);
      const start = position - bytes.length; // file offset of bytes[0]
      const final = position >= size || got === 0;
      const r = decodeFrames(bytes, final, last, start, open);
      open = r.open;
      damage.push(...r.damage);
      for (const f of r.frames) {
        const refused = onFrame(f);
        if (refused) return [...damage, refused];
      }
      if (final) return damage;
      carry = Buffer.from(bytes.subarray(r.consumed));
    }
  } finally {
    await file.close();
  }
}

/** A snapshot's first damage: a frame that does not check out, or no end frame. */
export async function verifySnapshot(path: string): Promise<Damage | undefined> {
  let ended = false;
  const damage = await readFrames(path, false, (f) => void (ended ||= f.kind === FRAME_END));
  return damage[0] ?? (ended ? undefined : { kind: "corrupt", offset: fs.statSync(path).size, reason: "snapshot without its end frame", bytes: 0 });
}
