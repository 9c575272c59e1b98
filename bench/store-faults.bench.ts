// Question: with the fault cases of issue #12 in the balance, should persistence stay the
// hand-written journal (src/persist) or move to an embedded transactional store (lmdb)?
// Both designs get the same record stream from a real packet engine and the same faults:
//   enospc   the data directory on a small tmpfs, filled while mappings are being created,
//            freed again, then kill -9: acknowledged mappings lost (beyond the 500 ms
//            horizon, and in all), whether the writer survived, errors it saw
//   kill9    kill -9 under load on the local disk, restore at once ("restart right after
//            kill -9"): lost beyond the horizon, age of the oldest lost, restore time
//   bitflip  a clean stop, then one flipped bit at a random offset of a random data file
//            (--flips trials): mappings lost, mappings restored *wrong* (another external
//            port or address), whether the damage was reported, restore errors or crashes
// The writer and every restore run in child processes (bench/store-faults/child.ts), so a
// crash is an outcome, not the end of the bench. The journal side is the real ShardStore;
// the lmdb side is bench/store-faults/lmdb-store.ts (one entry per external key, sync commits).
// Usage: tsx bench/store-faults.bench.ts [--flips 20] [--cases enospc,kill9,bitflip].
// Results: bench/results/store-faults.json (all cases), else store-faults-<cases>.json.
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { machineInfo, root, track, writeResults } from "./e2e/harness.js";
import { mountTmpfs } from "../test/helpers/tmpfs.js";

const { values: flags } = parseArgs({ options: { flips: { type: "string", default: "20" }, cases: { type: "string", default: "enospc,kill9,bitflip" } } });
const FLIPS = Number(flags.flips);
const HORIZON_MS = 500;
const CHILD = join(root, "bench", "store-faults", "child.ts");
type Design = "journal" | "lmdb";

/** base64 → u32 values (copied out of Buffer's shared pool). */
const u32s = (b64: string) => new Uint32Array(Uint8Array.from(Buffer.from(b64, "base64")).buffer);

interface Writer {
  proc: ChildProcess;
  /** index → [ack time (ms since the epoch), external address octet << 16 | port] */
  acks: Map<number, [number, number]>;
  status: () => Record<string, unknown>;
  /** The first status that reported trouble (state not ok, or write errors). */
  trouble: () => Record<string, unknown> | undefined;
  /** How and when (ms since the epoch) it ended. */
  exited: Promise<{ code: number | null; signal: string | null; at: number }>;
}

function writer(design: Design, dir: string): Writer {
  const proc = track(spawn(process.execPath, ["--import", "tsx", CHILD, "write", design, dir], { cwd: root, stdio: ["ignore", "pipe", "pipe"] }));
  const acks = new Map<number, [number, number]>();
  let status: Record<string, unknown> = {};
  let trouble: Record<string, unknown> | undefined;
  let buffer = "";
  proc.stdout!.on("data", (d) => {
    buffer += d;
    const lines = buffer.split("\n");
    buffer = lines.pop()!;
    for (const l of lines) {
      if (l.startsWith("S ")) {
        status = JSON.parse(l.slice(2));
        if (!trouble && ((status.state !== undefined && status.state !== "ok") || Number(status.writeErrors) > 0)) trouble = status;
      }
      if (!l.startsWith("A ")) continue;
      const [, first, count, at, ports] = l.split(" ");
      const p = u32s(ports);
      for (let k = 0; k < Number(count); k++) if (p[k]) acks.set(Number(first) + k, [Number(at), p[k]]);
    }
  });
  proc.stderr!.on("data", (d) => process.stderr.write(`[${design} writer] ${d}`));
  const exited = new Promise<{ code: number | null; signal: string | null; at: number }>((resolve) =>
    proc.once("exit", (code, signal) => resolve({ code, signal, at: performance.timeOrigin + performance.now() })),
  );
  return { proc, acks, status: () => status, trouble: () => trouble, exited };
}

