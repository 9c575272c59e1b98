// The mapping log (docs/logging.md): the shards' event messages → log records → the
// configured sinks (syslog, IPFIX). Runs on the main thread: the packet threads only copy
// event bytes, as they do for the control channel. The shards stream events while the log
// runs (setEvents(true, "logging")).
import type { Logger } from "pino";
import type { Config } from "../config/schema.js";
import { decodeRecords } from "../engine/records.js";
import type { EventsMessage } from "../shard/tasks.js";
import { IpfixSink } from "./ipfix.js";
import { logged, toLogRecord, type RecordMode } from "./record.js";
import type { Sink, SinkCounters } from "./sink.js";
import { SyslogSink } from "./syslog.js";

/** What the log needs of the running server. */
export interface EventSource {
  onEvents(listener: (m: EventsMessage) => void): void;
  setEvents(on: boolean, who?: string): Promise<void>;
}

export type LogStats = Record<string, SinkCounters>;

export class MappingLog {
  private readonly sinks: { sink: Sink; mode: RecordMode }[] = [];
  private readonly poolNames: string[][] = [];
  private timer?: NodeJS.Timeout;
  private running = false;

  constructor(
    c: Config["logging"],
    private readonly source: EventSource,
    private readonly log?: Logger,
  ) {
    if (c.syslog.enabled) this.sinks.push({ sink: new SyslogSink(c.syslog), mode: c.syslog.records });
    if (c.ipfix.enabled) this.sinks.push({ sink: new IpfixSink(c.ipfix), mode: c.ipfix.records });
    source.onEvents((m) => this.ingest(m));
    if (this.sinks.length > 0) {
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
    this.running = true;
    await this.source.setEvents(true, "logging");
    this.log?.info({ sinks: this.sinks.map((s) => `${s.sink.name} (${s.mode})`) }, "mapping log on");
  }

  private ingest(m: EventsMessage): void {
    if (m.events.pool) this.poolNames[m.shard] = m.events.pool;
    if (!this.running) return;
    const time = Date.now();
    const events = decodeRecords(m.events, this.poolNames[m.shard]);
    for (let i = 0; i < events.length; i++) {
      const e = events[i];
      let record;
      for (const { sink, mode } of this.sinks) {
        if (!logged(mode, e.kind)) continue;
        record ??= toLogRecord(e, time, m.events.thirdPartyIds?.[i]);
        sink.push(record);
      }
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
