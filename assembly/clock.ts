// Engine time (seconds) of the current entry call. Every verb that reads or writes times
// takes the time as an argument (serveRange, expire, poolRetire, rehomeNext,
// restoreRecords) and sets it here once, before anything else; everything below reads it.
// One batch context instead of a `now` parameter on some forty functions: the value never
// changes within a call, and passing it down would cost a register on every hot-path call
// for nothing. Nothing else writes it.

export let now: u32 = 0;

@inline export function setNow(at: u32): void {
  now = at;
}
