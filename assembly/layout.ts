// Record layouts of the engine's tables: byte offsets inside subscriber, mapping, PEER and
// filter records (docs/engine.md has the sizes). Ids are 1-based; 0 means none. Free
// records chain through one field. No state here.

// Subscriber (64 bytes)
export const S_ADDR: u32 = 0; // 16
export const S_REALM: u32 = 16;
export const S_POOL: u32 = 20; // u16 paired IPv4 pool index, NO_POOL when no IPv4 block
export const S_BLOCK_COUNT: u32 = 22; // u8
export const S_MAPPINGS: u32 = 24; // live mappings
export const S_HELD: u32 = 28; // held ports
export const S_LIST: u32 = 32; // first mapping of the subscriber (live and held)
export const S_NEXT_FREE: u32 = 36;
export const S_BLOCKS: u32 = 40; // u16 × 8: block number | family << 15
export const S_POOL6: u32 = 56; // u16 paired IPv6 pool index
export const S_CHECKPOINTS: u32 = 58; // u16 live check-pointed mappings [RFC 7767]
export const SUB_SIZE: u32 = 64;
export const NO_POOL: u32 = 0xffff;
export const BLOCK_FAMILY_BIT: u32 = 0x8000;

/** Pairing is per external family: one IPv4 and one IPv6 address per subscriber. */
@inline export function pairedPool(s: usize, family: u32): u32 {
  return <u32>load<u16>(s + (family != 0 ? S_POOL6 : S_POOL));
}
@inline export function setPaired(s: usize, family: u32, pool: u32): void {
  store<u16>(s + (family != 0 ? S_POOL6 : S_POOL), <u16>pool);
}

// Mapping (64 bytes). Protocol + flags, external port + pool, and the two expiries stay
// adjacent and in the event record's order: events.ts describeInto copies each pair in one store.
export const M_SUB: u32 = 0;
export const M_INTERNAL_PORT: u32 = 4; // u16
export const M_PROTOCOL: u32 = 6; // u8
export const M_FLAGS: u32 = 7; // u8 MAPF_*
export const M_EXTERNAL_PORT: u32 = 8; // u16
export const M_POOL: u32 = 10; // u16
export const M_NONCE: u32 = 12; // 12
export const M_MAP_EXPIRY: u32 = 24; // inbound expiry; hold end while held
export const M_OUT_EXPIRY: u32 = 28;
export const M_WHEEL_NEXT: u32 = 32; // also the free-list link
export const M_WHEEL_PREV: u32 = 36;
export const M_SUB_NEXT: u32 = 40;
export const M_SUB_PREV: u32 = 44;
export const M_FILTERS: u32 = 48; // first filter
export const M_PEERS: u32 = 52; // first PEER record
export const M_CLIENT_PORT: u32 = 56; // u16
export const M_REQUESTER: u32 = 58; // u8 its THIRD_PARTY requester (requesters.ts): 0 none, shared 1..254, 255 its own
export const M_FAMILY: u32 = 59; // u8
export const M_PERSISTED: u32 = 60; // effective expiry last written to the journal (persistence skips refreshes that barely move it)
export const MAPPING_SIZE: u32 = 64;

// PEER record (44 bytes)
export const P_MAPPING: u32 = 0;
export const P_REMOTE_ADDR: u32 = 4; // 16
export const P_REMOTE_PORT: u32 = 20; // u16
export const P_NONCE: u32 = 24; // 12
export const P_EXPIRY: u32 = 36;
export const P_NEXT: u32 = 40; // next PEER of the mapping / free list
export const PEER_SIZE: u32 = 44;

// Filter (24 bytes)
export const F_PREFIX: u32 = 0; // u8
export const F_PORT: u32 = 2; // u16
export const F_ADDR: u32 = 4; // 16
export const F_NEXT: u32 = 20;
export const FILTER_SIZE: u32 = 24;
@inline export function nonceEqual(a: usize, b: usize): bool {
  return load<u64>(a) == load<u64>(b) && load<u32>(a, 8) == load<u32>(b, 8);
}
