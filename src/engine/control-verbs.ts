// Control verbs: typed methods over the command slot (assembly/commands.ts) for the
// control channel, persistence, the dataplane feed and the pool. Control plane only; the
// batch path is batch.ts.
import * as W from "../wire.generated.js";
import { ErrorCodes, PcpdError } from "../errors.js";
import { formatAddress16, toAddress16 } from "../net/address.js";
import { BatchPath } from "./batch.js";
import { passes, type EventFilter } from "./event-filter.js";
import { LIST_KINDS, readEvent, type Filter, type MappingEvent, type MappingRecords, type RecordSelector } from "./records.js";

/** An unsolicited message for a mapping's client (Mapping Update, RFC 6887 §14.2). */
export interface Unsolicited {
  address: string;
  port: number;
  /** Bytes 8..11 hold the Epoch: rewrite them with the current one at each send. */
  payload: Uint8Array;
}

export interface PoolAddress {
  address: string;
  freeBlocks: number;
  /** Removed from the pool: nothing new is leased there. */
  retired: boolean;
}

export class ControlVerbs extends BatchPath {
  private readonly poolNames: string[] = [];

  /** Gratuitous PCP ANNOUNCE [RFC 6887 §14.1.3] carrying `epoch`. */
  announce(epoch: number): Uint8Array {
    const at = this.regions.scratch;
    const n = this.call(W.CMD_ANNOUNCE, at, epoch >>> 0);
    this.mem();
    return this.bytes.slice(at, at + n);
  }

  /** NAT-PMP external-address announcement [RFC 6886 §3.2.1] for `ipv4` carrying `epoch`. */
  announceNatPmp(epoch: number, ipv4: string): Uint8Array {
    const at = this.regions.scratch;
    const a = toAddress16(ipv4);
    const n = this.call(W.CMD_ANNOUNCE_NATPMP, at, epoch >>> 0, ((a[12] << 24) | (a[13] << 16) | (a[14] << 8) | a[15]) >>> 0);
    this.mem();
    return this.bytes.slice(at, at + n);
  }

  /** External address of pool entry `index` (an entry's address never changes). */
  poolAddress(index: number): string {
    let name = this.poolNames[index];
    if (name === undefined) {
      const at = this.call(W.CMD_POOL_ENTRY, index);
      this.mem();
      name = this.poolNames[index] = formatAddress16(this.bytes.slice(at, at + 16));
    }
    return name;
  }

  /** External address of every pool entry, by index. */
  poolList(): string[] {
    return Array.from({ length: this.call(W.CMD_POOL_SIZE) }, (_, i) => this.poolAddress(i));
  }

  private decodeEvent(at: number): MappingEvent {
    return readEvent(this.mem(), this.bytes, at, (i) => this.poolAddress(i));
  }

  /** Drops every pending event without decoding it (nobody is listening). */
  discardEvents(): void {
    this.call(W.CMD_EVENTS_CONSUME, 0xffffffff); // clipped to the pending ones
  }

  /** The event ring's base, and the head and tail counters (pending: head - tail, mod 2^32). */
  private events(): { base: number; head: number; tail: number } {
    const base = this.call(W.CMD_EVENTS);
    return { base, head: this.result(1), tail: this.result(2) };
  }

  /** Takes every pending event off the ring. */
  drainEvents(): MappingEvent[] {
    const { base, head, tail } = this.events();
    const out: MappingEvent[] = [];
    for (let i = tail; i !== head; i = (i + 1) >>> 0) {
      out.push(this.decodeEvent(base + (i & (W.EVENT_CAPACITY - 1)) * W.EVENT_SIZE));
    }
    this.call(W.CMD_EVENTS_CONSUME, out.length);
    return out;
  }

