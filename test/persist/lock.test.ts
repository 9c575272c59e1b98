// The data directory's LOCK (src/persist/lock.ts): a kernel-held flock, released when its
// holder dies however it dies; the PID in the file is information only.
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { DirectoryLockedError, lockDirectory } from "../../src/persist/lock.js";
import { waitFor } from "../helpers/wait.js";
import { tempDir } from "../helpers/temp.js";

const CLI = new URL("../../dist/cli/pcp-server.js", import.meta.url).pathname;

/** Whether another process could take LOCK now (flock(1) on its own open of the file). */
const lockableElsewhere = (dir: string) => spawnSync("flock", ["--exclusive", "--nonblock", join(dir, "LOCK"), "true"]).status === 0;

describe("data directory lock", () => {
  it("a LOCK naming this very process (PID reuse, PID 1 in a container) does not block", () => {
    const dir = tempDir("pcpd-lock");
    fs.writeFileSync(join(dir, "LOCK"), `${process.pid}\n`);
    const release = lockDirectory(dir);
    expect(fs.readFileSync(join(dir, "LOCK"), "utf8").trim()).toBe(String(process.pid));
    release();
  });

  it("is held against other processes (and other opens) while held, free once released", () => {
    const dir = tempDir("pcpd-lock");
    const release = lockDirectory(dir);
    expect(lockableElsewhere(dir)).toBe(false);
    expect(() => lockDirectory(dir)).toThrow(DirectoryLockedError);
    expect(() => lockDirectory(dir)).toThrow(new RegExp(`LOCK names process ${process.pid}`));
    release();
    expect(lockableElsewhere(dir)).toBe(true);
    lockDirectory(dir)();
  });

  it("kill -9 of the server, then an immediate restart, 20 times: the server is PID 1 of its own PID namespace each time", async () => {
    const dir = tempDir("pcpd-lock");
    const file = join(dir, "pcpd.yaml");
    fs.writeFileSync(
      file,
      `listen:\n  addresses: [127.0.0.61]\n  port: 0\npool:\n  addresses: [192.0.2.1]\ncontrol:\n  enabled: false\npersistence:\n  directory: ${join(dir, "data")}\nlog:\n  level: info\n`,
    );
    for (let round = 0; round < 20; round++) {
      // unshare forks node as PID 1 of a new PID namespace: every round's server has the
      // PID the previous round's LOCK names.
      const child = spawn("unshare", ["--pid", "--fork", process.execPath, CLI, "--config", file], { stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      child.stdout!.on("data", (chunk) => (out += chunk));
      child.stderr!.on("data", (chunk) => (out += chunk));
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      await waitFor(
        () => {
          if (child.exitCode !== null) throw new Error(`round ${round}: server exited: ${out}`);
          return out.includes("pcp server listening");
        },
        { timeout: 20_000, message: () => `round ${round}: server did not start: ${out}` },
      );
      expect(fs.readFileSync(join(dir, "data", "LOCK"), "utf8").trim()).toBe("1");
      expect(lockableElsewhere(join(dir, "data"))).toBe(false);
      // The server's host PID: unshare's only child.
      const server = Number(fs.readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, "utf8").trim());
      expect(server).toBeGreaterThan(1);
      process.kill(server, "SIGKILL");
      await exited;
    }
  }, 240_000);
});
