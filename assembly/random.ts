// The engine's random source (xorshift64*): block order and port choice, so leases and
// ports are unpredictable [RFC 6888 REQ-15, RFC 7422]. Seeded once by engineInit.

let rng: u64 = 0x9e3779b97f4a7c15;

export function seedRandom(seed: u64): void {
  rng = seed == 0 ? 0x9e3779b97f4a7c15 : seed;
}

@inline function random32(): u32 {
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return <u32>((rng * 0x2545f4914f6cdd1d) >> 32);
}

@inline export function randomBelow(n: u32): u32 {
  return <u32>((<u64>random32() * <u64>n) >> 32);
}