  /** Takes every pending event off the ring as records (a copy; no pool names, no FILTERs). */
  drainRecords(): MappingRecords {
    const { base, head, tail } = this.events();
    const n = (head - tail) >>> 0;
    const bytes = new Uint8Array(n * W.EVENT_SIZE);
    this.mem();
    const first = tail & (W.EVENT_CAPACITY - 1);
    const straight = Math.min(n, W.EVENT_CAPACITY - first); // the ring wraps after this many
    bytes.set(this.bytes.subarray(base + first * W.EVENT_SIZE, base + (first + straight) * W.EVENT_SIZE), 0);
    bytes.set(this.bytes.subarray(base, base + (n - straight) * W.EVENT_SIZE), straight * W.EVENT_SIZE);
    this.call(W.CMD_EVENTS_CONSUME, n);
    return { bytes };
  }

  /**
   * The newest (at most `max`) records passing `filter` among those emitted since the
   * ring's counter was `since`, read in place: the ring is not consumed, and a record stays
   * readable until EVENT_CAPACITY newer ones overwrite it, drained or not. So a sampled
   * subscriber (src/control/fanout.ts) costs one bounded scan per pull, nothing per batch.
   * `since` null: nothing, only the counter to start from. `total`: every record emitted
   * since (a restarted engine's counter began again at 0: counted from there).
   */
  latestRecords(since: number | null, max: number, filter: EventFilter): { records: MappingRecords; head: number; total: number } {
    const { base, head } = this.events();
    if (since === null) return { records: { bytes: new Uint8Array(0) }, head, total: 0 };
    const back = (since - head) >>> 0;
    const total = back !== 0 && back < 2 ** 31 ? head : (head - since) >>> 0;
    const scan = Math.min(total, W.EVENT_CAPACITY);
    const view = this.mem();
    const pool = filter.external === undefined ? undefined : this.poolList();
    const picked: number[] = [];
    for (let i = 1; i <= scan && picked.length < max; i++) {
      const at = base + ((head - i) & (W.EVENT_CAPACITY - 1)) * W.EVENT_SIZE;
      if (passes(filter, view, this.bytes, at, pool)) picked.push(at);
    }
    const bytes = new Uint8Array(picked.length * W.EVENT_SIZE);
    for (let i = 0; i < picked.length; i++) {
      const at = picked[picked.length - 1 - i]; // oldest first, as the stream
      bytes.set(this.bytes.subarray(at, at + W.EVENT_SIZE), i * W.EVENT_SIZE);
    }
    return { records: { bytes, pool: this.poolList() }, head, total };
  }

  /** Copies `n` event-layout records at `at` with the FILTERs of those that have some. */
  private records(at: number, n: number, now: number): MappingRecords {
    this.mem();
    const bytes = this.bytes.slice(at, at + n * W.EVENT_SIZE);
    const view = new DataView(bytes.buffer);
    const filters: Record<number, Filter[]> = {};
    const descriptions: Record<number, string> = {};
    const thirdPartyIds: Record<number, string> = {};
    for (let i = 0; i < n; i++) {
      const m = view.getUint32(i * W.EVENT_SIZE + W.EV_MAPPING, true);
      const list = this.filters(m);
      if (list.length > 0) filters[i] = list;
      const text = this.description(m);
      if (text !== undefined) descriptions[i] = text;
      const id = this.realmIdentifier(view.getUint32(i * W.EVENT_SIZE + W.EV_REALM, true));
      if (id !== undefined) thirdPartyIds[i] = id;
    }
    return { bytes, pool: this.poolList(), now, filters, descriptions, thirdPartyIds };
  }

  /** The live (or held) mapping of an internal endpoint (in a THIRD_PARTY_ID's realm, hex) as records (none or one). */
  lookupRecords(internalAddress: string, protocol: number, internalPort: number, family: 4 | 6, now: number, thirdPartyId?: string): MappingRecords {
    const realm = thirdPartyId === undefined ? 0 : this.realmOf(thirdPartyId);
    if (thirdPartyId !== undefined && realm === 0) return this.records(this.regions.scratch, 0, now);
    this.writeScratch(0, toAddress16(internalAddress));
    return this.recordOf(this.call(W.CMD_LOOKUP_MAPPING, protocol, internalPort, family === 6 ? 1 : 0, realm), now);
  }

