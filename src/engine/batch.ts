// The hot batch path: datagrams into slots, the codec and engine over a batch, replies
// and outcomes out of slots, the expiry wheel. Direct export calls and DataView reads
// only; nothing here goes through the command slot (control plane: control-verbs.ts).
import * as W from "../wire.generated.js";
import { ErrorCodes, PcpdError } from "../errors.js";
import { EngineBoundary, type Build } from "./boundary.js";
import { readCodecStats, readEngineStats, type CodecStats } from "./records.js";

export interface Datagram {
  payload: Uint8Array;
  /** 16-byte source address (IPv4 v4-mapped), see src/net/address.ts. */
  source: Uint8Array;
  sourcePort: number;
  /** INGRESS_* bits from the host's interface/subnet classification. */
  ingress: number;
  overloaded?: boolean;
}

export type Verdict = "drop" | "reply" | "parsed" | "wait" | "auth";
const VERDICTS: Verdict[] = ["drop", "reply", "parsed", "wait", "auth"];

export interface SlotOutcome {
  verdict: Verdict;
  dropReason: number;
  result: number;
  /** Reply bytes: a view into module memory, valid until the slot is reused. */
  response: Uint8Array;
  version: number;
  opcode: number;
  parseFlags: number;
  lifetime: number;
  options: number;
  filterCount: number;
}

export class BatchPath extends EngineBoundary {
  readonly slotCount = W.SLOT_COUNT;
  protected readonly slots: number;
  protected readonly statsAt: number;

  constructor(build: Build) {
    super(build);
    this.slots = this.regions.slots;
    this.statsAt = this.regions.stats;
  }

  slotAddress(index: number): number {
    return this.slots + index * W.SLOT_SIZE;
  }

  /** Copies one datagram into slot `index` (payload beyond SLOT_DATA_CAP is cut; its length is kept). */
  load(index: number, d: Datagram): void {
    this.loadSlot(index, d.payload, d.source, d.sourcePort, d.ingress, d.overloaded ?? false);
  }

  /**
   * load() without the Datagram object: the dgram listener's per-packet path. `destination`:
   * the 16-byte local address the datagram was sent to (SLOT_DST_ADDR; absent: zeros).
   */
  loadSlot(index: number, payload: Uint8Array, source: Uint8Array, sourcePort: number, ingress: number, overloaded: boolean, destination?: Uint8Array): void {
    if (source.length !== 16) throw new PcpdError(ErrorCodes.BAD_DATAGRAM, "source address must be 16 bytes");
    const view = this.mem();
    const at = this.slotAddress(index);
    this.bytes.set(source, at + W.SLOT_SRC_ADDR);
    if (destination?.length === 16) this.bytes.set(destination, at + W.SLOT_DST_ADDR);
    else this.bytes.fill(0, at + W.SLOT_DST_ADDR, at + W.SLOT_DST_ADDR + 16);
    view.setUint16(at + W.SLOT_SRC_PORT, sourcePort, true);
    view.setUint16(at + W.SLOT_WIRE_LEN, Math.min(payload.length, 0xffff), true);
    view.setUint8(at + W.SLOT_INGRESS, ingress);
    view.setUint8(at + W.SLOT_HOST_FLAGS, overloaded ? W.HOST_OVERLOADED : 0);
    this.bytes.set(payload.length > W.SLOT_DATA_CAP ? payload.subarray(0, W.SLOT_DATA_CAP) : payload, at + W.SLOT_DATA);
  }

  /**
   * The module's memory as bytes, for the batched socket path (src/io/batched-listener.ts):
   * the addon reads datagrams into the slots at slotAddress(0) of this buffer and sends
   * replies from them. Taken anew before every use: growth detaches the old buffer.
   */
  memoryBytes(): Uint8Array {
    this.mem();
    return this.bytes;
  }

  /** Sets what the host decides for a slot the addon filled: INGRESS_* bits and HOST_* flags. */
  setSlotHost(index: number, ingress: number, hostFlags: number): void {
    const at = this.slotAddress(index);
    this.mem();
    this.bytes[at + W.SLOT_INGRESS] = ingress;
    this.bytes[at + W.SLOT_HOST_FLAGS] = hostFlags;
  }

