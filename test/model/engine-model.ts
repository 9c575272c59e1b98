// A simple, independent model of the mapping engine's rules (docs/engine.md), for
// model-based property tests: random operation sequences run against the WASM engine and
// this model must agree. Plain Maps with string keys and plain loops; nothing is clever,
// nothing is fast. Where docs/engine.md leaves a choice open, the reading closest to
// RFC 6887 is taken and listed here:
//
// M1  Time. A part (inbound MAP part, PEER record) is live while its expiry > now; a hold
//     while its end > now. Every operation first runs expire(now), so the state seen at
//     `now` does not depend on when expire() was last called. The harness should call the
//     engine's expire(now) before each operation too.
// M2  A hold runs from the moment its mapping ended — the expiry of its last part, or the
//     delete's `now` — for holdDown seconds, even when expire() is called late. So one late
//     expire(now) may end a mapping and release its hold.
// M3  External ports are taken per (protocol, address, port): one subscriber's TCP and UDP
//     mappings may share an external port number (RFC 6887 mappings are per protocol;
//     blocks keep every other subscriber off both). `portScope: 'address'` in the config
//     makes a port taken for all protocols instead.
// M4  Holds are kept apart from mappings. A MAP/PEER on a held endpoint with another nonce
//     is a new mapping on another port; the hold runs on (RFC 6887 §15: only the same
//     client may reclaim). Holds count towards maxMappings.
// M5  Reclaim = same endpoint (subscriber, protocol, internal port, external family) and the
//     hold's nonce (NAT-PMP uses the zero nonce; holds of PCP mappings keep their nonce).
//     The held port is used whatever the suggestion; a suggestion naming another port fails
//     with CANNOT_PROVIDE_EXTERNAL only under PREFER_FAILURE semantics (MAP with the option,
//     every PEER). Reclaim is a new mapping for the quota, but reuses its record (no
//     table-full failure).
// M6  A suggestion exists iff suggestedPort ≠ 0; an address without a port is ignored
//     ("names … and a port", docs/engine.md MAP 4). In suggestions the all-zeros address
//     of a family matches any address (for honouring and for "suggestion ≠ existing").
// M7  An honourable suggestion is granted exactly (a determined outcome); parity is not
//     required of a suggested port. All-zeros address + port for a subscriber without an
//     address in that family: any pool address where the port is usable is legal.
// M8  Order of checks. Existing inbound part: nonce → PREFER_FAILURE → FILTER count. New
//     mapping: subscriber quota (USER_EX_QUOTA) → table full (NO_RESOURCES) → PEER table
//     full (PEERs only) → suggestion under PREFER_FAILURE (CANNOT_PROVIDE_EXTERNAL) → block
//     exhaustion (USER_EX_QUOTA at maxBlocksPerSubscriber, else NO_RESOURCES) → FILTER count
//     (EXCESSIVE_REMOTE_PEERS). A failure changes nothing (not even a relaxed nonce).
// M9  mappingsPerSubscriber counts live mappings of every kind (static, MAP, PEER-only) over
//     both families. maxBlocksPerSubscriber is one total over both families. Pairing is per
//     family: at most one IPv4 and one IPv6 external address per subscriber.
// M10 Blocks of an address: ceil((65536 − portMin) / blockSize); the last may be shorter.
//     Ownership is derived: a block is owned by the subscriber whose mappings/holds use it.
//     A first block (no address yet in the family) comes from an address of the family with
//     the most free blocks (ties: any of them).
// M11 FILTERs form a set: an identical (prefix, port, address) is not added twice; prefix 0
//     clears. They belong to the inbound part and go with it. A static hit ignores FILTERs.
// M12 PEER: a nonce mismatch is NOT_AUTHORIZED under noncePolicy strict; relaxed: the new
//     nonce replaces the record's (one-shot clients refresh their own 5-tuple); lifetime
//     = max(clamp(L, peerMinLifetime, maxLifetime), remaining) for every L including 0; a new
//     record gets clamp(L). A PEER on a static mapping adds a record. A PEER-created mapping
//     stores the creating PEER's nonce (used by its hold).
// M13 NOT_AUTHORIZED carries expiry − now only for nonce mismatches (MAP create/refresh, MAP
//     delete, PEER). Other PCP errors, including NOT_AUTHORIZED for deleting a static or a
//     PEER-only mapping, carry CODEC_ERROR_LIFETIME (−1): the codec's configured error
//     lifetime, not decided by the engine's rules. Error outcomes carry no external
//     address/port; a delete echoes the suggested address/port.
// M14 NAT-PMP: IPv4 external family only. No IPv4 pool address → 3; protocol not in
//     `protocols` → 2. An existing mapping is refreshed without touching its stored nonce
//     (a PEER-only one gains an inbound part with the zero nonce); static → lifetime
//     0xFFFFFFFF. Delete removes only the inbound part (PEER-only → result 0, nothing
//     changes). Delete-all covers the subscriber's IPv4-external mappings of that protocol.
//     Success outcomes also carry externalAddress (not on the wire; from the engine's lookup).
// M15 MAP lifetime 0 validates neither protocol nor family: what does not exist is deleted
//     with SUCCESS.
// M16 addStatic (extra): the port must be usable as an honourable PREFER_FAILURE suggestion
//     (pool address, pairing, free, not reserved, own or leasable block); it counts towards
//     the quota and the table. Returns 0 or a PCP result code (compare zero/non-zero only).
//
// Not modelled: shards (a sharded engine's "most free blocks" and block set differ),
// removeStatic / deleteSubscriber, realms (THIRD_PARTY_ID), maxSubscribers / maxFilters,
// events, expire budgets. Cost is O(mappings) per operation: meant for small tables.
//
// The harness should feed canonical address text, or compare through canonicalAddress().
// Requests the codec rejects (PREFER_FAILURE with port 0 or lifetime 0, FILTER with
// lifetime 0, PEER with zero fields, bad FILTER prefixes) should not be generated.