  /** The mapping (live or held) owning an external address:port as records (none or one). */
  lookupExternalRecords(externalAddress: string, protocol: number, externalPort: number, now: number): MappingRecords {
    const pool = this.poolList().indexOf(externalAddress);
    return this.recordOf(pool < 0 ? 0 : this.call(W.CMD_LOOKUP_EXTERNAL, pool, protocol, externalPort), now);
  }

  private recordOf(m: number, now: number): MappingRecords {
    const found = m !== 0 && this.call(W.CMD_DESCRIBE_MAPPING, m) !== 0;
    return this.records(this.regions.scratch, found ? 1 : 0, now);
  }

  /**
   * A listing page selected inside the engine: mappings with record ids from `from` on,
   * visiting at most `scan` ids, at most `limit` (≤ LIST_MAX) kept; `next` is the id to go
   * on from (0 when the table is done).
   */
  listRecords(from: number, limit: number, scan: number, select: RecordSelector, now: number): { records: MappingRecords; next: number } {
    let sel = 0;
    if (select.internalAddress !== undefined) {
      this.writeScratch(0, toAddress16(select.internalAddress));
      sel |= W.LISTSEL_INTERNAL;
    }
    if (select.pool !== undefined) sel |= W.LISTSEL_POOL;
    if (select.protocol !== undefined) sel |= W.LISTSEL_PROTOCOL;
    if (select.kind !== undefined) sel |= W.LISTSEL_KIND;
    const n = this.call(
      W.CMD_LIST_SCAN,
      Math.max(1, from),
      scan,
      Math.min(limit, W.LIST_MAX),
      sel,
      select.protocol ?? 0,
      select.pool ?? 0,
      LIST_KINDS[select.kind ?? "dynamic"],
    );
    const next = this.result(1);
    return { records: this.records(this.regions.list, n, now), next };
  }

  /** The mapping record `m` in event form (kind "none"), or undefined. */
  describe(m: number): MappingEvent | undefined {
    if (!m || !this.call(W.CMD_DESCRIBE_MAPPING, m)) return undefined;
    return this.decodeEvent(this.regions.scratch);
  }

  /** The live (or held) mapping of an internal endpoint. */
  lookup(internalAddress: string, protocol: number, internalPort: number, family: 4 | 6 = 4): MappingEvent | undefined {
    this.writeScratch(0, toAddress16(internalAddress));
    return this.describe(this.call(W.CMD_LOOKUP_MAPPING, protocol, internalPort, family === 6 ? 1 : 0, 0));
  }

  /** Free blocks per pool address (gauge for pool usage). */
  poolUsage(): PoolAddress[] {
    return Array.from({ length: this.call(W.CMD_POOL_SIZE) }, (_, i) => {
      const address = this.poolAddress(i);
      this.call(W.CMD_POOL_ENTRY, i);
      return { address, freeBlocks: this.result(1), retired: this.result(2) !== 0 };
    });
  }

  /** Adds an external address to the running pool (or brings a retired one back); false if it is already in service or the pool is full. */
  addPoolAddress(address: string): boolean {
    this.writeScratch(0, toAddress16(address));
    return (this.call(W.CMD_POOL_ADD) | 0) >= 0;
  }

  /**
   * Retires an external address: nothing new is leased there, its holds and static
   * mappings end; returns how many mappings rehome() has to move (0 if unknown or retired).
   */
  retirePoolAddress(address: string, now: number): number {
    const i = this.poolUsage().findIndex((p) => p.address === address && !p.retired);
    return i < 0 ? 0 : this.call(W.CMD_POOL_RETIRE, i, now >>> 0);
  }

