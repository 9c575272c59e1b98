// The HA tests' PCP client, test side: starts the client process (./ha-client-main.ts) in
// the client namespace and drives it with JSON lines — load (mapping creation with many
// requests outstanding), refreshes, NAT-PMP — so a scenario sends thousands of requests
// without a process each. Every reply comes back with the client's receive time
// (CLOCK_MONOTONIC ms, the clock the test reads too: monoMs) and the verdict of the RFC 6887
// §8.5 Epoch check the client runs per server; a reset it detects is reported and the
// client re-creates that server's mappings, as a real client would.
import { spawn, type ChildProcess } from "node:child_process";

const MAIN = new URL("./ha-client-main.ts", import.meta.url).pathname;
const ROOT = new URL("../..", import.meta.url).pathname;

/**
 * RFC 6887 §8.5 (PCP) and RFC 6886 §3.6 (NAT-PMP): whether a server's Epoch is consistent
 * with the previous reply from the same server, given the client's own clock. The previous
 * values are replaced after every reply, as the RFC says.
 */
export class EpochTracker {
  private readonly last = new Map<string, { epoch: number; at: number }>();

  /** `at`: the client's time of reception, ms. */
  check(server: string, epoch: number, at: number, natPmp = false): { valid: boolean; serverDelta: number; clientDelta: number } {
    const prev = this.last.get(server);
    this.last.set(server, { epoch, at });
    if (!prev) return { valid: true, serverDelta: 0, clientDelta: 0 };
    const serverDelta = epoch - prev.epoch;
    const clientDelta = (at - prev.at) / 1000;
    if (natPmp) {
      // §3.6: the SSSoE may not fall more than 2 s behind 7/8 of the client's elapsed time.
      return { valid: epoch + 2 >= prev.epoch + (clientDelta * 7) / 8, serverDelta, clientDelta };
    }
    // §8.5: backwards by more than a second is invalid; else both deltas must agree within 2 s + 1/16.
    const valid = serverDelta >= -1 && !(clientDelta + 2 < serverDelta - serverDelta / 16) && !(serverDelta + 2 < clientDelta - clientDelta / 16);
    return { valid, serverDelta, clientDelta };
  }
}

/** A MAP acknowledged (RESULT_SUCCESS), or a refresh's answer. */
export interface Ack {
  /** The mapping (its key: mappingKey(i) of ./mapping-load.ts, its nonce: haNonce(i)). */
  i: number;
  port: number;
  address: string;
  epoch: number;
  /** Client receive time, CLOCK_MONOTONIC ms. */
  at: number;
  /** The service address that answered. */
  server: string;
  epochOk: boolean;
  /** Transmissions of the request until this answer (1: no retransmission). */
  tries: number;
  /** The reply echoed CHECKPOINT_REQUIRED: the server check-pointed the mapping (RFC 7767 §3). */
  checkpointed: boolean;
}

/** Mapping i's nonce: "ph", i (u32), zeros — unique per mapping, the same for its refreshes (RFC 6887 §11.2). */
export function haNonce(i: number): number[] {
  return [0x70, 0x68, (i >>> 24) & 255, (i >>> 16) & 255, (i >>> 8) & 255, i & 255, 0, 0, 0, 0, 0, 0];
}

export interface ClientEvent {
  ev: string;
  id?: string;
  [k: string]: any;
}

export interface LoadOptions {
  to: string;
  from: number;
  /** Requests outstanding (default 32). */
  outstanding?: number;
  /** Send CHECKPOINT_REQUIRED (RFC 7767) with every request. */
  checkpoint?: boolean;
  /** Retransmission timeout, ms (default 300), and tries before a request counts as lost (default 40). */
  rtoMs?: number;
  tries?: number;
}

export interface Load {
  id: string;
  acks: Map<number, Ack>;
  failures: ClientEvent[];
  /** Stops sending new requests (replies still arriving are counted). */
  stop(): Promise<void>;
}

/** The client process in its namespace. */
export class HaClient {
  readonly events: ClientEvent[] = [];
  private readonly listeners = new Set<(e: ClientEvent) => void>();
  private seq = 0;
  private stderr = "";