export interface ModelConfig {
  minLifetime: number;
  maxLifetime: number;
  peerMinLifetime: number;
  holdDown: number;
  mappingsPerSubscriber: number;
  maxBlocksPerSubscriber: number;
  blockSize: number;
  portMin: number;
  excludedPorts: number[];
  filtersPerMapping: number;
  maxMappings: number;
  maxPeers: number;
  noncePolicy: "strict" | "relaxed";
  protocols: number[];
  parity: boolean;
  pool: string[]; // external addresses, text ('203.0.113.1', '2001:db8::1')
  /** M3: which external ports collide. Default 'protocol'. */
  portScope?: "protocol" | "address";
}
export interface FilterInput {
  prefixLength: number;
  port: number;
  address: string;
}
export interface MapInput {
  now: number;
  subscriber: string /* internal address text */;
  protocol: number;
  internalPort: number;
  lifetime: number;
  nonce: string /* 24 hex chars */;
  suggestedPort: number;
  suggestedAddress: string /* '0.0.0.0' or '::' = any of that family */;
  preferFailure: boolean;
  filters: FilterInput[];
}
export interface PeerInput {
  now: number;
  subscriber: string;
  protocol: number;
  internalPort: number;
  lifetime: number;
  nonce: string;
  suggestedPort: number;
  suggestedAddress: string;
  remoteAddress: string;
  remotePort: number;
}
export interface NatPmpMapInput {
  now: number;
  subscriber: string /* IPv4 text */;
  protocol: 6 | 17;
  internalPort: number;
  suggestedPort: number;
  lifetime: number;
}
export interface NatPmpDeleteInput {
  now: number;
  subscriber: string;
  protocol: 6 | 17;
  internalPort: number;
}
export interface Outcome {
  result: number;
  lifetime: number;
  externalAddress?: string;
  externalPort?: number;
}
/** What the engine under test chose when it had freedom (a new allocation). */
export interface Allocation {
  externalAddress: string;
  externalPort: number;
}
export type Pending = { kind: "allocate"; check(a: Allocation): string | null; commit(a: Allocation): Outcome };

export const RESULT = {
  SUCCESS: 0,
  NOT_AUTHORIZED: 2,
  NO_RESOURCES: 8,
  UNSUPP_PROTOCOL: 9,
  USER_EX_QUOTA: 10,
  CANNOT_PROVIDE_EXTERNAL: 11,
  EXCESSIVE_REMOTE_PEERS: 13,
} as const;
export const NATPMP_RESULT = { SUCCESS: 0, REFUSED: 2, NETWORK_FAILURE: 3, OUT_OF_RESOURCES: 4 } as const;
/** Lifetime reported for static mappings (docs/engine.md MAP 3). */
export const STATIC_LIFETIME = 0xffffffff;
/** M13: an error whose lifetime is the codec's configured error lifetime. */
export const CODEC_ERROR_LIFETIME = -1;
export const ZERO_NONCE = "0".repeat(24);

export function isPending(x: Outcome | Pending): x is Pending {
  return (x as Pending).kind === "allocate";
}

// ---------------------------------------------------------------- addresses

type Family = 4 | 6;

function parseV4(text: string): number[] | null {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  const out: number[] = [];
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) return null;
    out.push(Number(p));
  }
  return out;
}

/** 16 bytes; IPv4 text becomes v4-mapped (::ffff:a.b.c.d). Throws on bad text. */
export function parseAddress(text: string): number[] {
  let t = text.trim().toLowerCase();
  if (!t.includes(":")) {
    const v4 = parseV4(t);
    if (!v4) throw new Error(`bad address ${text}`);
    return [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...v4];
  }
  const lastColon = t.lastIndexOf(":");
  if (t.slice(lastColon + 1).includes(".")) {
    const v4 = parseV4(t.slice(lastColon + 1));
    if (!v4) throw new Error(`bad address ${text}`);
    t = `${t.slice(0, lastColon + 1)}${((v4[0] << 8) | v4[1]).toString(16)}:${((v4[2] << 8) | v4[3]).toString(16)}`;
  }
  const halves = t.split("::");
  if (halves.length > 2) throw new Error(`bad address ${text}`);
  const head = halves[0] ? halves[0].split(":") : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(":") : [];
  const fill = 8 - head.length - tail.length;
  if (halves.length === 1 ? fill !== 0 : fill < 1) throw new Error(`bad address ${text}`);
  const words = [...head, ...Array<string>(halves.length === 2 ? fill : 0).fill("0"), ...tail];
  const bytes: number[] = [];
  for (const w of words) {
    if (!/^[0-9a-f]{1,4}$/.test(w)) throw new Error(`bad address ${text}`);
    const v = parseInt(w, 16);
    bytes.push(v >> 8, v & 0xff);
  }
  return bytes;
}

