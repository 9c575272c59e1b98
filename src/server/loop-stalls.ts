// The main thread's event-loop stalls, measured for the operator. systemd's watchdog
// (packaging/pcp-server.service, WatchdogSec=30) is fed WATCHDOG=1 from this thread
// every half interval (src/cli/sd-notify.ts): a step that blocks the loop for longer than
// half the interval can therefore get a healthy server killed and restarted (an outage,
// and an Epoch reset for every subscriber). The shards run on their own threads; what
// blocks here is the main thread's share of an operation (control commands, metrics,
// reload, the dataplane manager, HA coordination).
//
// A timer ticks every TICK_MS; how late a tick fires is how long the loop was blocked
// (within one tick). The worst delay since the last scrape is exported
// (pcpd_event_loop_delay_max_seconds), and a stall of at least warnFraction × the
// watchdog interval is logged as a warning and counted (pcpd_event_loop_stalls_total)
// once the loop runs again. The interval is WATCHDOG_USEC when systemd sets it for this
// process (sd_watchdog_enabled(3)), else the configured watchdog.intervalSeconds.
import { close, openSync, readSync } from "node:fs";
import { performance } from "node:perf_hooks";
import type { Logger } from "pino";

/** Tick of the stall timer: a stall is measured to within this (and costs ~20 callbacks/s). */
export const TICK_MS = 50;

/** USER_HZ: the unit of /proc's CPU times (100 on every Linux architecture Node runs on). */
const CLOCK_TICKS_PER_S = 100;

/** /proc/thread-self/stat of the thread that first read it, kept open (null: not readable here). */
let statFd: number | null | undefined;
const statBuffer = Buffer.alloc(1024);

/**
 * CPU time this thread has used, ms (Linux: /proc/thread-self/stat, 10 ms steps), or
 * undefined elsewhere. Told apart from a stall's length it says whether the thread was
 * working (its own step blocked the loop) or waiting for a CPU or the kernel (an
 * overloaded machine) — process.cpuUsage() counts every thread of the process. The file
 * stays open: a read at offset 0 costs ~5 µs, an open, read and close ~60 µs (20 ticks/s).
 */
export function threadCpuMs(): number | undefined {
  if (statFd === null) return undefined;
  try {
    statFd ??= openSync("/proc/thread-self/stat", "r");
    const stat = statBuffer.toString("latin1", 0, readSync(statFd, statBuffer, 0, statBuffer.length, 0));
    // After the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(f[11]) + Number(f[12])) * 1000) / CLOCK_TICKS_PER_S;
  } catch {
    if (typeof statFd === "number") close(statFd, () => undefined); // opened, then unreadable
    statFd = null;
    return undefined;
  }
}

export interface LoopStallSettings {
  /** Fraction of the watchdog interval from which a stall is logged. */
  stallWarnFraction: number;
  /** The watchdog interval when systemd does not say (WATCHDOG_USEC unset or for another process). */
  intervalSeconds: number;
}

/** The watchdog interval in ms: systemd's WATCHDOG_USEC for this process, else `fallbackSeconds`. */
export function watchdogMs(env: NodeJS.ProcessEnv, fallbackSeconds: number, pid = process.pid): { ms: number; from: "systemd" | "configuration" } {
  const usec = Number(env.WATCHDOG_USEC);
  const ours = !env.WATCHDOG_PID || Number(env.WATCHDOG_PID) === pid;
  return usec > 0 && ours ? { ms: usec / 1000, from: "systemd" } : { ms: fallbackSeconds * 1000, from: "configuration" };
}

export interface LoopStallReading {
  /** The longest delay since the previous reading, seconds (the ongoing one included). */
  maxDelaySeconds: number;
  /** Stalls at or over the warning threshold since start. */
  stalls: number;
  /** The warning threshold, seconds. */
  warnSeconds: number;
}

export class LoopStalls {
  private readonly timer: NodeJS.Timeout;
  private last = performance.now();
  /** Ticks so far (a stall is measured when the tick after it runs). */
  ticks = 0;
  private lastCpu = threadCpuMs();
  private maxMs = 0;
  private stalls = 0;
  readonly warnMs: number;
  private readonly watchdog: { ms: number; from: string };

  constructor(
    settings: LoopStallSettings,
    private readonly log: Logger,
    env: NodeJS.ProcessEnv = process.env,
  ) {
    const watchdog = watchdogMs(env, settings.intervalSeconds);
    this.warnMs = watchdog.ms * settings.stallWarnFraction;
    this.timer = setInterval(() => this.tick(), TICK_MS);
    this.timer.unref(); // never what keeps the process alive
    this.watchdog = watchdog;
  }

  private tick(): void {
    this.ticks++;
    const now = performance.now();
    const delay = Math.max(0, now - this.last - TICK_MS);
    const cpu = this.lastCpu === undefined ? undefined : threadCpuMs();
    const cpuMs = cpu === undefined || this.lastCpu === undefined ? undefined : Math.round(cpu - this.lastCpu);
    this.last = now;
    this.lastCpu = cpu;
    if (delay > this.maxMs) this.maxMs = delay;
    if (delay >= this.warnMs) {
      this.stalls++;
      this.log.warn(
        // cpuMs: this thread's CPU time over the stall; far below stallMs, it waited for a CPU.
        { stallMs: Math.round(delay), cpuMs, warnMs: Math.round(this.warnMs), watchdogMs: Math.round(this.watchdog.ms), watchdogFrom: this.watchdog.from },
        "main thread event loop blocked: systemd's watchdog (WATCHDOG=1 every half interval) kills the server if one lasts half its interval",
      );
    }
  }

  /** The worst delay since the previous read (then reset), and the stall count. */
  read(): LoopStallReading {
    const ongoing = Math.max(0, performance.now() - this.last - TICK_MS);
    const max = Math.max(this.maxMs, ongoing);
    this.maxMs = 0;
    return { maxDelaySeconds: max / 1000, stalls: this.stalls, warnSeconds: this.warnMs / 1000 };
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
