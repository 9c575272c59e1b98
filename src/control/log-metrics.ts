// The mapping log's series (src/logging/, docs/logging.md): per sink, records sent, dropped
// and transport errors as counters (fed with the increase since the last scrape), records
// queued as a gauge. They appear once a sink is configured.
import { Counter, Gauge, type Registry } from "prom-client";
import type { LogStats } from "../logging/mapping-log.js";

export class LogMetrics {
  private readonly counters: [key: "sent" | "dropped" | "errors", counter: Counter<string>][];
  private readonly queued: Gauge<string>;
  private readonly last = new Map<string, number>();

  constructor(registry: Registry) {
    const registers = [registry];
    const counter = (name: string, help: string) => new Counter({ name, help, labelNames: ["sink"], registers });
    this.counters = [
      ["sent", counter("pcpd_log_sent_total", "Mapping log records handed to the collector's socket, per sink.")],
      ["dropped", counter("pcpd_log_dropped_total", "Mapping log records lost (queue full: collector slow or unreachable; or a failed send), per sink.")],
      ["errors", counter("pcpd_log_errors_total", "Mapping log transport errors (failed sends, refused or broken connections), per sink.")],
    ];
    this.queued = new Gauge({ name: "pcpd_log_queued", help: "Mapping log records waiting to be sent, per sink.", labelNames: ["sink"], registers });
  }

  update(stats: LogStats): void {
    for (const [sink, s] of Object.entries(stats)) {
      for (const [key, counter] of this.counters) {
        const id = `${sink}/${key}`;
        counter.inc({ sink }, s[key] - (this.last.get(id) ?? 0));
        this.last.set(id, s[key]);
      }
      this.queued.set({ sink }, s.queued);
    }
  }
}