function isV4Mapped(b: number[]): boolean {
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

const canonicalCache = new Map<string, string>();

/** Dotted quad for v4-mapped addresses, RFC 5952 text for the rest. */
export function canonicalAddress(text: string): string {
  let c = canonicalCache.get(text);
  if (c === undefined) {
    c = formatAddress(parseAddress(text));
    if (canonicalCache.size < 100_000) canonicalCache.set(text, c);
  }
  return c;
}

function formatAddress(b: number[]): string {
  if (isV4Mapped(b)) return b.slice(12).join(".");
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push((b[i] << 8) | b[i + 1]);
  let bestAt = -1,
    bestLen = 1; // only runs of ≥ 2 zero words are shortened
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) {
      bestAt = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (ws: number[]) => ws.map((w) => w.toString(16)).join(":");
  if (bestAt < 0) return hex(words);
  return `${hex(words.slice(0, bestAt))}::${hex(words.slice(bestAt + bestLen))}`;
}

/** docs/engine.md MAP: v4-mapped → IPv4; anything else → IPv6. */
export function familyOf(text: string): Family {
  return canonicalAddress(text).includes(":") ? 6 : 4;
}

function isAnyAddress(canon: string): boolean {
  return canon === "0.0.0.0" || canon === "::";
}

// ---------------------------------------------------------------- state

interface Filter {
  prefixLength: number;
  port: number;
  address: string;
}
interface PeerRecord {
  nonce: string;
  expiry: number;
}
interface Mapping {
  subscriber: string;
  protocol: number;
  internalPort: number;
  family: Family;
  address: string;
  port: number;
  isStatic: boolean;
  nonce: string; // nonce of the inbound part, or of the creating PEER (M12)
  mapExpiry: number | null; // inbound (MAP / NAT-PMP) part; null = none
  filters: Filter[];
  peers: Map<string, PeerRecord>; // key: remote address|remote port
}
interface Hold {
  subscriber: string;
  protocol: number;
  internalPort: number;
  family: Family;
  nonce: string;
  address: string;
  port: number;
  until: number;
}

/** A snapshot for harnesses (compare with the engine's lookup). */
export interface MappingView {
  externalAddress: string;
  externalPort: number;
  isStatic: boolean;
  nonce: string;
  mapExpiry: number | null;
  peerExpiry: number | null;
  filters: Filter[];
  peers: number;
}

type Suggestion = { address: string; port: number } | null;
type Fail = { fail: number };
type Choice = { fixed: Allocation } | { choose: (a: Allocation) => string | null };

/** What a new (or reclaimed) mapping needs; `apply` fills in its parts and builds the reply. */
interface NewMapping {
  now: number;
  subscriber: string;
  protocol: number;
  internalPort: number;
  family: Family;
  nonce: string;
  suggestion: Suggestion;
  preferFailure: boolean;
  filters: FilterInput[] | null; // MAP only
  needsPeer: boolean; // PEER creates a record too
  apply(m: Mapping): Outcome;
}

function clamp(v: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, v));
}

export class EngineModel {
  private readonly cfg: ModelConfig;
  private readonly pool: string[];
  private readonly blocksPerAddress: number;
  private readonly mappings = new Map<string, Mapping>(); // key: endpointKey
  private readonly holds = new Map<string, Hold>(); // key: portKey
  private version = 0; // bumped on every change; a Pending may only commit on its version

  constructor(config: ModelConfig) {
    this.cfg = { ...config, excludedPorts: [...config.excludedPorts], protocols: [...config.protocols] };
    this.pool = config.pool.map(canonicalAddress);
    // M10: [portMin, 65535] cut into blockSize pieces, the last one possibly shorter.
    this.blocksPerAddress = Math.ceil((65536 - config.portMin) / config.blockSize);
  }

  // ------------------------------------------------------------ keys

  private endpointKey(sub: string, protocol: number, internalPort: number, family: Family): string {
    return `${sub}|${protocol}|${internalPort}|${family}`;
  }
  /** M3 */
  private portKey(protocol: number, address: string, port: number): string {
    return this.cfg.portScope === "address" ? `${address}|${port}` : `${protocol}|${address}|${port}`;
  }
  private blockIndex(port: number): number {
    return Math.floor((port - this.cfg.portMin) / this.cfg.blockSize);
  }
  private blockKey(address: string, port: number): string {
    return `${address}#${this.blockIndex(port)}`;
  }
  private poolOf(family: Family): string[] {
    return this.pool.filter((a) => familyOf(a) === family);
  }

  // ------------------------------------------------------------ derived views

  /** Mappings and holds alike: everything that occupies an external port. */
  private occupants(): { subscriber: string; protocol: number; address: string; port: number }[] {
    return [...this.mappings.values(), ...this.holds.values()];
  }
  /** Block → owning subscriber (docs/engine.md State: a block is leased while used). */
  private blockOwners(): Map<string, string> {
    const owners = new Map<string, string>();
    for (const o of this.occupants()) owners.set(this.blockKey(o.address, o.port), o.subscriber);
    return owners;
  }
  private takenPorts(): Set<string> {
    const taken = new Set<string>();
    for (const o of this.occupants()) taken.add(this.portKey(o.protocol, o.address, o.port));
    return taken;
  }
  private blocksOf(sub: string, owners: Map<string, string>): string[] {
    const out: string[] = [];
    for (const [block, owner] of owners) if (owner === sub) out.push(block);
    return out;
  }
  /** Paired pooling (RFC 6888 REQ-2), per family (M9). */
  private pairedAddress(sub: string, family: Family): string | undefined {
    for (const o of this.occupants()) if (o.subscriber === sub && familyOf(o.address) === family) return o.address;
    return undefined;
  }
  private liveMappingsOf(sub: string): number {
    let n = 0;
    for (const m of this.mappings.values()) if (m.subscriber === sub) n++;
    return n;
  }
  private peerCount(): number {
    let n = 0;
    for (const m of this.mappings.values()) n += m.peers.size;
    return n;
  }
  private freeBlocks(address: string, owners: Map<string, string>): number {
    let used = 0;
    for (const block of owners.keys()) if (block.startsWith(`${address}#`)) used++;
    return this.blocksPerAddress - used;
  }

