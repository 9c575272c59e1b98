// The operator's Epoch reset removes a shard's files from the main thread
// (src/server/server.ts resetShard): dropShardFiles unlinks them off the event loop, so
// the snapshots and journals of 10M mappings (over a second of unlinking, bench:stall) do
// not hold the thread that feeds systemd's watchdog.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { dropShardFiles } from "../../src/persist/store.js";
import { turnsDuring } from "../helpers/turns.js";

const root = mkdtempSync(join(tmpdir(), "pcpd-drop-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("dropShardFiles", () => {
  it("removes every file and subdirectory, keeps the directory, and lets the event loop turn meanwhile", async () => {
    const dir = join(root, "shard-0-of-1");
    mkdirSync(join(dir, "sub"), { recursive: true });
    const block = Buffer.alloc(16 * 1024, 7);
    for (let i = 0; i < 200; i++) writeFileSync(join(dir, `journal-${String(i).padStart(10, "0")}.log`), block);
    writeFileSync(join(dir, "sub", "snapshot-0000000001.snap"), block);
    const turns = await turnsDuring(() => dropShardFiles(dir));
    expect(readdirSync(dir)).toEqual([]);
    expect(existsSync(dir)).toBe(true); // it may be a mount point
    expect(turns).toBeGreaterThan(1); // done in one block, the loop would not have turned at all
  });

  it("a directory that does not exist: nothing to do", async () => {
    await expect(dropShardFiles(join(root, "absent"))).resolves.toBeUndefined();
  });
});
