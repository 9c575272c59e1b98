// A small tmpfs to run persistence into a full disk (the tests run as root): mounted on a
// fresh directory, filled by a file that takes every free byte, freed by deleting it.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import { join } from "node:path";

export interface Tmpfs {
  dir: string;
  /** Writes a filler file until the filesystem is full, leaving about `leave` bytes free (rounded to pages). */
  fill(leave?: number): void;
  /** Deletes the filler. */
  free(): void;
  unmount(): void;
}

export function mountTmpfs(bytes: number): Tmpfs {
  const dir = fs.mkdtempSync(join(os.tmpdir(), "pcpd-tmpfs-"));
  execFileSync("mount", ["-t", "tmpfs", "-o", `size=${bytes}`, "tmpfs", dir]);
  const filler = join(dir, "filler");
  return {
    dir,
    fill(leave = 0) {
      const fd = fs.openSync(filler, "a");
      const block = Buffer.alloc(64 * 1024, 0xee);
      try {
        for (let i = 0; i < 1 << 20; i++) {
          const free = fs.statfsSync(dir).bavail * fs.statfsSync(dir).bsize;
          if (free <= leave) return;
          try {
            fs.writeSync(fd, block, 0, Math.min(block.length, Math.max(1, free - leave)));
          } catch (e) {
            if ((e as NodeJS.ErrnoException).code === "ENOSPC") return;
            throw e;
          }
        }
      } finally {
        fs.closeSync(fd);
      }
    },
    free() {
      fs.rmSync(filler, { force: true });
    },
    unmount() {
      execFileSync("umount", ["-l", dir]);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