  /** Reserved external ports (docs/engine.md MAP: below portMin, UDP 5350/5351, excludedPorts). */
  private reserved(protocol: number, port: number): boolean {
    if (!Number.isInteger(port) || port < this.cfg.portMin || port > 65535) return true;
    if (protocol === 17 && (port === 5350 || port === 5351)) return true;
    return this.cfg.excludedPorts.includes(port);
  }

  /** Why `sub` may not take address:port for `protocol` (null = it may), blocks aside from their count. */
  private unusable(sub: string, protocol: number, address: string, port: number, owners: Map<string, string>, taken: Set<string>): string | null {
    if (this.reserved(protocol, port)) return `port ${port} is reserved for protocol ${protocol}`;
    if (taken.has(this.portKey(protocol, address, port))) return `${address}:${port} (protocol ${protocol}) is in use or in hold-down`;
    const owner = owners.get(this.blockKey(address, port));
    if (owner !== undefined && owner !== sub) return `${address}:${port} lies in a block owned by subscriber ${owner}`;
    return null;
  }

  /** A free, legal port of the wanted parity in the given block, or undefined. */
  private freePortIn(sub: string, protocol: number, block: string, parity: number | null, owners: Map<string, string>, taken: Set<string>): number | undefined {
    const hash = block.lastIndexOf("#");
    const address = block.slice(0, hash);
    const first = this.cfg.portMin + Number(block.slice(hash + 1)) * this.cfg.blockSize;
    for (let p = first; p < first + this.cfg.blockSize && p <= 65535; p++) {
      if (parity !== null && p % 2 !== parity) continue;
      if (this.unusable(sub, protocol, address, p, owners, taken) === null) return p;
    }
    return undefined;
  }

  // ------------------------------------------------------------ allocation

  /** Addresses on which a suggested port can be granted (docs/engine.md MAP 4). */
  private honourable(
    sub: string,
    protocol: number,
    family: Family,
    s: { address: string; port: number },
    owners: Map<string, string>,
    taken: Set<string>,
  ): string[] {
    const paired = this.pairedAddress(sub, family);
    const canLease = this.blocksOf(sub, owners).length < this.cfg.maxBlocksPerSubscriber;
    let candidates = isAnyAddress(s.address) ? this.poolOf(family) : this.pool.filter((a) => a === s.address);
    if (paired !== undefined) candidates = candidates.filter((a) => a === paired);
    return candidates.filter((a) => {
      if (this.unusable(sub, protocol, a, s.port, owners, taken) !== null) return false;
      return owners.get(this.blockKey(a, s.port)) === sub || canLease;
    });
  }

  /**
   * The external address:port of a new mapping (docs/engine.md MAP 4): an honourable
   * suggestion exactly; else (without PREFER_FAILURE) a free port in the subscriber's blocks
   * with the internal port's parity, or one in a newly leased block when those are full.
   */
  private allocate(n: NewMapping): Fail | Choice {
    const owners = this.blockOwners();
    const taken = this.takenPorts();
    const sub = n.subscriber;
    if (n.suggestion) {
      const ok = this.honourable(sub, n.protocol, n.family, n.suggestion, owners, taken);
      if (ok.length === 1) return { fixed: { externalAddress: ok[0], externalPort: n.suggestion.port } };
      if (ok.length > 1) {
        const port = n.suggestion.port;
        return {
          choose: (a) =>
            a.externalPort !== port
              ? `suggested port ${port} is honourable (on ${ok.join(", ")}) but ${a.externalPort} was given`
              : ok.includes(a.externalAddress)
                ? null
                : `suggested port ${port} was given on ${a.externalAddress}, not one of ${ok.join(", ")}`,
        };
      }
      if (n.preferFailure) return { fail: RESULT.CANNOT_PROVIDE_EXTERNAL };
    }

    const parity = this.cfg.parity ? n.internalPort % 2 : null;
    const paired = this.pairedAddress(sub, n.family);
    const own = this.blocksOf(sub, owners).filter((b) => paired !== undefined && b.startsWith(`${paired}#`));
    let example: number | undefined;
    for (const b of own) if (example === undefined) example = this.freePortIn(sub, n.protocol, b, parity, owners, taken);

    let eligible: string[] = [];
    if (example === undefined) {
      if (this.blocksOf(sub, owners).length >= this.cfg.maxBlocksPerSubscriber) return { fail: RESULT.USER_EX_QUOTA };
      if (paired !== undefined) eligible = [paired];
      else {
        let most = 0;
        for (const a of this.poolOf(n.family)) most = Math.max(most, this.freeBlocks(a, owners));
        eligible = most === 0 ? [] : this.poolOf(n.family).filter((a) => this.freeBlocks(a, owners) === most);
      }
      let any = false;
      for (const a of eligible) {
        for (let i = 0; i < this.blocksPerAddress && !any; i++) {
          const block = `${a}#${i}`;
          if (!owners.has(block) && this.freePortIn(sub, n.protocol, block, parity, owners, taken) !== undefined) any = true;
        }
      }
      if (!any) return { fail: RESULT.NO_RESOURCES };
    }

    return {
      choose: (a) => {
        const address = a.externalAddress,
          port = a.externalPort;
        if (!this.poolOf(n.family).includes(address)) return `${address} is not a pool address of family IPv${n.family}`;
        if (paired !== undefined && address !== paired) return `${address} is not the subscriber's paired address ${paired}`;
        const why = this.unusable(sub, n.protocol, address, port, owners, taken);
        if (why) return why;
        if (parity !== null && port % 2 !== parity) return `port ${port} does not keep the parity of internal port ${n.internalPort}`;
        const inOwnBlock = owners.get(this.blockKey(address, port)) === sub;
        if (example !== undefined) {
          return inOwnBlock ? null : `a new block was leased although the subscriber's blocks still have a free port (e.g. ${paired}:${example})`;
        }
        if (!eligible.includes(address)) return `a first block must come from an address with the most free blocks (${eligible.join(", ")}), not ${address}`;
        return null;
      },
    };
  }

