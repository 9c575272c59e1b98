// Byte access for wire data. Callers check a region's length once, then read fields
// through these helpers without further bounds checks (the slot's data area is fixed
// size, so a read inside a checked region never leaves linear memory).

@inline export function rd16(p: usize): u32 {
  return <u32>bswap<u16>(load<u16>(p));
}

@inline export function rd32(p: usize): u32 {
  return bswap<u32>(load<u32>(p));
}

@inline export function wr16(p: usize, v: u32): void {
  store<u16>(p, bswap<u16>(<u16>v));
}

@inline export function wr32(p: usize, v: u32): void {
  store<u32>(p, bswap<u32>(v));
}

/** 16-byte address equality. */
@inline export function addrEqual(a: usize, b: usize): bool {
  return load<u64>(a) == load<u64>(b) && load<u64>(a, 8) == load<u64>(b, 8);
}

/** `::ffff:0:0/96`: the whole 96-bit prefix is compared [6887 §5]. */
@inline export function isV4Mapped(p: usize): bool {
  // bytes 8..11 = 00 00 ff ff, read little-endian
  return load<u64>(p) == 0 && load<u32>(p, 8) == 0xffff0000;
}

/** Unspecified (`::`, `::ffff:0.0.0.0`), loopback (`::1`, 127/8) or multicast (ff00::/8, 224/4). */
export function isUnusablePeer(p: usize): bool {
  if (isV4Mapped(p)) {
    const a = load<u8>(p, 12);
    return load<u32>(p, 12) == 0 || a == 127 || (a & 0xf0) == 0xe0;
  }
  if (load<u8>(p) == 0xff) return true;
  if (load<u64>(p) != 0 || load<u32>(p, 8) != 0) return false;
  const tail = bswap<u32>(load<u32>(p, 12));
  return tail == 0 || tail == 1;
}

/**
 * Strict UTF-8 (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF); NUL is
 * refused too because DESCRIPTION text must not carry terminators [7220 §2].
 */
export function isCleanUtf8(p: usize, n: u32): bool {
  let i: u32 = 0;
  while (i < n) {
    const c = <u32>load<u8>(p + i);
    if (c < 0x80) {
      if (c == 0) return false;
      i++;
      continue;
    }
    let need: u32 = 0;
    let lo: u32 = 0x80;
    let hi: u32 = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) need = 1;
    else if (c == 0xe0) { need = 2; lo = 0xa0; }
    else if (c == 0xed) { need = 2; hi = 0x9f; }
    else if (c >= 0xe1 && c <= 0xef) need = 2;
    else if (c == 0xf0) { need = 3; lo = 0x90; }
    else if (c >= 0xf1 && c <= 0xf3) need = 3;
    else if (c == 0xf4) { need = 3; hi = 0x8f; }
    else return false;
    if (n - i <= need) return false;
    const c1 = <u32>load<u8>(p + i + 1);
    if (c1 < lo || c1 > hi) return false;
    for (let k: u32 = 2; k <= need; k++) {
      const ck = <u32>load<u8>(p + i + k);
      if ((ck & 0xc0) != 0x80) return false;
    }
    i += need + 1;
  }
  return true;
}

// Small fixed-size copies and clears as plain loads/stores: V8 runs memory.copy/fill as
// out-of-line calls, which cost more than the bytes they move at these sizes.

@inline export function copy16(dst: usize, src: usize): void {
  store<u64>(dst, load<u64>(src));
  store<u64>(dst, load<u64>(src, 8), 8);
}

@inline export function copy12(dst: usize, src: usize): void {
  store<u64>(dst, load<u64>(src));
  store<u32>(dst, load<u32>(src, 8), 8);
}

/** Zeroes `n` bytes (a multiple of 4) at `p`. */
@inline export function zero4(p: usize, n: u32): void {
  let i: u32 = 0;
  for (; i + 8 <= n; i += 8) store<u64>(p + i, 0);
  if (i < n) store<u32>(p + i, 0);
}