  /**
   * Moves up to `budget` mappings off the retired address; returns the Mapping Update
   * messages of each one moved, and whether mappings remain.
   */
  rehome(
    now: number,
    epoch: number,
    budget: number,
  ): { updates: { mapping: number; messages: Unsolicited[]; from: { protocol: number; pool: number; port: number } }[]; done: boolean } {
    const updates = [];
    for (let k = 0; k < budget; k++) {
      const n = this.call(W.CMD_REHOME_NEXT, now >>> 0, epoch >>> 0);
      const mapping = this.result(1);
      const from = this.result(2);
      if (n === 0xffffffff) return { updates, done: true };
      const view = this.mem();
      const messages: Unsolicited[] = [];
      for (let i = 0; i < n; i++) {
        const at = this.slotAddress(i);
        const length = view.getUint16(at + W.SLOT_RESP_LEN, true);
        messages.push({
          address: formatAddress16(this.bytes.slice(at + W.SLOT_SRC_ADDR, at + W.SLOT_SRC_ADDR + 16)),
          port: view.getUint16(at + W.SLOT_SRC_PORT, true),
          payload: this.bytes.slice(at + W.SLOT_DATA, at + W.SLOT_DATA + length),
        });
      }
      updates.push({ mapping, messages, from: { protocol: from >>> 24, pool: (from >>> 16) & 0xff, port: from & 0xffff } });
    }
    return { updates, done: false };
  }

  /** The mapping (live or held) that owns an external address:port, or undefined. */
  lookupExternal(externalAddress: string, protocol: number, externalPort: number): MappingEvent | undefined {
    const pool = this.poolUsage().findIndex((p) => p.address === externalAddress);
    return pool < 0 ? undefined : this.describe(this.call(W.CMD_LOOKUP_EXTERNAL, pool, protocol, externalPort));
  }

  /** Registers a THIRD_PARTY_ID (hex); its realm number, 0 if it does not fit. */
  registerRealm(hex: string): number {
    const length = this.scratchRealm(hex);
    return length === 0 ? 0 : this.call(W.CMD_REGISTER_REALM, length);
  }

  /** The realm of a THIRD_PARTY_ID (hex) without registering it; 0 if unknown. */
  realmOf(hex: string): number {
    const length = this.scratchRealm(hex);
    return length === 0 ? 0 : this.call(W.CMD_FIND_REALM, length);
  }

  /** A THIRD_PARTY_ID in hex written to scratch; its length, 0 if it is not 1–REALM_ID_MAX bytes of hex. */
  private scratchRealm(hex: string): number {
    const id = Buffer.from(hex, "hex");
    if (id.length === 0 || id.length > W.REALM_ID_MAX || id.toString("hex") !== hex.toLowerCase()) return 0;
    this.writeScratch(0, id);
    return id.length;
  }

  /** Realm `r`'s THIRD_PARTY_ID as hex (undefined: realm 0). */
  realmIdentifier(r: number): string | undefined {
    const n = r === 0 ? 0 : this.call(W.CMD_REALM_IDENTIFIER, r);
    if (n === 0) return undefined;
    const at = this.regions.scratch;
    this.mem();
    return Buffer.from(this.bytes.subarray(at, at + n)).toString("hex");
  }

  /** Mapping `m`'s DESCRIPTION [RFC 7220], or undefined. */
  description(m: number): string | undefined {
    const n = this.call(W.CMD_MAPPING_DESCRIPTION, m);
    if (n === 0) return undefined;
    const at = this.regions.description;
    this.mem();
    return new TextDecoder().decode(this.bytes.subarray(at, at + n));
  }

  /** FILTERs of mapping `m` as the dataplane must enforce them. */
  filters(m: number): { prefixLength: number; port: number; address: string }[] {
    const out = [];
    for (let k = 0; this.call(W.CMD_MAPPING_FILTER, m, k); k++) {
      const at = this.regions.scratch;
      const view = this.mem();
      out.push({
        prefixLength: view.getUint8(at),
        port: view.getUint16(at + 2, true),
        address: formatAddress16(this.bytes.slice(at + 4, at + 20)),
      });
    }
    return out;
  }