  /** FILTERs in order; prefix 0 clears (docs/engine.md MAP 5; M11). */
  private applyFilters(current: Filter[], requested: FilterInput[]): Filter[] {
    let out = current.slice();
    for (const f of requested) {
      if (f.prefixLength === 0) {
        out = [];
        continue;
      }
      const g = { prefixLength: f.prefixLength, port: f.port, address: canonicalAddress(f.address) };
      if (!out.some((h) => h.prefixLength === g.prefixLength && h.port === g.port && h.address === g.address)) out.push(g);
    }
    return out;
  }

  /** Suggestion vs an existing external (M6: the all-zeros address matches any). */
  private sameExternal(s: Suggestion, address: string, port: number): boolean {
    if (!s) return false;
    return s.port === port && (isAnyAddress(s.address) || s.address === address);
  }

  /** A new mapping or a reclaim of a held one (docs/engine.md MAP 3–5, PEER 4; M5, M8). */
  private create(n: NewMapping): Outcome | Pending {
    const fail = (result: number): Outcome => ({ result, lifetime: CODEC_ERROR_LIFETIME });
    const reclaim: Hold[] = [];
    for (const h of this.holds.values()) {
      if (h.subscriber === n.subscriber && h.protocol === n.protocol && h.internalPort === n.internalPort && h.family === n.family && h.nonce === n.nonce)
        reclaim.push(h);
    }
    if (this.liveMappingsOf(n.subscriber) >= this.cfg.mappingsPerSubscriber) return fail(RESULT.USER_EX_QUOTA);
    if (reclaim.length === 0 && this.mappings.size + this.holds.size >= this.cfg.maxMappings) return fail(RESULT.NO_RESOURCES);
    if (n.needsPeer && this.peerCount() >= this.cfg.maxPeers) return fail(RESULT.NO_RESOURCES);

    let choice: Fail | Choice;
    if (reclaim.length > 0) {
      let held = reclaim;
      if (n.preferFailure && n.suggestion) held = held.filter((h) => this.sameExternal(n.suggestion, h.address, h.port));
      if (held.length === 0) choice = { fail: RESULT.CANNOT_PROVIDE_EXTERNAL };
      else if (held.length === 1) choice = { fixed: { externalAddress: held[0].address, externalPort: held[0].port } };
      else {
        choice = {
          choose: (a) =>
            held.some((h) => h.address === a.externalAddress && h.port === a.externalPort)
              ? null
              : `the same client reclaims its held port (one of ${held.map((h) => `${h.address}:${h.port}`).join(", ")})`,
        };
      }
    } else {
      choice = this.allocate(n);
    }
    if ("fail" in choice) return fail(choice.fail);

    const filters = n.filters ? this.applyFilters([], n.filters) : [];
    if (filters.length > this.cfg.filtersPerMapping) return fail(RESULT.EXCESSIVE_REMOTE_PEERS);

    const record = (a: Allocation): Outcome => {
      const hold = this.holds.get(this.portKey(n.protocol, a.externalAddress, a.externalPort));
      if (hold && reclaim.includes(hold)) this.holds.delete(this.portKey(n.protocol, a.externalAddress, a.externalPort));
      const m: Mapping = {
        subscriber: n.subscriber,
        protocol: n.protocol,
        internalPort: n.internalPort,
        family: n.family,
        address: a.externalAddress,
        port: a.externalPort,
        isStatic: false,
        nonce: n.nonce,
        mapExpiry: null,
        filters,
        peers: new Map(),
      };
      this.mappings.set(this.endpointKey(n.subscriber, n.protocol, n.internalPort, n.family), m);
      this.version++;
      return n.apply(m);
    };
    if ("fixed" in choice) return record(choice.fixed);

    const choose = choice.choose;
    const version = this.version;
    const normalise = (a: Allocation): Allocation => ({ externalAddress: canonicalAddress(a.externalAddress), externalPort: a.externalPort });
    return {
      kind: "allocate",
      check: (a) => {
        let b: Allocation;
        try {
          b = normalise(a);
        } catch {
          return `bad external address ${a.externalAddress}`;
        }
        return choose(b);
      },
      commit: (a) => {
        if (this.version !== version) throw new Error("model changed since this allocation was offered");
        const b = normalise(a);
        const why = choose(b);
        if (why) throw new Error(`illegal allocation committed: ${why}`);
        return record(b);
      },
    };
  }

  /** End a mapping at `at`: its port is held for holdDown (docs/engine.md State; M2). */
  private end(m: Mapping, at: number): void {
    this.mappings.delete(this.endpointKey(m.subscriber, m.protocol, m.internalPort, m.family));
    this.holds.set(this.portKey(m.protocol, m.address, m.port), {
      subscriber: m.subscriber,
      protocol: m.protocol,
      internalPort: m.internalPort,
      family: m.family,
      nonce: m.nonce,
      address: m.address,
      port: m.port,
      until: at + this.cfg.holdDown,
    });
    this.version++;
  }

  /** Remove the inbound part; the mapping ends when nothing else keeps it. */
  private removeInbound(m: Mapping, now: number): void {
    m.mapExpiry = null;
    m.filters = [];
    this.version++;
    if (!m.isStatic && m.peers.size === 0) this.end(m, now);
  }

  private supported(protocol: number, internalPort: number): boolean {
    return protocol !== 0 && internalPort !== 0 && this.cfg.protocols.includes(protocol);
  }

