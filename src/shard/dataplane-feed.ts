// The records of every change a shard makes, posted to the main thread's dataplane manager
// (src/dataplane/manager.ts) every dataplane.batchMs: one message per interval, not one per
// batch, so a busy shard does not flood the main thread's event loop.
import type { DataplaneMessage } from "./tasks.js";

export class DataplaneFeed {
  private parts: Uint8Array[] = [];
  private readonly timer: NodeJS.Timeout;

  /** @param post hands a message to the main thread, transferring the listed buffers. */
  constructor(shard: number, batchMs: number, post: (m: DataplaneMessage, transfer: ArrayBuffer[]) => void) {
    this.timer = setInterval(() => {
      if (this.parts.length === 0) return;
      // Its own ArrayBuffer (Buffer.concat may share Node's pool), handed over without a copy.
      const bytes = new Uint8Array(this.parts.reduce((n, p) => n + p.length, 0));
      let at = 0;
      for (const p of this.parts) {
        bytes.set(p, at);
        at += p.length;
      }
      this.parts = [];
      post({ pcpdDataplane: true, shard, bytes }, [bytes.buffer]);
    }, batchMs);
    this.timer.unref();
  }

  push(parts: Uint8Array[]): void {
    this.parts.push(...parts);
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
