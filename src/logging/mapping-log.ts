// The mapping log (docs/logging.md): the shards' event messages → log records → the
// configured sinks (syslog, IPFIX). Runs on the main thread: the packet threads only copy
// event bytes, as they do for the control channel. The shards stream events while the log
// runs (setEvents(true, "logging")).
import type { Logger } from "pino";
import type { Config } from "../config/schema.js";
import * as W from "../wire.generated.js";
import type { EventsMessage } from "../shard/tasks.js";
import { IpfixSink } from "./ipfix.js";
import { logged, loggedKinds, logRecordAt, type RecordMode } from "./record.js";
import type { DatagramOpener, Sink, SinkCounters } from "./sink.js";
import { SyslogSink } from "./syslog.js";

/** What the log needs of the running server. */
export interface EventSource {
  onEvents(listener: (m: EventsMessage) => void): void;
  setEvents(on: boolean, who?: string, kinds?: number): Promise<void>;
}

export type LogStats = Record<string, SinkCounters>;

export class MappingLog {
  private readonly sinks: { sink: Sink; mode: RecordMode }[] = [];
  private readonly poolNames: string[][] = [];
  private timer?: NodeJS.Timeout;
  private running = false;
  /** EVENT_* kinds some sink logs (a bit each). */
  private readonly wanted: number;

  constructor(
    c: Config["logging"],
    private readonly source: EventSource,
    private readonly log?: Logger,
    /** UDP sends without a callback per datagram (the I/O addon, when loaded): src/server/log-datagrams.ts. */
    datagrams?: DatagramOpener,
  ) {
    if (c.syslog.enabled) this.sinks.push({ sink: new SyslogSink(c.syslog, datagrams), mode: c.syslog.records });
    if (c.ipfix.enabled) this.sinks.push({ sink: new IpfixSink(c.ipfix, datagrams), mode: c.ipfix.records });
    this.wanted = loggedKinds(c);
    source.onEvents((m) => this.ingest(m));
    if (this.sinks.length > 0) {
      this.running = true; // the shards stream from their first request (src/shard/shard.ts)
      this.timer = setInterval(() => this.flush(), c.flushMs);
      this.timer.unref();
    }
  }

  /** Whether any sink is configured. */
  get enabled(): boolean {
    return this.sinks.length > 0;
  }

  async start(): Promise<void> {
    if (!this.enabled) return;
    await this.source.setEvents(true, "logging", this.wanted);
    this.log?.info({ sinks: this.sinks.map((s) => `${s.sink.name} (${s.mode})`) }, "mapping log on");
  }

  private ingest(m: EventsMessage): void {
    if (m.events.pool) this.poolNames[m.shard] = m.events.pool;
    if (!this.running) return;
    const time = Date.now();
    const { bytes, thirdPartyIds } = m.events;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const pool = this.poolNames[m.shard] ?? [];
    const name = (i: number) => pool[i] ?? `pool#${i}`;
    // Only the records some sink logs are decoded (refreshes, the bulk under load, are not).
    for (let i = 0, at = 0; at + W.EVENT_SIZE <= bytes.length; i++, at += W.EVENT_SIZE) {
      const kind = view.getUint8(at + W.EV_KIND);
      if (((this.wanted >>> kind) & 1) === 0) continue;
      const record = logRecordAt(view, bytes, at, name, time, thirdPartyIds?.[i]);
      for (const { sink, mode } of this.sinks) if (logged(mode, record.event)) sink.push(record);
    }
  }

  private flush(): void {
    for (const { sink } of this.sinks) sink.flush();
  }

  stats(): LogStats {
    return Object.fromEntries(this.sinks.map(({ sink }) => [sink.name, sink.stats()]));
  }

  /** Sends what is queued (as far as the collectors take it) and closes the sinks. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    if (this.running) await this.source.setEvents(false, "logging").catch(() => undefined);
    this.running = false;
    await Promise.all(this.sinks.map(({ sink }) => sink.close()));
  }
}