  // ------------------------------------------------------------ MAP (docs/engine.md MAP)

  map(i: MapInput): Outcome | Pending {
    this.expire(i.now);
    const now = i.now;
    const sub = canonicalAddress(i.subscriber);
    const suggestedAddress = canonicalAddress(i.suggestedAddress);
    const family = familyOf(suggestedAddress);
    const nonce = i.nonce.toLowerCase();
    const key = this.endpointKey(sub, i.protocol, i.internalPort, family);
    const codecError = (result: number): Outcome => ({ result, lifetime: CODEC_ERROR_LIFETIME });

    if (i.lifetime === 0) {
      // L = 0: delete (RFC 6887 §15.1, erratum 3621); the reply echoes the suggestion.
      const deleted: Outcome = { result: RESULT.SUCCESS, lifetime: 0, externalAddress: suggestedAddress, externalPort: i.suggestedPort };
      const m = this.mappings.get(key);
      if (i.protocol === 0 || i.internalPort === 0 || !m) return deleted; // no wildcard mappings exist (M15)
      if (m.isStatic || m.mapExpiry === null) return codecError(RESULT.NOT_AUTHORIZED);
      if (nonce !== m.nonce && this.cfg.noncePolicy === "strict") return { result: RESULT.NOT_AUTHORIZED, lifetime: m.mapExpiry - now };
      this.removeInbound(m, now);
      return deleted;
    }

    // 1–2: protocol and external family.
    if (!this.supported(i.protocol, i.internalPort)) return codecError(RESULT.UNSUPP_PROTOCOL);
    if (this.poolOf(family).length === 0) return codecError(RESULT.UNSUPP_PROTOCOL);

    const granted = clamp(i.lifetime, this.cfg.minLifetime, this.cfg.maxLifetime);
    const suggestion: Suggestion = i.suggestedPort !== 0 ? { address: suggestedAddress, port: i.suggestedPort } : null;
    const differs = (m: Mapping) => i.preferFailure && !this.sameExternal(suggestion, m.address, m.port);
    const success = (m: Mapping, lifetime: number): Outcome => ({ result: RESULT.SUCCESS, lifetime, externalAddress: m.address, externalPort: m.port });

    // 3: an existing mapping for the endpoint.
    const m = this.mappings.get(key);
    if (m) {
      if (m.isStatic) return differs(m) ? codecError(RESULT.CANNOT_PROVIDE_EXTERNAL) : success(m, STATIC_LIFETIME);
      if (m.mapExpiry !== null && nonce !== m.nonce && this.cfg.noncePolicy === "strict") {
        return { result: RESULT.NOT_AUTHORIZED, lifetime: m.mapExpiry - now };
      }
      // An inbound part is refreshed; a PEER-only mapping gains one on the same external.
      if (differs(m)) return codecError(RESULT.CANNOT_PROVIDE_EXTERNAL);
      const filters = this.applyFilters(m.filters, i.filters);
      if (filters.length > this.cfg.filtersPerMapping) return codecError(RESULT.EXCESSIVE_REMOTE_PEERS);
      m.nonce = nonce;
      m.mapExpiry = now + granted;
      m.filters = filters;
      this.version++;
      return success(m, granted);
    }

    // 3 (held, same nonce) and 4: a new mapping.
    return this.create({
      now,
      subscriber: sub,
      protocol: i.protocol,
      internalPort: i.internalPort,
      family,
      nonce,
      suggestion,
      preferFailure: i.preferFailure,
      filters: i.filters,
      needsPeer: false,
      apply: (nm) => {
        nm.mapExpiry = now + granted;
        return success(nm, granted);
      },
    });
  }

  // ------------------------------------------------------------ PEER (docs/engine.md PEER)

  peer(i: PeerInput): Outcome | Pending {
    this.expire(i.now);
    const now = i.now;
    const sub = canonicalAddress(i.subscriber);
    const suggestedAddress = canonicalAddress(i.suggestedAddress);
    const family = familyOf(suggestedAddress);
    const nonce = i.nonce.toLowerCase();
    const codecError = (result: number): Outcome => ({ result, lifetime: CODEC_ERROR_LIFETIME });

    // 1
    if (!this.supported(i.protocol, i.internalPort)) return codecError(RESULT.UNSUPP_PROTOCOL);
    if (this.poolOf(family).length === 0) return codecError(RESULT.UNSUPP_PROTOCOL);

    const fresh = clamp(i.lifetime, this.cfg.peerMinLifetime, this.cfg.maxLifetime);
    const remote = `${canonicalAddress(i.remoteAddress)}|${i.remotePort}`;
    const success = (m: Mapping, lifetime: number): Outcome => ({ result: RESULT.SUCCESS, lifetime, externalAddress: m.address, externalPort: m.port });

    const m = this.mappings.get(this.endpointKey(sub, i.protocol, i.internalPort, family));
    if (m) {
      // 2: the record exists (and is live, M1).
      const rec = m.peers.get(remote);
      if (rec) {
        if (nonce !== rec.nonce && this.cfg.noncePolicy === "strict") return { result: RESULT.NOT_AUTHORIZED, lifetime: rec.expiry - now };
        rec.nonce = nonce; // relaxed: the new nonce replaces the old one
        const lifetime = Math.max(fresh, rec.expiry - now); // 5: never shortened (M12)
        rec.expiry = now + lifetime;
        this.version++;
        return success(m, lifetime);
      }
      // 3: a record on the existing mapping; the suggestion is ignored.
      if (this.peerCount() >= this.cfg.maxPeers) return codecError(RESULT.NO_RESOURCES);
      m.peers.set(remote, { nonce, expiry: now + fresh });
      this.version++;
      return success(m, fresh);
    }

    // 4: allocate as for MAP, always with PREFER_FAILURE semantics.
    const suggestion: Suggestion = i.suggestedPort !== 0 ? { address: suggestedAddress, port: i.suggestedPort } : null;
    return this.create({
      now,
      subscriber: sub,
      protocol: i.protocol,
      internalPort: i.internalPort,
      family,
      nonce,
      suggestion,
      preferFailure: true,
      filters: null,
      needsPeer: true,
      apply: (nm) => {
        nm.peers.set(remote, { nonce, expiry: now + fresh });
        return success(nm, fresh);
      },
    });
  }