async function until(ok: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) return false;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return true;
}

/** A restore in a child: its JSON line, or how it died. */
async function restore(
  design: Design,
  dir: string,
  count: number,
): Promise<{ ms?: number; error?: string; crashed?: string; damageReported?: boolean; found: Uint32Array }> {
  const proc = spawn(process.execPath, ["--import", "tsx", CHILD, "restore", design, dir, String(count)], { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  proc.stdout.on("data", (d) => (out += d));
  proc.stderr.on("data", (d) => (err += d));
  const { code, signal } = await new Promise<{ code: number | null; signal: string | null }>((resolve) =>
    proc.once("exit", (c, s) => resolve({ code: c, signal: s })),
  );
  const line = out.trim().split("\n").pop();
  if (code !== 0 || !line) return { crashed: `exit ${code ?? signal}: ${err.trim().split("\n").slice(-2).join(" | ")}`, found: new Uint32Array(count) };
  const j = JSON.parse(line);
  return { ...j, found: u32s(j.found) };
}

function compare(acks: Map<number, [number, number]>, found: Uint32Array, killedAt: number) {
  let lost = 0;
  let lostBeyondHorizon = 0;
  let wrong = 0;
  let oldestLostMs = 0;
  for (const [i, [at, value]] of acks) {
    if (found[i] === 0) {
      lost++;
      if (at <= killedAt - HORIZON_MS) lostBeyondHorizon++;
      oldestLostMs = Math.max(oldestLostMs, killedAt - at);
    } else if (found[i] !== value) wrong++;
  }
  return { acknowledged: acks.size, lost, lostBeyondHorizon, wrong, oldestLostMs: Math.round(oldestLostMs * 10) / 10 };
}

async function kill(w: Writer): Promise<number> {
  const at = performance.timeOrigin + performance.now();
  w.proc.kill("SIGKILL");
  await w.exited;
  return at;
}

async function enospc(design: Design) {
  const disk = mountTmpfs(64 << 20);
  try {
    const w = writer(design, disk.dir);
    await until(() => w.acks.size >= 3000, 60_000);
    disk.fill(4096);
    const before = w.acks.size;
    // The outage lasts until the writer reports it (or dies, or 3 s pass) and 5000 more mappings were acknowledged.
    await until(() => w.trouble() !== undefined || w.proc.exitCode !== null || w.proc.signalCode !== null, 3000);
    await until(() => w.acks.size >= before + 5000 || w.proc.exitCode !== null || w.proc.signalCode !== null, 10_000);
    const during = w.acks.size - before;
    const seen = w.trouble() ?? null;
    disk.free();
    const recovered = design === "journal" ? await until(() => w.status().state === "ok", 15_000) : await until(() => false, 1500).then(() => null);
    const after = w.acks.size;
    await until(() => w.acks.size >= after + 2000, 10_000);
    const died = w.proc.exitCode !== null || w.proc.signalCode !== null ? await w.exited : null;
    const killedAt = died ? died.at : await kill(w);
    const r = await restore(design, disk.dir, 400_000);
    return {
      case: "enospc",
      design,
      acknowledgedDuringOutage: during,
      troubleReported: seen,
      recoveredReported: recovered,
      writerDiedOnItsOwn: died,
      restore: { ms: r.ms, error: r.error, crashed: r.crashed },
      ...compare(w.acks, r.found, killedAt),
    };
  } finally {
    disk.unmount();
  }
}

async function kill9(design: Design) {
  const dir = fs.mkdtempSync(join(os.tmpdir(), "pcpd-faults-"));
  try {
    const w = writer(design, dir);
    await until(() => w.acks.size >= 20_000, 60_000);
    const killedAt = await kill(w);
    const r = await restore(design, dir, 400_000);
    return { case: "kill9", design, restore: { ms: r.ms, error: r.error, crashed: r.crashed }, ...compare(w.acks, r.found, killedAt) };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const dataFiles = (dir: string): string[] =>
  fs
    .readdirSync(dir, { withFileTypes: true })
    .flatMap((e) =>
      e.isDirectory() ? dataFiles(join(dir, e.name)) : /\.(log|snap|mdb)$/.test(e.name) && !e.name.endsWith("lock.mdb") ? [join(dir, e.name)] : [],
    );

async function bitflip(design: Design) {
  const dir = fs.mkdtempSync(join(os.tmpdir(), "pcpd-faults-"));
  const copy = `${dir}-copy`;
  try {
    const w = writer(design, dir);
    await until(() => w.acks.size >= 10_000, 60_000);
    w.proc.kill("SIGTERM");
    await w.exited;
    const trials: (ReturnType<typeof compare> & { file: string; offset: number; damageReported: boolean | null; error?: string; crashed?: string })[] = [];
    let seed = 2024;
    for (let t = 0; t < FLIPS; t++) {
      fs.rmSync(copy, { recursive: true, force: true });
      fs.cpSync(dir, copy, { recursive: true });
      const files = dataFiles(copy);
      const sizes = files.map((f) => fs.statSync(f).size);
      seed = (seed * 1103515245 + 12345) >>> 0;
      let bit = seed % (sizes.reduce((a, b) => a + b, 0) * 8);
      let f = 0;
      while (bit >= sizes[f] * 8) bit -= sizes[f++] * 8;
      const fd = fs.openSync(files[f], "r+");
      const b = Buffer.alloc(1);
      fs.readSync(fd, b, 0, 1, bit >> 3);
      b[0] ^= 1 << (bit & 7);
      fs.writeSync(fd, b, 0, 1, bit >> 3);
      fs.closeSync(fd);
      const r = await restore(design, copy, 400_000);
      trials.push({
        file: files[f].slice(copy.length + 1),
        offset: bit >> 3,
        damageReported: r.damageReported ?? null,
        error: r.error,
        crashed: r.crashed,
        ...compare(w.acks, r.found, Infinity),
      });
    }
    const sum = (k: "lost" | "wrong") => trials.reduce((n, t) => n + t[k], 0);
    return {
      case: "bitflip",
      design,
      acknowledged: w.acks.size,
      flips: FLIPS,
      flipsWithLoss: trials.filter((t) => t.lost > 0).length,
      flipsWithWrongMappings: trials.filter((t) => t.wrong > 0).length,
      flipsUndetectedWithLossOrWrong: trials.filter((t) => (t.lost > 0 || t.wrong > 0) && !t.damageReported).length,
      restoreFailures: trials.filter((t) => t.error || t.crashed).length,
      maxLost: Math.max(...trials.map((t) => t.lost)),
      lostTotal: sum("lost"),
      wrongTotal: sum("wrong"),
      trials,
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(copy, { recursive: true, force: true });
  }
}

const results = [];
for (const run of [enospc, kill9, bitflip].filter((c) => flags.cases!.split(",").includes(c.name))) {
  for (const design of ["journal", "lmdb"] as const) {
    const r = await run(design);
    const { trials: _t, ...brief } = r as Record<string, unknown>;
    console.error(JSON.stringify(brief));
    results.push(r);
  }
}
writeResults(flags.cases === "enospc,kill9,bitflip" ? "store-faults.json" : `store-faults-${flags.cases!.replaceAll(",", "-")}.json`, {
  question:
    "journal (src/persist) or lmdb under the fault cases of issue #12: full disk then recovery, kill -9 under load, restart right after, one flipped bit",
  method: {
    horizonMs: HORIZON_MS,
    flips: FLIPS,
    journal: "ShardStore, commitIntervalMs 20, fdatasync",
    lmdb: "lmdb-js put per record, sync commits",
    tmpfs: "64 MiB",
  },
  ...machineInfo(),
  results,
});
