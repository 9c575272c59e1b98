// Event-loop turns (setImmediate callbacks run) while `work` runs: 0 or 1 when it held the
// loop in one block, more when it yielded. Tests of main-thread work that must not block
// the thread feeding systemd's watchdog assert on this, never on how long the work took.
export async function turnsDuring(work: () => Promise<unknown>): Promise<number> {
  let turns = 0;
  let on = true;
  const spin = () => {
    if (!on) return;
    turns++;
    setImmediate(spin);
  };
  setImmediate(spin);
  try {
    await work();
  } finally {
    on = false;
  }
  return turns;
}