  // ------------------------------------------------------------ NAT-PMP (docs/engine.md NAT-PMP)

  natPmpMap(i: NatPmpMapInput): Outcome | Pending {
    this.expire(i.now);
    const now = i.now;
    const refused: Outcome = { result: NATPMP_RESULT.REFUSED, lifetime: 0, externalPort: 0 };
    if (i.lifetime === 0) return this.natPmpDeleteNow(i);
    if (i.internalPort === 0) return refused;
    if (!this.cfg.protocols.includes(i.protocol)) return refused; // M14
    if (this.poolOf(4).length === 0) return { result: NATPMP_RESULT.NETWORK_FAILURE, lifetime: 0, externalPort: 0 };

    const sub = canonicalAddress(i.subscriber);
    const granted = clamp(i.lifetime, 1, this.cfg.maxLifetime); // never above the request [6886 §3.3]
    const success = (m: Mapping, lifetime: number): Outcome => ({ result: NATPMP_RESULT.SUCCESS, lifetime, externalAddress: m.address, externalPort: m.port });

    // An existing mapping of the endpoint → its external port (item 138); no nonce checks.
    const m = this.mappings.get(this.endpointKey(sub, i.protocol, i.internalPort, 4));
    if (m) {
      if (m.isStatic) return success(m, STATIC_LIFETIME);
      if (m.mapExpiry === null) m.nonce = ZERO_NONCE; // a PEER-only mapping gains an inbound part
      m.mapExpiry = now + granted;
      this.version++;
      return success(m, granted);
    }

    const r = this.create({
      now,
      subscriber: sub,
      protocol: i.protocol,
      internalPort: i.internalPort,
      family: 4,
      nonce: ZERO_NONCE,
      suggestion: i.suggestedPort !== 0 ? { address: "0.0.0.0", port: i.suggestedPort } : null,
      preferFailure: false,
      filters: null,
      needsPeer: false,
      apply: (nm) => {
        nm.mapExpiry = now + granted;
        return success(nm, granted);
      },
    });
    if (isPending(r)) return r;
    // Quota / resource failures → 4, external port 0, lifetime 0.
    return r.result === RESULT.SUCCESS ? r : { result: NATPMP_RESULT.OUT_OF_RESOURCES, lifetime: 0, externalPort: 0 };
  }

  natPmpDelete(i: NatPmpDeleteInput): Outcome {
    this.expire(i.now);
    return this.natPmpDeleteNow(i);
  }

  private natPmpDeleteNow(i: NatPmpDeleteInput): Outcome {
    const sub = canonicalAddress(i.subscriber);
    let staticLeft = false;
    const targets: Mapping[] = [];
    if (i.internalPort === 0) {
      // Delete-all of the subscriber's mappings of that protocol (M14: IPv4 external).
      for (const m of this.mappings.values()) {
        if (m.subscriber === sub && m.protocol === i.protocol && m.family === 4) targets.push(m);
      }
    } else {
      const m = this.mappings.get(this.endpointKey(sub, i.protocol, i.internalPort, 4));
      if (m) targets.push(m);
    }
    for (const m of targets) {
      if (m.isStatic) staticLeft = true;
      else if (m.mapExpiry !== null) this.removeInbound(m, i.now);
    }
    return { result: staticLeft ? NATPMP_RESULT.REFUSED : NATPMP_RESULT.SUCCESS, lifetime: 0, externalPort: 0 };
  }

  // ------------------------------------------------------------ static mappings (M16)

  addStatic(subscriber: string, protocol: number, internalPort: number, externalAddress: string, externalPort: number): number {
    const sub = canonicalAddress(subscriber);
    const address = canonicalAddress(externalAddress);
    const family = familyOf(address);
    if (!this.supported(protocol, internalPort) || !this.pool.includes(address)) return RESULT.UNSUPP_PROTOCOL;
    const key = this.endpointKey(sub, protocol, internalPort, family);
    if (this.mappings.has(key)) return RESULT.NOT_AUTHORIZED;
    if (this.liveMappingsOf(sub) >= this.cfg.mappingsPerSubscriber) return RESULT.USER_EX_QUOTA;
    if (this.mappings.size + this.holds.size >= this.cfg.maxMappings) return RESULT.NO_RESOURCES;
    const ok = this.honourable(sub, protocol, family, { address, port: externalPort }, this.blockOwners(), this.takenPorts());
    if (ok.length !== 1) return RESULT.CANNOT_PROVIDE_EXTERNAL;
    this.mappings.set(key, {
      subscriber: sub,
      protocol,
      internalPort,
      family,
      address,
      port: externalPort,
      isStatic: true,
      nonce: ZERO_NONCE,
      mapExpiry: null,
      filters: [],
      peers: new Map(),
    });
    this.version++;
    return RESULT.SUCCESS;
  }

  // ------------------------------------------------------------ expiry (docs/engine.md Expiry)

