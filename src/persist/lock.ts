// One server per data directory: two processes journaling into the same files would
// corrupt each other's state. The lock is an advisory flock(2) on `<directory>/LOCK`,
// which the kernel releases when the holder's process ends however it ends (kill -9,
// a crash, a container stop), so a stale LOCK can never block a start, and a reused
// PID (the new server's own, PID 1 in a container) cannot fool it.
//
// Node has no flock(); flock(2) locks belong to the open file description, so the server
// opens LOCK and hands that descriptor to a short-lived `flock --exclusive --nonblock 3`
// (util-linux) as its fd 3: the lock it takes stays held by the server's descriptor after
// the child exits, until the server closes it or dies. libuv opens files O_CLOEXEC, so
// no other child inherits the descriptor (and so the lock). The PID written into the file
// is information for the operator only; nothing reads it to decide.
import fs from "node:fs";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { DirectoryLockedError, ErrorCodes, PcpdError } from "../errors.js";

export { DirectoryLockedError };

/** Takes `<directory>/LOCK` (creating the directory); returns the release function. */
export function lockDirectory(directory: string): () => void {
  try {
    fs.mkdirSync(directory, { recursive: true });
  } catch (e) {
    throw new PcpdError(ErrorCodes.DIRECTORY_UNUSABLE, `persistence.directory ${directory}: ${(e as Error).message}`, { cause: e });
  }
  const path = join(directory, "LOCK");
  // O_RDWR without O_TRUNC: the holder's PID stays readable until the lock is ours.
  const fd = fs.openSync(path, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644);
  const r = spawnSync("flock", ["--exclusive", "--nonblock", "3"], { stdio: ["ignore", "ignore", "pipe", fd] });
  if (r.status !== 0) {
    const holder = fs.readFileSync(fd, "utf8").trim();
    fs.closeSync(fd);
    if (r.error)
      throw new PcpdError(
        ErrorCodes.DIRECTORY_UNUSABLE,
        `persistence.directory ${directory}: cannot lock ${path}: flock(1) not runnable (${r.error.message}; util-linux is needed)`,
      );
    // flock(1) exits 1 when the lock is held (--nonblock); anything else is its own failure.
    if (r.status === 1)
      throw new DirectoryLockedError(`persistence.directory ${directory} is in use by another process${holder ? ` (LOCK names process ${holder})` : ""}`);
    throw new PcpdError(
      ErrorCodes.DIRECTORY_UNUSABLE,
      `persistence.directory ${directory}: cannot lock ${path}: ${r.stderr.toString().trim() || `flock exited with ${r.status ?? r.signal}`}`,
    );
  }
  fs.ftruncateSync(fd, 0);
  fs.writeSync(fd, `${process.pid}\n`, 0);
  // The file stays: unlinking it would let a process that opened the old inode and one that
  // creates a new file both "hold" the lock. Closing the descriptor releases it.
  let held = true;
  return () => {
    if (!held) return;
    held = false;
    fs.ftruncateSync(fd, 0);
    fs.closeSync(fd);
  };
}