  addStatic(internalAddress: string, protocol: number, internalPort: number, externalAddress: string, externalPort: number): number {
    this.writeScratch(0, toAddress16(internalAddress));
    this.writeScratch(16, toAddress16(externalAddress));
    return this.call(W.CMD_ADD_STATIC, protocol, internalPort, externalPort);
  }

  /**
   * Mirror of another shard's static mapping (answered here as the owner answers from the
   * static; see assembly/engine.ts): a live mapping of the endpoint refuses it
   * (CANNOT_PROVIDE_EXTERNAL), or with `replace` is ended. Returns a PCP result code.
   */
  addMirror(internalAddress: string, protocol: number, internalPort: number, externalAddress: string, externalPort: number, replace = false): number {
    this.writeScratch(0, toAddress16(internalAddress));
    this.writeScratch(16, toAddress16(externalAddress));
    return this.call(W.CMD_MIRROR_ADD, protocol, internalPort, externalPort, replace ? 1 : 0);
  }

  /** Drops every static mirror. */
  clearMirrors(): void {
    this.call(W.CMD_MIRRORS_CLEAR);
  }

  mirrorCount(): number {
    return this.call(W.CMD_MIRROR_COUNT);
  }

  /** Removes the endpoint's static mapping and its mirror here (either is a success); `hold` false: no hold-down for its port. */
  removeStatic(internalAddress: string, protocol: number, internalPort: number, family: 4 | 6 = 4, hold = true): number {
    this.writeScratch(0, toAddress16(internalAddress));
    return this.call(W.CMD_REMOVE_STATIC, protocol, internalPort, family === 6 ? 1 : 0, hold ? 1 : 0);
  }

  /** Ends every live mapping of a subscriber (in a THIRD_PARTY_ID's realm, hex); returns how many. */
  deleteSubscriber(internalAddress: string, thirdPartyId?: string): number {
    const realm = thirdPartyId === undefined ? 0 : this.realmOf(thirdPartyId);
    if (thirdPartyId !== undefined && realm === 0) return 0;
    this.writeScratch(0, toAddress16(internalAddress));
    return this.call(W.CMD_DELETE_SUBSCRIBER, realm);
  }

  /** A subscriber's mappings and blocks (in a THIRD_PARTY_ID's realm, hex). */
  subscriberUsage(internalAddress: string, thirdPartyId?: string): { mappings: number; blocks: number } {
    const realm = thirdPartyId === undefined ? 0 : this.realmOf(thirdPartyId);
    if (thirdPartyId !== undefined && realm === 0) return { mappings: 0, blocks: 0 };
    this.writeScratch(0, toAddress16(internalAddress));
    const mappings = this.call(W.CMD_SUBSCRIBER_USAGE, realm);
    return { mappings, blocks: this.result(1) };
  }

  // ---- Persistence (src/persist/): records in the PREC_* layout; `wallOffset` = wall-clock seconds at engine time 0 ----

  /** A copy of what the last persistence command wrote (its buffer in r1, its length in r2). */
  private persisted(): Uint8Array {
    const at = this.result(1);
    const length = this.result(2);
    this.mem();
    return this.bytes.slice(at, at + length);
  }

  /** Journal records for every pending event (the ring is left as it is); copies, each ≤ PERSIST_BUFFER bytes. */
  persistPending(wallOffset: number): Uint8Array[] {
    const { head, tail } = this.events();
    const pending = (head - tail) >>> 0;
    const out: Uint8Array[] = [];
    for (let done = 0; done < pending; ) {
      const n = this.call(W.CMD_PERSIST_EVENTS, done, pending - done, wallOffset >>> 0);
      if (n === 0) throw new PcpdError(ErrorCodes.RECORDS_TOO_LARGE, "a mapping record does not fit the persistence buffer");
      out.push(this.persisted());
      done += n;
    }
    return out;
  }

