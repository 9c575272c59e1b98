// The server's pino loggers (main thread and shard workers alike): JSON lines for
// collectors, or human-readable lines (pino-pretty) for a terminal.
import { pino, type Logger } from "pino";
import { PinoPretty } from "pino-pretty";

export type LogFormat = "pretty" | "json";

/** `auto`: pretty when stdout is a terminal, else JSON. */
export function resolveLogFormat(format: "auto" | LogFormat, isTty = process.stdout.isTTY === true): LogFormat {
  return format === "auto" ? (isTty ? "pretty" : "json") : format;
}

/** A logger in `format` ("auto" as resolveLogFormat decides in this thread). */
export function createLogger(level: string, format: "auto" | LogFormat, base: Record<string, unknown>): Logger {
  const options = { level, base };
  if (resolveLogFormat(format) === "json") return pino(options);
  // Synchronous: lines keep their order with other output, and the last ones are written
  // before the process exits. Colours only on a terminal.
  return pino(options, PinoPretty({ colorize: process.stdout.isTTY === true, sync: true, translateTime: "SYS:standard", ignore: "pid,hostname,service" }));
}
