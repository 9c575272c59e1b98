// On-disk frames of the journal and snapshot files. Every frame carries a CRC-32 of
// everything after the CRC field, the wall-clock time and the Epoch when it was written
// (the Epoch continues from the last frame at restart), and a sequence number.
//
//   0  u32 magic "PCPF"          16 u32 wall-clock seconds at write
//   4  u32 CRC-32 of [8, end)    20 u32 Epoch at write
//   8  u8  version, u8 kind      24 u64 sequence number
//  12  u32 payload length        32 payload (META: JSON; RECORDS: PREC_* records; END: u64 record count)
//
// Reading stops at the first frame that does not check out. A bad frame that runs to the
// end of the last file is a write torn by a crash (what the durability policy allows to
// lose); anything else is corruption: the frames before it are kept and it is reported.
import { crc32 } from "node:zlib";
import * as W from "../wire.generated.js";

export const MAGIC = 0x46504350; // "PCPF" little-endian
export const VERSION = 3; // 2: records carry the DESCRIPTION (PREC_HEADER_SIZE 72); 3: and a THIRD_PARTY mapping's requester (PREC_REQUESTER)
export const HEADER = 32;
/** Largest payload of a frame: whole records, as much as the engine takes back per call. */
export const MAX_PAYLOAD = W.PERSIST_BUFFER;

export const FRAME_META = 1;
export const FRAME_RECORDS = 2;
export const FRAME_END = 3;

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

export type Damage = { kind: "torn" | "corrupt"; offset: number; reason: string };

/**
 * Frames from `bytes`, stopping at the first that does not check
 * out. `last` says whether this is the end of the newest file (only there can a write be
 * torn). `consumed` is where a reader with more bytes should go on from.
 */
export function decodeFrames(bytes: Uint8Array, final: boolean, last: boolean): { frames: Frame[]; consumed: number; damage?: Damage } {
  const frames: Frame[] = [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  const bad = (reason: string, extent: number): { frames: Frame[]; consumed: number; damage: Damage } => {
    // Torn: the bad frame reaches the end of the newest file and is no longer than one write.
    const torn = last && final && at + extent >= bytes.length && bytes.length - at <= HEADER + MAX_PAYLOAD;
    return { frames, consumed: at, damage: { kind: torn ? "torn" : "corrupt", offset: at, reason } };
  };
  while (at < bytes.length) {
    if (bytes.length - at < HEADER) {
      if (!final) break; // the rest comes with the next chunk
      return bad("frame header cut short", HEADER);
    }
    if (view.getUint32(at, true) !== MAGIC) return bad("bad magic", HEADER);
    const length = view.getUint32(at + 12, true);
    if (length > MAX_PAYLOAD) return bad(`payload length ${length} out of range`, HEADER + length);
    if (bytes.length - at < HEADER + length) {
      if (!final) break;
      return bad("frame cut short", HEADER + length);
    }
    const frame = bytes.subarray(at, at + HEADER + length);
    if (crc32(frame.subarray(8)) !== view.getUint32(at + 4, true)) return bad("checksum mismatch", HEADER + length);
    if (view.getUint8(at + 8) !== VERSION) return bad(`format version ${view.getUint8(at + 8)}`, HEADER + length);
    frames.push({
      kind: view.getUint8(at + 9),
      wall: view.getUint32(at + 16, true),
      epoch: view.getUint32(at + 20, true),
      seq: view.getBigUint64(at + 24, true),
      payload: frame.subarray(HEADER),
    });
    at += HEADER + length;
  }
  return { frames, consumed: at };
}
