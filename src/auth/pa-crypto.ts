// Key derivation and message tags of PCP authentication [RFC 7652 §4, §6.1, §6.2]. The
// algorithms are the ones the RFC makes mandatory, and the only ones this server offers:
// PRF_HMAC_SHA2_256 (IKEv2 transform 5) and AUTH_HMAC_SHA2_256_128 (transform 12) [RFC 4868].
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
  return createHmac("sha256", key).update(message).digest().subarray(0, W.HMAC_SHA2_256_128_SIZE);
}

/**
 * Checks the tag whose Authentication Data is `message[at, at + size)`: the MAC of the
 * message with that field read as zero (fed to the HMAC in three parts: no copy of the
 * message), compared in constant time [7652 §6.2].
 */
export function verifyMac(alg: number, key: Uint8Array, message: Uint8Array, at: number, size: number): boolean {
  if (size !== macSize(alg) || at + size > message.length) return false;
  if (alg !== W.AUTH_HMAC_SHA2_256_128) throw new RangeError(`unsupported MAC algorithm ${alg}`);
  const digest = createHmac("sha256", key)
    .update(message.subarray(0, at))
    .update(ZEROS.subarray(0, size))
    .update(message.subarray(at + size))
    .digest();
  return timingSafeEqual(message.subarray(at, at + size), digest.subarray(0, size));
}

const ZEROS = new Uint8Array(64);

/** Fills `message[at, at + size)` with the MAC of the message (that field zero while computing). */
export function signAt(alg: number, key: Uint8Array, message: Buffer, at: number): void {
  const size = macSize(alg);
  message.fill(0, at, at + size);
  mac(alg, key, message).copy(message, at);
}