  /** The end of an external key (pool index, protocol, port): a record that moved away from it. */
  persistGone(pool: number, protocol: number, port: number): Uint8Array {
    this.call(W.CMD_PERSIST_GONE, pool, protocol, port);
    return this.persisted();
  }

  /** Snapshot chunk: records in use from id `from`, visiting at most `budget` ids; `next` 0 when the table is done. */
  persistTable(from: number, budget: number, wallOffset: number): { bytes: Uint8Array; next: number } {
    this.call(W.CMD_PERSIST_TABLE, from, budget, wallOffset >>> 0);
    return { bytes: this.persisted(), next: this.result(3) };
  }

  /** Takes records back (at most PERSIST_BUFFER bytes of whole records); returns the bytes consumed (fewer: a malformed record). */
  restore(records: Uint8Array, wallOffset: number, now: number): number {
    if (records.length > W.PERSIST_BUFFER) throw new PcpdError(ErrorCodes.RECORDS_TOO_LARGE, `${records.length} bytes of records exceed ${W.PERSIST_BUFFER}`);
    this.call(W.CMD_PERSIST_BUFFER);
    const at = this.result(1);
    this.mem();
    this.bytes.set(records, at);
    return this.call(W.CMD_RESTORE_RECORDS, records.length, wallOffset >>> 0, now >>> 0);
  }

  /** Records restore() did not take back, by reason. */
  restoreDropped(): Record<"expired" | "notInPool" | "conflict" | "noResources" | "malformed", number> {
    const dropped = (reason: number) => this.call(W.CMD_RESTORE_DROPPED, reason);
    return {
      expired: dropped(W.RESTORE_EXPIRED),
      notInPool: dropped(W.RESTORE_NOT_IN_POOL),
      conflict: dropped(W.RESTORE_CONFLICT),
      noResources: dropped(W.RESTORE_NO_RESOURCES),
      malformed: dropped(W.RESTORE_MALFORMED),
    };
  }

  /** While down, every MAP, PEER and NAT-PMP request is answered NETWORK_FAILURE. */
  setDataplaneDown(down: boolean): void {
    this.call(W.CMD_DATAPLANE_DOWN, down ? 1 : 0);
  }

  /** Highest mapping record id handed out so far (ids 1..this may be in use). */
  mappingsUsed(): number {
    return this.call(W.CMD_MAPPINGS_USED);
  }

  /** Bytes of linear memory in use (tables, rings, buffers). */
  engineBytes(): number {
    return this.call(W.CMD_ENGINE_BYTES);
  }

  // ---- Codec reply builders, driven directly by the codec tests (the engine calls them itself) ----

  /** Lifetime of an error reply with PCP result `result` [RFC 6887 §7.2]. */
  errorLifetime(result: number): number {
    return this.call(W.CMD_ERROR_LIFETIME, result);
  }

  /** Success reply in slot `index` with `lifetime`, echoing the options in `echoMask` (OPTBIT_*). */
  finishSuccess(index: number, lifetime: number, echoMask: number): void {
    this.call(W.CMD_FINISH_SUCCESS, this.slotAddress(index), lifetime >>> 0, echoMask >>> 0);
  }

  /** Error reply in slot `index`. */
  finishError(index: number, result: number, lifetime: number): void {
    this.call(W.CMD_FINISH_ERROR, this.slotAddress(index), result, lifetime >>> 0);
  }

  /** NAT-PMP external-address reply in slot `index` (`ipv4` as u32). */
  finishNatPmpAddress(index: number, result: number, ipv4: number): void {
    this.call(W.CMD_FINISH_NATPMP_ADDRESS, this.slotAddress(index), result, ipv4 >>> 0);
  }

  /** NAT-PMP mapping reply in slot `index`. */
  finishNatPmpMap(index: number, result: number, externalPort: number, lifetime: number): void {
    this.call(W.CMD_FINISH_NATPMP_MAP, this.slotAddress(index), result, externalPort, lifetime >>> 0);
  }
}
