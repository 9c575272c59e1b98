// The embedded-store alternative to src/persist, for bench/store-faults.bench.ts only: the
// same portable records (PREC_*, src/engine persistPending), one lmdb entry per external
// key (the key's latest state; a PREC_GONE record deletes it). lmdb-js queues the puts of
// an event-loop turn and commits them on its own write thread (sync commits, the default):
// as with the journal, a reply leaves before its record is durable.
import { open, type RootDatabase } from "lmdb";
import * as W from "../../src/wire.generated.js";
import type { PacketEngine } from "../../src/engine/packet-engine.js";

/** A record's length: header, FILTERs, PEERs, DESCRIPTION, THIRD_PARTY_ID. */
function recordLength(v: DataView, at: number): number {
  return (
    W.PREC_HEADER_SIZE +
    v.getUint8(at + W.PREC_FILTER_COUNT) * W.PREC_FILTER_SIZE +
    v.getUint8(at + W.PREC_PEER_COUNT) * W.PREC_PEER_SIZE +
    v.getUint8(at + W.PREC_DESCRIPTION_LENGTH) +
    v.getUint8(at + W.PREC_REALM_ID_LENGTH)
  );
}

/** External key: family, protocol, external port, external address (20 bytes). */
function keyOf(r: Uint8Array): Buffer {
  const k = Buffer.allocUnsafe(20);
  k[0] = r[W.PREC_FAMILY];
  k[1] = r[W.PREC_PROTOCOL];
  k[2] = r[W.PREC_EXTERNAL_PORT];
  k[3] = r[W.PREC_EXTERNAL_PORT + 1];
  k.set(r.subarray(W.PREC_EXTERNAL_ADDR, W.PREC_EXTERNAL_ADDR + 16), 4);
  return k;
}

export class LmdbStore {
  readonly db: RootDatabase<Uint8Array, Buffer>;
  writeErrors = 0;
  lastError = "";
  private last: Promise<unknown> = Promise.resolve();

  constructor(path: string) {
    this.db = open<Uint8Array, Buffer>({ path, encoding: "binary", keyEncoding: "binary" });
  }

  append(parts: Uint8Array[]): void {
    for (const p of parts) {
      const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
      for (let at = 0; at < p.length; ) {
        const n = recordLength(v, at);
        const r = p.slice(at, at + n);
        const put = r[W.PREC_KIND] === W.PREC_GONE ? this.db.remove(keyOf(r)) : this.db.put(keyOf(r), r);
        this.last = put.catch((e: Error) => {
          this.writeErrors++;
          this.lastError = e.message;
        });
        at += n;
      }
    }
  }

  /** Resolves when everything put so far is committed (or failed). */
  flushed(): Promise<unknown> {
    return this.last;
  }

  /** Every entry into `engine`; returns record bytes taken. */
  restore(engine: PacketEngine, wallOffset: number, now: number): number {
    let bytes = 0;
    for (const { value } of this.db.getRange()) bytes += engine.restore(value, wallOffset, now);
    return bytes;
  }

  close(): Promise<void> {
    return this.db.close();
  }
}