  /**
   * Takes slot `index`'s reply out of the batch (a reply that waits for the disk): a copy of
   * the whole slot (addresses, ports, reply) for a later one-slot send, and the slot's
   * verdict turned to a drop so the batch's send skips it. Undefined: the slot has no reply.
   */
  holdReply(index: number): Uint8Array | undefined {
    const at = this.slotAddress(index);
    this.mem();
    if (this.bytes[at + W.SLOT_VERDICT] !== W.VERDICT_REPLY) return undefined;
    const copy = this.bytes.slice(at, at + W.SLOT_SIZE);
    this.bytes[at + W.SLOT_VERDICT] = W.VERDICT_DROP;
    return copy;
  }

  /**
   * Replaces slot `index`'s reply with `reply` (at most SLOT_DATA_CAP bytes; the verdict
   * stays VERDICT_REPLY): the batched path sends it from the slot with the rest of the
   * batch (PCP authentication's tagged replies [RFC 7652 §6.1], src/io/listener-base.ts).
   */
  setReply(index: number, reply: Uint8Array): void {
    if (reply.length > W.SLOT_DATA_CAP) throw new PcpdError(ErrorCodes.BAD_DATAGRAM, `reply of ${reply.length} bytes exceeds the slot`);
    const at = this.slotAddress(index);
    const view = this.mem();
    this.bytes.set(reply, at + W.SLOT_DATA);
    view.setUint16(at + W.SLOT_RESP_LEN, reply.length, true);
  }

  /** ORs HOST_* bits into slot `index` (after loadSlot): the authentication gate's verdict on its tag. */
  addHostFlags(index: number, bits: number): void {
    const at = this.slotAddress(index) + W.SLOT_HOST_FLAGS;
    const view = this.mem();
    view.setUint8(at, view.getUint8(at) | bits);
  }

  /** Rewrites slot `index`'s ingress bits (0: dropped as from no accepted interface). */
  setIngress(index: number, bits: number): void {
    this.mem().setUint8(this.slotAddress(index) + W.SLOT_INGRESS, bits);
  }

  /** Slot `index`'s verdict (VERDICT_*) and result code after serve(). */
  verdict(index: number): number {
    return this.mem().getUint8(this.slotAddress(index) + W.SLOT_VERDICT);
  }

  resultCode(index: number): number {
    return this.mem().getUint16(this.slotAddress(index) + W.SLOT_RESULT, true);
  }

  /** The reply of slot `index` (a view into module memory, valid until the slot is reused), or undefined. */
  reply(index: number): Uint8Array | undefined {
    const view = this.mem();
    const at = this.slotAddress(index);
    if (view.getUint8(at + W.SLOT_VERDICT) !== W.VERDICT_REPLY) return undefined;
    return this.bytes.subarray(at + W.SLOT_DATA, at + W.SLOT_DATA + view.getUint16(at + W.SLOT_RESP_LEN, true));
  }

  /** Runs the codec over slots [0, count); returns how many are PARSED (awaiting the engine). */
  processBatch(count: number, epoch: number): number {
    if (count > W.SLOT_COUNT) throw new PcpdError(ErrorCodes.BATCH_TOO_LARGE, `batch of ${count} exceeds ${W.SLOT_COUNT} slots`);
    try {
      return this.exports.processBatch(count, epoch >>> 0);
    } catch (cause) {
      throw new PcpdError(ErrorCodes.ENGINE_TRAPPED, "packet engine trapped; discard this instance", { cause });
    }
  }

  outcome(index: number): SlotOutcome {
    const view = this.mem();
    const at = this.slotAddress(index);
    const length = view.getUint16(at + W.SLOT_RESP_LEN, true);
    return {
      verdict: VERDICTS[view.getUint8(at + W.SLOT_VERDICT)],
      dropReason: view.getUint8(at + W.SLOT_DROP_REASON),
      result: view.getUint16(at + W.SLOT_RESULT, true),
      response: this.bytes.subarray(at + W.SLOT_DATA, at + W.SLOT_DATA + length),
      version: view.getUint8(at + W.SLOT_VERSION),
      opcode: view.getUint8(at + W.SLOT_OPCODE),
      parseFlags: view.getUint16(at + W.SLOT_PARSE_FLAGS, true),
      lifetime: view.getUint32(at + W.SLOT_LIFETIME, true),
      options: view.getUint32(at + W.SLOT_OPTIONS, true),
      filterCount: view.getUint16(at + W.SLOT_FILTER_COUNT, true),
    };
  }

