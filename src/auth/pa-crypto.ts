// Key derivation and message tags of PCP authentication [RFC 7652 §4, §6.1, §6.2]. The
// algorithms are the ones the RFC makes mandatory, and the only ones this server offers:
// PRF_HMAC_SHA2_256 (IKEv2 transform 5) and AUTH_HMAC_SHA2_256_128 (transform 12) [RFC 4868].
import * as crypto from "node:crypto";
import { createHmac, timingSafeEqual } from "node:crypto";
import * as W from "../wire.generated.js";

export const SUPPORTED_PRFS: readonly number[] = [W.PRF_HMAC_SHA2_256];
export const SUPPORTED_MACS: readonly number[] = [W.AUTH_HMAC_SHA2_256_128];
/** Bytes of Authentication Data for a MAC algorithm (all supported ones: 16). */
export const macSize = (_mac: number): number => W.HMAC_SHA2_256_128_SIZE;

const LABEL = Buffer.from("IETF PCP", "ascii");

/** transport key = prf(MSK, "IETF PCP" || Session ID || Nonce || Key ID) [7652 §4]. */
export function transportKey(prf: number, msk: Uint8Array, sessionId: number, nonce: number, keyId: number): Buffer {
  if (prf !== W.PRF_HMAC_SHA2_256) throw new RangeError(`unsupported PRF ${prf}`);
  const seed = Buffer.alloc(12);
  seed.writeUInt32BE(sessionId >>> 0, 0);
  seed.writeUInt32BE(nonce >>> 0, 4);
  seed.writeUInt32BE(keyId >>> 0, 8);
  return createHmac("sha256", msk).update(LABEL).update(seed).digest();
}

/** MAC over `message` whose Authentication Data field is already zero [7652 §6.1]. */
export function mac(alg: number, key: Uint8Array, message: Uint8Array): Buffer {
  if (alg !== W.AUTH_HMAC_SHA2_256_128) throw new RangeError(`unsupported MAC algorithm ${alg}`);
  return hmacSha256(key, message, 0, 0).subarray(0, W.HMAC_SHA2_256_128_SIZE);
}

/**
 * Checks the tag whose Authentication Data is `message[at, at + size)`: the MAC of the
 * message with that field read as zero (the message itself is not changed), compared in
 * constant time [7652 §6.2].
 */
export function verifyMac(alg: number, key: Uint8Array, message: Uint8Array, at: number, size: number): boolean {
  if (size !== macSize(alg) || at + size > message.length) return false;
  if (alg !== W.AUTH_HMAC_SHA2_256_128) throw new RangeError(`unsupported MAC algorithm ${alg}`);
  return timingSafeEqual(message.subarray(at, at + size), hmacSha256(key, message, at, size).subarray(0, size));
}

// HMAC-SHA-256 [RFC 2104] as two one-shot hashes, H(K ^ opad || H(K ^ ipad || m)), through
// scratch buffers: no Hmac object per message, which cost the tagged path as much again as
// the rest of a request (bench/results/auth-2026-12-05*.json). crypto.hash is Node >= 20.12;
// createHmac otherwise, and for keys longer than a block or messages longer than the scratch.
const hashOnce = (crypto as { hash?: (algorithm: string, data: Uint8Array, encoding: "buffer") => Buffer }).hash;
const BLOCK = 64;
const INNER = Buffer.alloc(BLOCK + 2048);
const OUTER = Buffer.alloc(BLOCK + 32);

/** HMAC-SHA-256 of `message` with `message[zeroAt, zeroAt + zeroSize)` read as zero. */
function hmacSha256(key: Uint8Array, message: Uint8Array, zeroAt: number, zeroSize: number): Buffer {
  if (!hashOnce || key.length > BLOCK || message.length > INNER.length - BLOCK) {
    return createHmac("sha256", key)
      .update(message.subarray(0, zeroAt))
      .update(Buffer.alloc(zeroSize))
      .update(message.subarray(zeroAt + zeroSize))
      .digest();
  }
  for (let i = 0; i < BLOCK; i++) {
    const k = i < key.length ? key[i] : 0;
    INNER[i] = k ^ 0x36;
    OUTER[i] = k ^ 0x5c;
  }
  INNER.set(message, BLOCK);
  INNER.fill(0, BLOCK + zeroAt, BLOCK + zeroAt + zeroSize);
  OUTER.set(hashOnce("sha256", INNER.subarray(0, BLOCK + message.length), "buffer"), BLOCK);
  return hashOnce("sha256", OUTER, "buffer");
}

/** Fills `message[at, at + size)` with the MAC of the message (that field zero while computing). */
export function signAt(alg: number, key: Uint8Array, message: Buffer, at: number): void {
  const size = macSize(alg);
  message.fill(0, at, at + size);
  mac(alg, key, message).copy(message, at);
}