  /** End everything whose time is past, as expire(now, ∞) (M1, M2). */
  expire(now: number): void {
    for (const m of [...this.mappings.values()]) {
      let lastEnded = -Infinity;
      if (m.mapExpiry !== null && m.mapExpiry <= now) {
        lastEnded = Math.max(lastEnded, m.mapExpiry);
        m.mapExpiry = null;
        m.filters = [];
        this.version++;
      }
      for (const [remote, rec] of [...m.peers]) {
        if (rec.expiry <= now) {
          lastEnded = Math.max(lastEnded, rec.expiry);
          m.peers.delete(remote);
          this.version++;
        }
      }
      if (!m.isStatic && m.mapExpiry === null && m.peers.size === 0) this.end(m, lastEnded);
    }
    for (const [key, h] of [...this.holds]) {
      if (h.until <= now) {
        this.holds.delete(key);
        this.version++;
      }
    }
  }

  // ------------------------------------------------------------ inspection

  /** Mappings with a live MAP, PEER or static part (holds not counted). */
  liveMappings(): number {
    return this.mappings.size;
  }

  stats(): { mappings: number; held: number; peers: number; blocks: number; subscribers: number; filters: number } {
    const subs = new Set(this.occupants().map((o) => o.subscriber));
    let filters = 0;
    for (const m of this.mappings.values()) filters += m.filters.length;
    return { mappings: this.mappings.size, held: this.holds.size, peers: this.peerCount(), blocks: this.blockOwners().size, subscribers: subs.size, filters };
  }

  lookup(subscriber: string, protocol: number, internalPort: number, family: Family = 4): MappingView | undefined {
    const m = this.mappings.get(this.endpointKey(canonicalAddress(subscriber), protocol, internalPort, family));
    if (!m) return undefined;
    let peerExpiry: number | null = null;
    for (const r of m.peers.values()) peerExpiry = Math.max(peerExpiry ?? -Infinity, r.expiry);
    return {
      externalAddress: m.address,
      externalPort: m.port,
      isStatic: m.isStatic,
      nonce: m.nonce,
      mapExpiry: m.mapExpiry,
      peerExpiry,
      filters: m.filters.map((f) => ({ ...f })),
      peers: m.peers.size,
    };
  }

  /** The model's own invariants (empty = fine). */
  invariants(): string[] {
    const errors: string[] = [];
    const portOwner = new Map<string, string>(); // address:port (any protocol) → subscriber
    const portUse = new Set<string>(); // portKey
    const blockOwners = new Map<string, Set<string>>();
    const addresses = new Map<string, Set<string>>(); // subscriber|family → addresses
    for (const o of this.occupants()) {
      const what = `${o.subscriber} → ${o.address}:${o.port}/${o.protocol}`;
      if (!this.pool.includes(o.address)) errors.push(`${what}: not a pool address`);
      if (this.reserved(o.protocol, o.port)) errors.push(`${what}: reserved port`);
      const ap = `${o.address}:${o.port}`;
      const other = portOwner.get(ap);
      if (other !== undefined && other !== o.subscriber) errors.push(`${ap} shared by subscribers ${other} and ${o.subscriber}`);
      portOwner.set(ap, o.subscriber);
      const pk = this.portKey(o.protocol, o.address, o.port);
      if (portUse.has(pk)) errors.push(`${what}: external port used twice`);
      portUse.add(pk);
      const bk = this.blockKey(o.address, o.port);
      if (!blockOwners.has(bk)) blockOwners.set(bk, new Set());
      blockOwners.get(bk)!.add(o.subscriber);
      const fk = `${o.subscriber}|${familyOf(o.address)}`;
      if (!addresses.has(fk)) addresses.set(fk, new Set());
      addresses.get(fk)!.add(o.address);
    }
    for (const [bk, subs] of blockOwners) if (subs.size > 1) errors.push(`block ${bk} used by ${[...subs].join(", ")}`);
    for (const [fk, addrs] of addresses) if (addrs.size > 1) errors.push(`paired pooling broken for ${fk}: ${[...addrs].join(", ")}`);
    const perSub = new Map<string, { live: number; blocks: number }>();
    for (const o of this.occupants()) perSub.set(o.subscriber, { live: 0, blocks: 0 });
    for (const m of this.mappings.values()) perSub.get(m.subscriber)!.live++;
    for (const subs of blockOwners.values()) for (const s of subs) perSub.get(s)!.blocks++;
    for (const [s, u] of perSub) {
      if (u.live > this.cfg.mappingsPerSubscriber) errors.push(`subscriber ${s}: ${u.live} mappings > quota ${this.cfg.mappingsPerSubscriber}`);
      if (u.blocks > this.cfg.maxBlocksPerSubscriber) errors.push(`subscriber ${s}: ${u.blocks} blocks > ${this.cfg.maxBlocksPerSubscriber}`);
    }
    if (this.mappings.size + this.holds.size > this.cfg.maxMappings)
      errors.push(`${this.mappings.size + this.holds.size} records > maxMappings ${this.cfg.maxMappings}`);
    if (this.peerCount() > this.cfg.maxPeers) errors.push(`${this.peerCount()} PEER records > maxPeers ${this.cfg.maxPeers}`);
    for (const m of this.mappings.values()) {
      if (m.filters.length > this.cfg.filtersPerMapping) errors.push(`${m.subscriber}/${m.protocol}/${m.internalPort}: ${m.filters.length} filters`);
      if (!m.isStatic && m.mapExpiry === null && m.peers.size === 0)
        errors.push(`${m.subscriber}/${m.protocol}/${m.internalPort}: mapping without a live part`);
      if (familyOf(m.address) !== m.family) errors.push(`${m.subscriber}/${m.protocol}/${m.internalPort}: external family mismatch`);
    }
    return errors;
  }
}
