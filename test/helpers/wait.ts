// Readiness signals for tests, instead of fixed sleeps: poll a condition until a deadline,
// or wait for a line on a stream. Both fail with what was last seen, so a timeout says why.
import type { Readable } from "node:stream";

export interface WaitOptions {
  /** Give up after this many ms (default 10 s: generous for a loaded CI machine). */
  timeout?: number;
  /** Poll every this many ms (default 10). */
  interval?: number;
  /** Describes the last state in the timeout error. */
  message?: () => string;
}

/** Resolves with the predicate's first truthy value; rejects after the deadline. */
export async function waitFor<T>(predicate: () => T | Promise<T>, options: WaitOptions = {}): Promise<NonNullable<T>> {
  const { timeout = 10_000, interval = 10 } = options;
  const deadline = performance.now() + timeout;
  for (;;) {
    const value = await predicate();
    if (value) return value as NonNullable<T>;
    if (performance.now() > deadline) throw new Error(`waitFor: timed out after ${timeout} ms${options.message ? `: ${options.message()}` : ""}`);
    await new Promise((resolve) => setTimeout(resolve, interval));
  }
}

/**
 * Resolves with the first line of `stream` from now on matching `pattern`; rejects after
 * the deadline or when the stream ends without one.
 */
export function waitForLine(stream: Readable, pattern: RegExp, options: WaitOptions = {}): Promise<RegExpMatchArray> {
  const { timeout = 10_000 } = options;
  return new Promise((resolve, reject) => {
    let buffered = "";
    const finish = (error?: Error, match?: RegExpMatchArray) => {
      clearTimeout(timer);
      stream.off("data", onData);
      stream.off("end", onEnd);
      if (error) reject(error);
      else resolve(match!);
    };
    const onData = (chunk: Buffer | string) => {
      buffered += chunk.toString();
      const lines = buffered.split("\n");
      buffered = lines.pop()!;
      for (const line of lines) {
        const m = line.match(pattern);
        if (m) return finish(undefined, m);
      }
    };
    const onEnd = () => finish(new Error(`waitForLine: stream ended without a line matching ${pattern}`));
    const timer = setTimeout(
      () => finish(new Error(`waitForLine: no line matching ${pattern} within ${timeout} ms${options.message ? `: ${options.message()}` : ""}`)),
      timeout,
    );
    stream.on("data", onData);
    stream.on("end", onEnd);
  });
}

/** `promise`, or a rejection naming `what` (evaluated then) after `timeout` ms. */
export function withTimeout<T>(promise: Promise<T>, timeout: number, what: string | (() => string)): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${typeof what === "string" ? what : what()}: not within ${timeout} ms`)), timeout);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}
