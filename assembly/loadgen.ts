// Synthetic request writer for benchmarks and soak tests: fills batch slots with MAP
// requests for numbered endpoints without a round trip through JavaScript, so a
// benchmark measures the engine and not the host's copying. Endpoint e belongs to
// subscriber e / perSubscriber (internal address 10.s.s.s, nonce derived from s) and uses
// internal port 1024 + e % perSubscriber.

import * as W from "./wire";
import * as A from "./abi";
import { slotsBase } from "./codec";

/**
 * Writes `count` MAP requests into slots [first, first + count) for endpoints
 * `(start + i * stride) mod total`, i = 0.., with `lifetime` (0 = delete) and internal
 * port offset `portOffset` (beyond perSubscriber → endpoints that do not exist).
 */
export function loadgenMap(first: u32, count: u32, start: u32, stride: u32, total: u32, perSubscriber: u32, portOffset: u32, lifetime: u32, protocol: u32): void {
  const end = first + count < A.SLOT_COUNT ? first + count : A.SLOT_COUNT;
  let e = <u64>start % <u64>total;
  for (let i = first; i < end; i++) {
    const slot = slotsBase() + <usize>i * A.SLOT_SIZE;
    const d = slot + A.SLOT_DATA;
    const s = <u32>(e / perSubscriber);
    const port = 1024 + <u32>(e % perSubscriber) + portOffset;
    const addr = bswap<u32>(0x0a000000 | (s & 0xffffff));
    // slot header
    store<u64>(slot + A.SLOT_SRC_ADDR, 0);
    store<u32>(slot + A.SLOT_SRC_ADDR + 8, 0xffff0000);
    store<u32>(slot + A.SLOT_SRC_ADDR + 12, addr);
    store<u16>(slot + A.SLOT_SRC_PORT, <u16>(40000 + (s & 0x3ff)));
    store<u16>(slot + A.SLOT_WIRE_LEN, <u16>W.MAP_MIN_SIZE);
    store<u8>(slot + A.SLOT_INGRESS, A.INGRESS_SUBSCRIBER);
    store<u8>(slot + A.SLOT_HOST_FLAGS, 0);
    // MAP request [6887 §11.1]
    store<u32>(d, <u32>W.PCP_VERSION | (<u32>W.OP_MAP << 8));
    store<u32>(d + W.HDR_LIFETIME, bswap<u32>(lifetime));
    store<u64>(d + W.HDR_CLIENT_ADDR, 0);
    store<u32>(d + W.HDR_CLIENT_ADDR + 8, 0xffff0000);
    store<u32>(d + W.HDR_CLIENT_ADDR + 12, addr);
    store<u64>(d + W.MP_NONCE, 0x5851f42d4c957f2d * <u64>(s + 1));
    store<u32>(d + W.MP_NONCE + 8, s ^ 0xa5a5a5a5);
    store<u32>(d + W.MP_PROTOCOL, protocol);
    store<u16>(d + W.MP_INTERNAL_PORT, bswap<u16>(<u16>port));
    store<u16>(d + W.MP_EXTERNAL_PORT, 0);
    store<u64>(d + W.MP_EXTERNAL_ADDR, 0);
    store<u32>(d + W.MP_EXTERNAL_ADDR + 8, 0xffff0000);
    store<u32>(d + W.MP_EXTERNAL_ADDR + 12, 0);
    e += stride;
    if (e >= total) e %= total;
  }
}
