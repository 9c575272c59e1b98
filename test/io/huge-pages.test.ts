// Transparent huge pages for the engine's WebAssembly memory (src/io/huge-pages.ts,
// native/hugepages.c) against the real kernel: an engine of 1M mappings advised before
// initEngine has its tables in 2 MiB pages (AnonHugePages of /proc/self/smaps), one not
// advised does not; without the addon (missing, broken) the engine runs on 4 KiB pages as
// before and the reason is given; a buffer madvise cannot take is refused with its errno.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import { PacketEngine } from "../../src/engine/packet-engine.js";
import { adviseHugePages, hugePageBytes, memoryBase, thpMode } from "../../src/io/huge-pages.js";
import { chooseIo, type NativeAddon } from "../../src/io/native.js";
import { engineConfig } from "../helpers/engine-config.js";
import { mapRequest, serveOne } from "../helpers/packets.js";
import { tempDir } from "../helpers/temp.js";

const MAPPINGS = 1_000_000;
const config = engineConfig({ capacity: { mappings: MAPPINGS, subscribers: MAPPINGS / 50 } });
// CI builds the addon (npm ci, scripts/test-deps.sh): its absence is a failure there (test/io/native.test.ts).
const addon = chooseIo({}).addon as NativeAddon;
const mode = thpMode();

/** A new engine, advised (or not) as `advise` says, then initialised; its memory's huge-page bytes. */
function engine(advise: (memory: WebAssembly.Memory) => void): { e: PacketEngine; base: number; huge: number; bytes: number } {
  const e = new PacketEngine("release", config);
  const memory = e.exports.memory;
  advise(memory);
  e.initEngine(config, 1);
  const base = memoryBase(memory, {});
  const bytes = memory.buffer.byteLength;
  return { e, base, huge: hugePageBytes(base, bytes), bytes };
}

/** The engine answers a MAP (a new mapping, then its refresh). */
function serves(e: PacketEngine): void {
  for (const now of [2, 3]) expect(serveOne(e, mapRequest({ client: "192.0.2.7" }), now, { source: "192.0.2.7" }).result).toBe(W.RESULT_SUCCESS);
  expect(e.engineStats().mappings).toBe(1n);
}

describe.skipIf(mode === "never")("engine memory in huge pages (kernel THP mode: madvise or always)", () => {
  it("advised before initEngine: most of an engine of 1M mappings is in 2 MiB pages", () => {
    let advised: ReturnType<typeof adviseHugePages> | undefined;
    const { e, base, huge, bytes } = engine((m) => (advised = adviseHugePages(m, "auto", {})));
    expect(advised).toMatchObject({ advised: true, reason: expect.stringMatching(/^madvise\(MADV_HUGEPAGE\) over 4294967296 bytes/) });
    expect(advised!.base).toBe(base);
    expect(bytes).toBeGreaterThan(80 * 2 ** 20); // the tables of 1M mappings
    // The zeroed tables were faulted in after the advice: 2 MiB pages wherever the kernel had
    // them (a 2 MiB-unaligned edge of the memory, and the module's data, stay in 4 KiB pages).
    expect(huge).toBeGreaterThan(bytes * 0.7);
    serves(e);
  });

  it.skipIf(mode !== "madvise")("not advised (engine.hugePages off): 4 KiB pages", () => {
    let off: ReturnType<typeof adviseHugePages> | undefined;
    const { e, huge } = engine((m) => (off = adviseHugePages(m, "off", {})));
    expect(off).toEqual({ advised: false, reason: "engine.hugePages is off", base: 0 });
    expect(huge).toBe(0);
    serves(e);
  });
});

describe("without huge pages the engine runs as before", () => {
  it("an addon that is not there, or does not load: not advised, the reason given, the engine serves", () => {
    const missing = engine((m) =>
      expect(adviseHugePages(m, "auto", { PCPD_IO_ADDON: "/nonexistent/udp_batch.node" })).toMatchObject({
        advised: false,
        reason: expect.stringMatching(/^addon not built/),
      }),
    );
    serves(missing.e);
    const broken = join(tempDir("hugepages-addon"), "udp_batch.node");
    writeFileSync(broken, "not an ELF object");
    const e = new PacketEngine("release", config);
    expect(adviseHugePages(e.exports.memory, "auto", { PCPD_IO_ADDON: broken })).toMatchObject({
      advised: false,
      reason: expect.stringMatching(/^addon failed to load/),
    });
    e.initEngine(config, 1);
    serves(e);
  });

  it("madvise refused (a buffer not on a page boundary): errno EINVAL, nothing advised", () => {
    // A small buffer is malloc'd by V8: 16-byte aligned, rarely on a page boundary.
    let small = new ArrayBuffer(24);
    for (let i = 0; i < 16 && addon.hugePages(small, 0)[0] % 4096 === 0; i++) small = new ArrayBuffer(24);
    const [base, advised, errno] = addon.hugePages(small, 4096);
    expect(base % 4096).not.toBe(0);
    expect([advised, errno]).toEqual([0, 22]);
    expect(() => addon.hugePages({} as ArrayBuffer, 4096)).toThrow(/ArrayBuffer/);
  });

  it("hugePageBytes of an unknown range is 0", () => {
    expect(hugePageBytes(0, 4096)).toBe(0);
    expect(hugePageBytes(4096, 4096, "/nonexistent/smaps")).toBe(0);
  });
});
