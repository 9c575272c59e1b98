// Host side of the WebAssembly packet engine: loads the module, fills batch slots,
// runs the batch and reads verdicts and counters. The only TypeScript view of the
// module's exports is `EngineExports` below.
import { readFileSync } from "node:fs";
import * as W from "../wire.generated.js";
import { ErrorCodes, PcpdError } from "../errors.js";

export interface EngineExports {
  readonly memory: WebAssembly.Memory;
  _initialize(): void;
  slotsBase(): number;
  statsBase(): number;
  configureCodec(flags: number, options: number, shortErr: number, longErr: number, tpidMaxLen: number): void;
  setEpoch(epoch: number): void;
  resetStats(): void;
  errorLifetime(result: number): number;
  processBatch(count: number, epoch: number): number;
  processRange(first: number, count: number, epoch: number): number;
  finishSuccess(slot: number, lifetime: number, echoMask: number): void;
  finishError(slot: number, result: number, lifetime: number): void;
  finishNatPmpAddress(slot: number, result: number, ipv4: number): void;
  finishNatPmpMap(slot: number, result: number, externalPort: number, lifetime: number): void;
  heapProbe(): number;
}

export type Build = "debug" | "release";

export interface CodecConfig {
  mapEnabled: boolean;
  peerEnabled: boolean;
  /** Overloaded requests get NO_RESOURCES (true) or are dropped silently (false) [RFC 6887 §8.2]. */
  overloadReply: boolean;
  /** NAT-PMP on the same socket: answered, answered as an unsupported PCP version, or never answered. */
  natPmp: "enabled" | "disabled" | "silent";
  /** OPTBIT_* mask of the options this server processes; others behave as unknown. */
  options: number;
  shortErrorLifetime: number;
  longErrorLifetime: number;
  thirdPartyIdMaxLength: number;
}

export const DEFAULT_CODEC_CONFIG: Readonly<CodecConfig> = Object.freeze({
  mapEnabled: true,
  peerEnabled: true,
  overloadReply: false,
  natPmp: "enabled",
  options: W.OPTBIT_CORE,
  shortErrorLifetime: W.DEFAULT_SHORT_ERROR_LIFETIME,
  longErrorLifetime: W.DEFAULT_LONG_ERROR_LIFETIME,
  thirdPartyIdMaxLength: 16,
});

export interface Datagram {
  payload: Uint8Array;
  /** 16-byte source address (IPv4 v4-mapped), see src/net/address.ts. */
  source: Uint8Array;
  sourcePort: number;
  /** INGRESS_* bits from the host's interface/subnet classification. */
  ingress: number;
  overloaded?: boolean;
}

export type Verdict = "drop" | "reply" | "parsed";
const VERDICTS: Verdict[] = ["drop", "reply", "parsed"];

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

export interface CodecStats {
  packets: bigint;
  parsed: bigint;
  pcpResults: bigint[];
  natPmpResults: bigint[];
  drops: bigint[];
}

const modules = new Map<Build, WebAssembly.Module>();

export function wasmUrl(build: Build): URL {
  // src/engine/ and dist/engine/ are both two levels below the package root.
  return new URL(`../../build/${build}.wasm`, import.meta.url);
}

function compile(build: Build): WebAssembly.Module {
  let module = modules.get(build);
  if (!module) {
    let bytes: Uint8Array<ArrayBuffer>;
    try {
      bytes = new Uint8Array(readFileSync(wasmUrl(build)));
    } catch (cause) {
      throw new PcpdError(ErrorCodes.MODULE_UNAVAILABLE, `build/${build}.wasm not found: run npm run build`, { cause });
    }
    module = new WebAssembly.Module(bytes);
    modules.set(build, module);
  }
  return module;
}

export class PacketEngine {
  readonly exports: EngineExports;
  readonly slotCount = W.SLOT_COUNT;
  private readonly slots: number;
  private readonly statsAt: number;
  private bytes: Uint8Array;
  private view: DataView;

  constructor(build: Build = "release", config: CodecConfig = DEFAULT_CODEC_CONFIG) {
    const instance = new WebAssembly.Instance(compile(build), {});
    this.exports = instance.exports as unknown as EngineExports;
    this.exports._initialize();
    this.slots = this.exports.slotsBase();
    this.statsAt = this.exports.statsBase();
    this.bytes = new Uint8Array(this.exports.memory.buffer);
    this.view = new DataView(this.exports.memory.buffer);
    this.configure(config);
  }

  /** Views are rebuilt when linear memory has grown (its ArrayBuffer is then replaced). */
  private mem(): DataView {
    if (this.view.buffer !== this.exports.memory.buffer) {
      this.bytes = new Uint8Array(this.exports.memory.buffer);
      this.view = new DataView(this.exports.memory.buffer);
    }
    return this.view;
  }

  configure(c: CodecConfig): void {
    let flags = 0;
    if (c.mapEnabled) flags |= W.CFG_MAP_ENABLED;
    if (c.peerEnabled) flags |= W.CFG_PEER_ENABLED;
    if (c.overloadReply) flags |= W.CFG_OVERLOAD_REPLY;
    if (c.natPmp === "enabled") flags |= W.CFG_NATPMP_ENABLED;
    if (c.natPmp === "silent") flags |= W.CFG_NATPMP_SILENT;
    this.exports.configureCodec(flags, c.options, c.shortErrorLifetime, c.longErrorLifetime, c.thirdPartyIdMaxLength);
  }

  slotAddress(index: number): number {
    return this.slots + index * W.SLOT_SIZE;
  }

  /** Copies one datagram into slot `index` (payload beyond SLOT_DATA_CAP is cut; its length is kept). */
  load(index: number, d: Datagram): void {
    if (d.source.length !== 16) throw new PcpdError(ErrorCodes.BAD_DATAGRAM, "source address must be 16 bytes");
    const view = this.mem();
    const at = this.slotAddress(index);
    const kept = Math.min(d.payload.length, W.SLOT_DATA_CAP);
    this.bytes.set(d.source, at + W.SLOT_SRC_ADDR);
    view.setUint16(at + W.SLOT_SRC_PORT, d.sourcePort, true);
    view.setUint16(at + W.SLOT_WIRE_LEN, Math.min(d.payload.length, 0xffff), true);
    view.setUint8(at + W.SLOT_INGRESS, d.ingress);
    view.setUint8(at + W.SLOT_HOST_FLAGS, d.overloaded ? W.HOST_OVERLOADED : 0);
    this.bytes.set(d.payload.subarray(0, kept), at + W.SLOT_DATA);
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

  stats(): CodecStats {
    const view = this.mem();
    const read = (offset: number, n: number) =>
      Array.from({ length: n }, (_, i) => view.getBigUint64(this.statsAt + offset + 8 * i, true));
    return {
      packets: view.getBigUint64(this.statsAt + W.STATS_PACKETS, true),
      parsed: view.getBigUint64(this.statsAt + W.STATS_PARSED, true),
      pcpResults: read(W.STATS_PCP_RESULT, W.RESULT_CODE_LIMIT),
      natPmpResults: read(W.STATS_NATPMP_RESULT, W.NATPMP_RESULT_CODE_LIMIT),
      drops: read(W.STATS_DROP, W.DROP_REASON_LIMIT),
    };
  }
}
