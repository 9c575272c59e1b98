// Transparent huge pages for an engine's WebAssembly memory (engine.hugePages; the why and
// the measurements: docs/engine.md "Huge pages"). At 10M mappings the tables span about
// 1 GB; in 4 KiB pages nearly every random access of a refresh is also a TLB miss. V8
// never advises WebAssembly memory and the usual kernel THP mode is `madvise`, so the
// host advises it through the addon (native/hugepages.c) — before the engine first
// touches its tables (initEngine zeroes them), since pages already faulted in as 4 KiB
// are only collapsed later by khugepaged, if at all. The advice covers the memory's whole
// wasm32 range (V8 reserves it at creation): the parts the module grows into later keep it.
import { readFileSync } from "node:fs";
import { loadAddon } from "./native.js";

/** A wasm32 memory's largest size: 65536 pages of 64 KiB. */
const WASM32_BYTES = 2 ** 32;
const THP_MODE_FILE = "/sys/kernel/mm/transparent_hugepage/enabled";

export type HugePagesMode = "auto" | "off";

export interface HugePages {
  /** Whether the memory was advised (its later faults get 2 MiB pages where the kernel has them). */
  advised: boolean;
  /** Why (or why not): logged once per engine. */
  reason: string;
  /** The memory's first byte in the process (0: unknown, without the addon). */
  base: number;
}

/** The kernel's THP mode (always, madvise, never), or undefined where the file is absent. */
export function thpMode(file = THP_MODE_FILE): string | undefined {
  try {
    return /\[(\w+)\]/.exec(readFileSync(file, "utf8"))?.[1];
  } catch {
    return undefined;
  }
}

/**
 * Advises `memory` for transparent huge pages (mode "auto"); call it before the memory's
 * pages are first written. Never throws: without the addon, with THP off in the kernel or
 * when madvise fails, the engine runs on 4 KiB pages as before and `reason` says why.
 */
export function adviseHugePages(memory: WebAssembly.Memory, mode: HugePagesMode, env: NodeJS.ProcessEnv = process.env): HugePages {
  if (mode === "off") return { advised: false, reason: "engine.hugePages is off", base: 0 };
  const addon = loadAddon(env, "hugePages");
  if (typeof addon === "string") return { advised: false, reason: addon, base: 0 };
  const kernel = thpMode();
  if (kernel === "never") return { advised: false, reason: `the kernel's THP mode is never (${THP_MODE_FILE})`, base: addon.hugePages(memory.buffer, 0)[0] };
  const [base, advised, errno] = addon.hugePages(memory.buffer, WASM32_BYTES);
  if (errno !== 0) return { advised: false, reason: `madvise(MADV_HUGEPAGE) failed: errno ${errno}`, base };
  return { advised: true, reason: `madvise(MADV_HUGEPAGE) over ${advised} bytes (kernel THP mode ${kernel ?? "unknown"})`, base };
}

/** The first byte of `memory` in the process (for hugePageBytes), or 0 without the addon. */
export function memoryBase(memory: WebAssembly.Memory, env: NodeJS.ProcessEnv = process.env): number {
  const addon = loadAddon(env, "hugePages");
  return typeof addon === "string" ? 0 : addon.hugePages(memory.buffer, 0)[0];
}

/**
 * Bytes of [base, base + length) backed by transparent huge pages (AnonHugePages of
 * /proc/self/smaps, summed over the mappings that overlap the range); 0 when unknown.
 * Reads the whole smaps file (milliseconds for a Node process): not for a hot path.
 */
export function hugePageBytes(base: number, length: number, smaps = "/proc/self/smaps"): number {
  if (base === 0 || length <= 0) return 0;
  let text: string;
  try {
    text = readFileSync(smaps, "utf8");
  } catch {
    return 0;
  }
  let inRange = false;
  let kib = 0;
  for (const line of text.split("\n")) {
    const range = /^([0-9a-f]+)-([0-9a-f]+) /.exec(line);
    if (range) {
      inRange = parseInt(range[1], 16) < base + length && parseInt(range[2], 16) > base;
    } else if (inRange && line.startsWith("AnonHugePages:")) {
      kib += Number(/(\d+)/.exec(line)?.[1] ?? 0);
    }
  }
  return kib * 1024;
}

export interface EngineMemory {
  hugePages: boolean;
  reason: string;
  memoryBytes: number;
  /** Bytes in transparent huge pages once `init` made the tables. */
  hugePageBytes: number;
}

/**
 * Advises `memory` (mode "auto"), then runs `init` — the engine's initEngine, which makes
 * and zeroes the tables: their first faults come after the advice — and measures the
 * bytes that ended up in huge pages: what a shard logs and publishes.
 */
export function withHugePages(memory: WebAssembly.Memory, mode: HugePagesMode, init: () => void, env: NodeJS.ProcessEnv = process.env): EngineMemory {
  const huge = adviseHugePages(memory, mode, env);
  init();
  const memoryBytes = memory.buffer.byteLength;
  return { hugePages: huge.advised, reason: huge.reason, memoryBytes, hugePageBytes: huge.advised ? hugePageBytes(huge.base, memoryBytes) : 0 };
}