  /** Slot field reader for the engine's parsed record (offsets from abi.ts). */
  slotField16(index: number, field: number): number {
    return this.mem().getUint16(this.slotAddress(index) + field, true);
  }

  /** Wire bytes of slot `index` (request before finishing, reply after). */
  slotData(index: number): Uint8Array {
    const at = this.slotAddress(index) + W.SLOT_DATA;
    this.mem();
    return this.bytes.subarray(at, at + W.SLOT_DATA_CAP);
  }

  /** Codec and engine over slots [0, count); returns the number of replies. */
  serve(count: number, epoch: number, now: number): number {
    if (count > W.SLOT_COUNT) throw new PcpdError(ErrorCodes.BATCH_TOO_LARGE, `batch of ${count} exceeds ${W.SLOT_COUNT} slots`);
    try {
      return this.exports.serveRange(0, count, epoch >>> 0, now >>> 0);
    } catch (cause) {
      throw new PcpdError(ErrorCodes.ENGINE_TRAPPED, "packet engine trapped; discard this instance", { cause });
    }
  }

  expire(now: number, budget = 0xffffffff): number {
    return this.exports.expire(now >>> 0, budget >>> 0);
  }

  /**
   * Slot `index`'s request, if it waits for the dataplane's activity answer (VERDICT_WAIT:
   * nothing changed, no reply): a copy of the whole slot, to be put back with putSlot and
   * served again once the answer is in. Undefined: it does not wait.
   */
  takeWaiting(index: number): Uint8Array | undefined {
    const at = this.slotAddress(index);
    this.mem();
    return this.bytes[at + W.SLOT_VERDICT] === W.VERDICT_WAIT ? this.bytes.slice(at, at + W.SLOT_SIZE) : undefined;
  }

  /** Puts a slot taken by takeWaiting (or holdReply) back at `index`, to be served again. */
  putSlot(index: number, slot: Uint8Array): void {
    this.mem();
    this.bytes.set(slot, this.slotAddress(index));
  }

  /**
   * The activity queries the last calls queued (event-layout records, a copy; decode with
   * decodeRecords), or undefined when there are none: one call per batch, no allocation then.
   */
  takeActivityQueries(): Uint8Array | undefined {
    const n = this.exports.activityTake();
    if (n === 0) return undefined;
    const at = this.exports.activityBase();
    this.mem();
    return this.bytes.slice(at, at + n * W.EVENT_SIZE);
  }

  /** The dataplane's answer for one query (its mapping id, protocol and external port): `remaining` seconds of traffic-kept life. */
  activityAnswer(now: number, mapping: number, protocol: number, externalPort: number, remaining: number): boolean {
    return this.exports.activityAnswer(now >>> 0, mapping >>> 0, protocol, externalPort, Math.max(0, Math.min(remaining, 0x7fffffff)) >>> 0) === 1;
  }

  engineStats(): Record<string, bigint> {
    return readEngineStats(this.mem(), this.statsAt);
  }

  stats(): CodecStats {
    return readCodecStats(this.mem(), this.statsAt);
  }

  /** Whether slot `index`'s reply must wait until its mapping is on disk (a check-pointed request). */
  replyWaitsForDisk(index: number): boolean {
    return (this.mem().getUint8(this.slotAddress(index) + W.SLOT_HOST_FLAGS) & W.HOST_CHECKPOINT) !== 0;
  }

  /** The counters block (STATS_SIZE bytes) as a view into module memory, for copying. */
  statsBytes(): Uint8Array {
    this.mem();
    return this.bytes.subarray(this.statsAt, this.statsAt + W.STATS_SIZE);
  }
}
