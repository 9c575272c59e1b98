// The host ⇄ module boundary: compiling and instantiating the WebAssembly engine, the one
// TypeScript view of its exports, the region table and typed calls through the command
// slot (assembly/commands.ts). The boundary is memory regions plus a few verbs; why:
// docs/boundary.md.
import { readFileSync } from "node:fs";
import * as W from "../wire.generated.js";
import { ErrorCodes, PcpdError } from "../errors.js";

/**
 * The module's function exports, exactly (test/engine/boundary.test.ts compares the
 * compiled module with this list). Everything else the module exports is an immutable
 * global: the wire and ABI constants, checked by test/wire.test.ts.
 */
export const ENGINE_FUNCTIONS = [
  // batch path
  "processBatch",
  "processRange",
  "serveRange",
  "expire",
  // traffic-driven lifetimes (assembly/activity.ts)
  "activityTake",
  "activityBase",
  "activityAnswer",
  // control: the command slot and the region table
  "command",
  "regions",
  // start, abort, tests and benchmarks
  "_initialize",
  "onAbort",
  "heapProbe",
  "loadgenMap",
  // configuration: the region and the one call that applies it (docs/config.md)
  "configBase",
  "applyConfig",
] as const;

export interface EngineExports {
  readonly memory: WebAssembly.Memory;
  _initialize(): void;
  /** Codec over slots [0, count); how many are PARSED. */
  processBatch(count: number, epoch: number): number;
  /** Codec over slots [first, first + count) (the codec benchmark's rolling window). */
  processRange(first: number, count: number, epoch: number): number;
  /** Codec and engine over slots [first, first + count); the number of replies. */
  serveRange(first: number, count: number, epoch: number, now: number): number;
  /** Expiry wheel up to `now`, at most `budget` records; how many ended (0 with the event ring full: drain and call again). */
  expire(now: number, budget: number): number;
  /** Activity queries queued since the last call (event-layout records at activityBase()). */
  activityTake(): number;
  activityBase(): number;
  /** The dataplane's answer for mapping `m`: `remaining` seconds of traffic-kept life (0 idle); 1 applied, 0 gone. */
  activityAnswer(now: number, m: number, protocol: number, externalPort: number, remaining: number): number;
  /** Executes the command slot (CMDSLOT_*); CMDSTATUS_OK or CMDSTATUS_UNKNOWN. */
  command(): number;
  /** Address of the region table (REGION_*). */
  regions(): number;
  heapProbe(): number;
  loadgenMap(
    first: number,
    count: number,
    start: number,
    stride: number,
    total: number,
    perSubscriber: number,
    portOffset: number,
    lifetime: number,
    protocol: number,
  ): void;
  /** Address of the configuration region (CFG_*; written by src/config/region.ts). */
  configBase(): number;
  /** Copies the configuration region into the engine (phase CFG_PHASE_INIT or CFG_PHASE_RELOAD); an APPLY_* status. */
  applyConfig(phase: number): number;
}

/** Bases of the regions fixed at compile time (REGION_*). */
export interface Regions {
  slots: number;
  stats: number;
  scratch: number;
  list: number;
  description: number;
  command: number;
}

export type Build = "debug" | "release";

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

/** One engine instance: its exports, its memory views, its regions and the command slot. */
export class EngineBoundary {
  readonly exports: EngineExports;
  protected readonly regions: Readonly<Regions>;
  protected bytes: Uint8Array;
  protected view: DataView;
  // Cached: a property of the exports object (hundreds of constants) and Memory.buffer
  // each cost tens of nanoseconds per access.
  private readonly memory: WebAssembly.Memory;
  private readonly runCommand: () => number;

  constructor(build: Build) {
    const instance = new WebAssembly.Instance(compile(build), {});
    this.exports = instance.exports as unknown as EngineExports;
    this.exports._initialize();
    this.memory = this.exports.memory;
    this.runCommand = this.exports.command;
    this.bytes = new Uint8Array(this.memory.buffer);
    this.view = new DataView(this.memory.buffer);
    const at = this.exports.regions();
    const base = (offset: number) => this.view.getUint32(at + offset, true);
    this.regions = Object.freeze({
      slots: base(W.REGION_SLOTS),
      stats: base(W.REGION_STATS),
      scratch: base(W.REGION_SCRATCH),
      list: base(W.REGION_LIST),
      description: base(W.REGION_DESCRIPTION),
      command: base(W.REGION_COMMAND),
    });
  }

  /**
   * Views are rebuilt when linear memory has grown: growing detaches the old ArrayBuffer,
   * so a view of length 0 is stale (cheaper to test than reading Memory.buffer).
   */
  protected mem(): DataView {
    if (this.bytes.length === 0) {
      this.bytes = new Uint8Array(this.memory.buffer);
      this.view = new DataView(this.memory.buffer);
    }
    return this.view;
  }

  /**
   * Runs command `op` (CMD_*) with arguments a0..a6 through the command slot; returns
   * result r0 (u32; result() reads the others). Unused arguments are written as 0.
   */
  call(op: number, a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0): number {
    const view = this.mem();
    const at = this.regions.command;
    const args = at + W.CMDSLOT_ARGS;
    view.setUint32(at + W.CMDSLOT_OPCODE, op, true);
    view.setUint32(args, a0, true);
    view.setUint32(args + 4, a1, true);
    view.setUint32(args + 8, a2, true);
    view.setUint32(args + 12, a3, true);
    view.setUint32(args + 16, a4, true);
    view.setUint32(args + 20, a5, true);
    view.setUint32(args + 24, a6, true);
    if (this.runCommand() !== W.CMDSTATUS_OK)
      throw new PcpdError(ErrorCodes.MODULE_UNAVAILABLE, `the module does not know command ${op}: build/ is stale, run npm run build`);
    return this.result(0);
  }

  /** Result word `i` (0..CMDSLOT_RESULT_COUNT-1) of the last command, as u32. */
  result(i: number): number {
    return this.mem().getUint32(this.regions.command + W.CMDSLOT_RESULTS + 4 * i, true);
  }

  writeScratch(offset: number, bytes: Uint8Array): void {
    this.mem();
    this.bytes.set(bytes, this.regions.scratch + offset);
  }
}
