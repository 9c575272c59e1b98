// A shard's directory (./store.ts): where it is, the names of its generations' files and
// which are present, and the promise-returning fd operations the store's writes use.
import fs from "node:fs";
import { join } from "node:path";

/**
 * Removes everything a shard persisted (the operator's Epoch reset); the directory stays: it
 * may be a mount point. Asynchronous (libuv's threads): it runs on the main thread, and
 * unlinking the snapshots and journals of 10M mappings held that thread's event loop
 * (which feeds systemd's watchdog) for over a second.
 */
export async function dropShardFiles(dir: string): Promise<void> {
  let names: string[];
  try {
    names = await fs.promises.readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return;
    throw e;
  }
  await Promise.all(names.map((name) => fs.promises.rm(join(dir, name), { recursive: true, force: true })));
}

export function shardDirectory(directory: string, shard: number, shards: number): string {
  return join(directory, `shard-${shard}-of-${shards}`);
}

const pad = (n: number) => String(n).padStart(10, "0");
export const journalName = (gen: number) => `journal-${pad(gen)}.log`;
export const snapshotName = (gen: number) => `snapshot-${pad(gen)}.snap`;
const genOf = (name: string, kind: "journal" | "snapshot") => {
  const m = new RegExp(`^${kind}-(\\d{10})\\.(log|snap)$`).exec(name);
  return m ? Number(m[1]) : undefined;
};

/** Generations present in `dir`: complete snapshots and journals. */
export function generations(dir: string): { snapshots: number[]; journals: number[] } {
  const names = fs.existsSync(dir) ? fs.readdirSync(dir) : [];
  const of = (kind: "journal" | "snapshot") =>
    names
      .map((n) => genOf(n, kind))
      .filter((g): g is number => g !== undefined)
      .sort((a, b) => a - b);
  return { snapshots: of("snapshot"), journals: of("journal") };
}

export const write = (fd: number, bytes: Uint8Array) =>
  new Promise<void>((resolve, reject) => {
    const step = (offset: number) =>
      fs.write(fd, bytes, offset, bytes.length - offset, null, (e, n) => (e ? reject(e) : offset + n < bytes.length ? step(offset + n) : resolve()));
    step(0);
  });
export function fileSize(fd: number): number | undefined {
  try {
    return fs.fstatSync(fd).size;
  } catch {
    return undefined;
  }
}
export const datasync = (fd: number) => new Promise<void>((resolve, reject) => fs.fdatasync(fd, (e) => (e ? reject(e) : resolve())));
export const close = (fd: number) => new Promise<void>((resolve, reject) => fs.close(fd, (e) => (e ? reject(e) : resolve())));
export const truncate = (fd: number, size: number) => new Promise<void>((resolve, reject) => fs.ftruncate(fd, size, (e) => (e ? reject(e) : resolve())));

export function syncDirectory(dir: string): void {
  const fd = fs.openSync(dir, "r");
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
