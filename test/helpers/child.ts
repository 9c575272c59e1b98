// Stopping a process a test started: SIGTERM, then wait for its exit (a no-op once it ended).
import type { ChildProcess } from "node:child_process";

export async function stopChild(c: ChildProcess | undefined): Promise<void> {
  if (!c || c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise((resolve) => c.once("exit", resolve));
  c.kill("SIGTERM");
  await exited;
}