  private constructor(private readonly child: ChildProcess) {
    let buffered = "";
    child.stdout!.on("data", (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split("\n");
      buffered = lines.pop()!;
      for (const line of lines) {
        if (!line.startsWith("{")) continue;
        const e = JSON.parse(line) as ClientEvent;
        this.events.push(e);
        for (const l of this.listeners) l(e);
      }
    });
    child.stderr!.on("data", (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-5000);
    });
  }

  /** Starts the client inside `ns`, its sockets bound to `address`. */
  static async start(ns: string, address: string): Promise<HaClient> {
    const child = spawn("ip", ["netns", "exec", ns, process.execPath, "--import", "tsx", MAIN, address], { cwd: ROOT, stdio: ["pipe", "pipe", "pipe"] });
    const c = new HaClient(child);
    await c.event((e) => e.ev === "ready", { timeoutMs: 20_000, message: () => `ha client not ready: ${c.stderr}` });
    return c;
  }

  private send(cmd: Record<string, unknown>): void {
    this.child.stdin!.write(`${JSON.stringify(cmd)}\n`);
  }

  on(listener: (e: ClientEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * The first event matching `match` from index `from` of events on (default: the next to
   * arrive); rejects after `timeoutMs`. Told by the listener, not a poll that scans the log
   * every few ms (by the last tests it holds hundreds of thousands of replies).
   */
  event(match: (e: ClientEvent) => boolean, o: { from?: number; timeoutMs: number; message?: () => string }): Promise<ClientEvent> {
    for (let k = o.from ?? this.events.length; k < this.events.length; k++) if (match(this.events[k])) return Promise.resolve(this.events[k]);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new Error(`ha client: no such event within ${o.timeoutMs} ms${o.message ? `: ${o.message()}` : ""}`));
      }, o.timeoutMs);
      const off = this.on((e) => {
        if (!match(e)) return;
        clearTimeout(timer);
        off();
        resolve(e);
      });
    });
  }

  /** Mapping creation i = from, from + 1, … until stopped. */
  load(o: LoadOptions): Load {
    const id = `load-${++this.seq}`;
    const acks = new Map<number, Ack>();
    const failures: ClientEvent[] = [];
    const off = this.on((e) => {
      if (e.id !== id) return;
      if (e.ev === "ack") acks.set(e.i, e as unknown as Ack);
      else if (e.ev === "fail" || e.ev === "lost" || e.ev === "error") failures.push(e);
    });
    this.send({ cmd: "load", id, outstanding: 32, rtoMs: 300, tries: 40, checkpoint: false, ...o });
    return {
      id,
      acks,
      failures,
      stop: async () => {
        this.send({ cmd: "stop", id });
        await this.event((e) => e.ev === "stopped" && e.id === id, { timeoutMs: 10_000 });
        // Keep counting replies to requests still outstanding for a moment; they are real acknowledgements.
        setTimeout(off, 5000).unref();
      },
    };
  }

  /**
   * Asks again for each mapping (same nonce, its external address and port suggested): the
   * answers, and the mappings that got none within the tries.
   */
  async refresh(to: string, items: { i: number; port: number; address: string }[], o: { checkpoint?: boolean; timeoutMs?: number } = {}) {
    const id = `refresh-${++this.seq}`;
    const acks = new Map<number, Ack>();
    const other: ClientEvent[] = [];
    const off = this.on((e) => {
      if (e.id !== id) return;
      if (e.ev === "ack") acks.set(e.i, e as unknown as Ack);
      else if (e.ev === "fail" || e.ev === "lost" || e.ev === "error") other.push(e);
    });
    this.send({ cmd: "refresh", id, to, items, outstanding: 64, rtoMs: 300, tries: 20, checkpoint: o.checkpoint ?? false });
    try {
      await this.event((e) => e.ev === "done" && e.id === id, {
        timeoutMs: o.timeoutMs ?? 60_000,
        message: () => `refresh of ${items.length} mappings at ${to}: ${acks.size} answered, ${other.length} refused, lost or given up`,
      });
    } finally {
      off();
    }
    return { acks, other };
  }

  /** One NAT-PMP request (RFC 6886): op 0 (external address), 1 (UDP map) or 2 (TCP map). */
  async natPmp(to: string, op: number, internalPort = 0, suggestedPort = 0, lifetime = 3600): Promise<ClientEvent> {
    const id = `pmp-${++this.seq}`;
    const answer = this.event((e) => e.id === id && (e.ev === "natpmp" || e.ev === "lost"), { timeoutMs: 15_000 });
    this.send({ cmd: "natpmp", id, to, op, internalPort, suggestedPort, lifetime, rtoMs: 300, tries: 20 });
    return answer;
  }

  /** Epoch resets the client detected (and reacted to) since index `from` of events. */
  resets(from = 0): ClientEvent[] {
    return this.events.slice(from).filter((e) => e.ev === "epoch-reset");
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.child.once("exit", resolve));
    this.child.kill("SIGKILL");
    await exited;
  }
}
