// A live event subscriber in a process of its own, for bench/control.bench.ts case (c): so
// that it runs at nice 10 — standing for a dashboard or a `pcpctl events` on another
// machine — without lowering the priority of the load generator the bench spawns (a child
// inherits its parent's nice value). Connects with the token and, by its third argument:
//   full       subscribes to every event (events.subscribe {}), as `pcpctl events` does;
//   dashboard  does what the dashboard's page (dashboard/dashboard.js) does: a sampled
//              subscription (latest 200 events per second) and, every second, stats.get,
//              server.health and ha.status.
// Every frame is JSON-parsed. Answers "counts" messages from the parent over IPC; "stop"
// closes and exits.
// Usage (by the bench): node --import tsx bench/control-subscriber.ts <url> <token> [full|dashboard]
import WebSocket from "ws";

const [url, token, mode = "full"] = process.argv.slice(2);
/** As dashboard/dashboard.js: POLL_MS and EVENTS_SHOWN. */
const POLL_MS = 1000;
const EVENTS_SHOWN = 200;
const counts = { delivered: 0, total: 0, dropped: 0, droppedNotices: 0, frames: 0, bytes: 0, malformed: 0, polls: 0, pollErrors: 0 };
let last = performance.now();
let nextId = 2;
const ws = new WebSocket(url, { headers: { Authorization: `Bearer ${token}` }, perMessageDeflate: false });
ws.on("message", (data: Buffer) => {
  last = performance.now();
  const m = JSON.parse(data.toString("utf8"));
  if (m.id === 1) process.send!({ reply: m });
  else if (m.id !== undefined) {
    if (m.error && m.error.code !== -32006)
      counts.pollErrors++; // -32006: ha.status without HA, as the page expects
    else counts.polls++;
  } else if (m.method === "events.mappings" && Array.isArray(m.params?.events)) {
    counts.frames++;
    counts.bytes += data.length;
    counts.total += m.params.total ?? m.params.events.length;
    for (const e of m.params.events) {
      counts.delivered++;
      if (typeof e.shard !== "number" || typeof e.mapping?.internalPort !== "number") counts.malformed++;
    }
  } else if (m.method === "events.dropped") {
    counts.dropped += m.params.dropped;
    counts.droppedNotices++;
  } else counts.malformed++;
});
const call = (method: string, params: unknown = {}) => ws.send(JSON.stringify({ jsonrpc: "2.0", id: nextId++, method, params }));
ws.on("open", () => {
  const params = mode === "dashboard" ? { filter: {}, latest: { count: EVENTS_SHOWN, intervalMs: POLL_MS } } : {};
  ws.send(JSON.stringify({ jsonrpc: "2.0", id: 1, method: "events.subscribe", params }));
  if (mode === "dashboard")
    setInterval(() => {
      call("stats.get");
      call("server.health");
      call("ha.status");
    }, POLL_MS);
});
ws.on("error", (e) => {
  console.error(`subscriber: ${e.message}`);
  process.exit(1);
});
process.on("message", (m) => {
  if (m === "counts") process.send!({ counts: { ...counts, quietMs: performance.now() - last } });
  else if (m === "stop") {
    ws.close(1000);
    ws.once("close", () => process.exit(0));
  }
});
