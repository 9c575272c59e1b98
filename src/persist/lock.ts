// One server per data directory: two processes journaling into the same files would
// corrupt each other's state. The lock is a file holding the owner's pid, created
// exclusively; a lock whose process is gone (a crash, kill -9) is taken over.
import fs from "node:fs";
import { join } from "node:path";

export class DirectoryLockedError extends Error {}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Takes `<directory>/LOCK` (creating the directory); returns the release function. */
export function lockDirectory(directory: string): () => void {
  try {
    fs.mkdirSync(directory, { recursive: true });
  } catch (e) {
    throw new Error(`persistence.directory ${directory}: ${(e as Error).message}`);
  }
  const path = join(directory, "LOCK");
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(path, `${process.pid}\n`, { flag: "wx", mode: 0o644 });
      return () => fs.rmSync(path, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      const owner = Number(fs.readFileSync(path, "utf8").trim());
      if (Number.isInteger(owner) && owner > 0 && alive(owner)) {
        throw new DirectoryLockedError(`persistence.directory ${directory} is in use by process ${owner}`);
      }
      fs.rmSync(path, { force: true }); // left by a process that is gone
    }
  }
  throw new DirectoryLockedError(`persistence.directory ${directory}: could not take its lock`);
}
