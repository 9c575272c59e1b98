// Unsolicited messages repeated on a schedule (gratuitous ANNOUNCE, Mapping Update): the
// first copy at once, each later one a gap after the previous send (+1 ms for timer
// granularity), so a late timer never shortens the next gap below the RFC's minimum.

/** Calls `send` now and after each of `gapsMs`; `done` after the last. Returns a cancel function. */
export function sendRepeatedly(gapsMs: readonly number[], send: () => void, done?: () => void): () => void {
  let timer: NodeJS.Timeout | undefined;
  let k = 0;
  const next = () => {
    send();
    if (k >= gapsMs.length) {
      timer = undefined;
      done?.();
      return;
    }
    timer = setTimeout(next, gapsMs[k++] + 1);
    timer.unref();
  };
  next();
  return () => clearTimeout(timer);
}
