// Unsolicited messages repeated on a schedule (gratuitous ANNOUNCE, Mapping Update). The
// RFC's gaps are properties of the datagrams on the wire [RFC 6887 §14.1.3, §14.2]: the
// first at least 250 ms, each later one at least double the previous. So each gap is
// counted from when the previous copy actually left — the socket's send callback, after the
// kernel took the datagram — and checked on a monotonic clock when the timer fires: Node's
// timers count from the event loop's cached time, which can be older than the send (a long
// synchronous task before it, such as a shard starting or re-homing), and a datagram
// handed to a socket leaves only once the current task ends. A timer started at the send
// call alone put the first gap on the wire at 238–247 ms.

/**
 * One round of copies. `sent` is to be called once per datagram handed to a socket, from
 * its send callback (error or not); the return value is how many were handed over.
 */
export type SendRound = (sent: () => void) => number;

/**
 * Sends a round now and another after each of `gapsMs`; `done` once the last round left.
 * Each round is handed over no sooner than its gap after the previous round's last datagram
 * left, and no sooner than the ratio of the nominal gaps (2 for a doubling schedule) times
 * the previous gap as long as it may have been on the wire (from when that round was
 * handed over to when this one left), so a late copy never makes the next gap less than
 * double. Returns a cancel function. `now` is a monotonic clock in ms (tests substitute one).
 */
export function sendRepeatedly(gapsMs: readonly number[], send: SendRound, done?: () => void, now: () => number = () => performance.now()): () => void {
  let timer: NodeJS.Timeout | undefined;
  let cancelled = false;
  let k = 0; // rounds sent so far, less one
  let handedAt = 0; // when the current round was handed over
  let previousHandedAt = 0;
  let due = 0; // the next round is not handed over before this
  const wait = () => {
    timer = undefined;
    if (cancelled) return;
    const remaining = due - now();
    if (remaining > 0) {
      // Whole ms, rounded up; a timer that still fires early waits out the rest.
      timer = setTimeout(wait, Math.ceil(remaining));
      timer.unref();
      return;
    }
    k++;
    round();
  };
  const left = () => {
    if (cancelled) return;
    if (k >= gapsMs.length) {
      done?.();
      return;
    }
    const at = now();
    const previousGap = k > 0 && gapsMs[k - 1] > 0 ? ((at - previousHandedAt) * gapsMs[k]) / gapsMs[k - 1] : 0;
    due = at + Math.max(gapsMs[k], previousGap);
    wait();
  };
  const round = () => {
    previousHandedAt = handedAt;
    handedAt = now();
    let outstanding = 0;
    let handed = -1; // unknown until send returns
    const sent = () => {
      if (++outstanding === handed) left();
    };
    handed = send(sent);
    if (outstanding >= handed) left();
  };
  round();
  return () => {
    cancelled = true;
    clearTimeout(timer);
  };
}
