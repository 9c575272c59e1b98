// A live event subscriber in a process of its own, for bench/control.bench.ts case (c): so
// that it runs at nice 10 — standing for a dashboard on another machine — without lowering
// the priority of the load generator the bench spawns (a child inherits its parent's nice
// value). Connects with the token, subscribes to every event, JSON-parses every frame and
// answers "counts" messages from the parent over IPC; "stop" closes and exits.
// Usage (by the bench): node --import tsx bench/control-subscriber.ts <url> <token>
import WebSocket from "ws";

const [url, token] = process.argv.slice(2);
const counts = { delivered: 0, dropped: 0, droppedNotices: 0, frames: 0, bytes: 0, malformed: 0 };
let last = performance.now();
const ws = new WebSocket(url, { headers: { Authorization: `Bearer ${token}` }, perMessageDeflate: false });
ws.on("message", (data: Buffer) => {
  last = performance.now();
  const m = JSON.parse(data.toString("utf8"));
  if (m.id !== undefined) process.send!({ reply: m });
  else if (m.method === "events.mappings" && Array.isArray(m.params?.events)) {
    counts.frames++;
    counts.bytes += data.length;
    for (const e of m.params.events) {
      counts.delivered++;
      if (typeof e.shard !== "number" || typeof e.mapping?.internalPort !== "number") counts.malformed++;
    }
  } else if (m.method === "events.dropped") {
    counts.dropped += m.params.dropped;
    counts.droppedNotices++;
  } else counts.malformed++;
});
ws.on("open", () => ws.send(JSON.stringify({ jsonrpc: "2.0", id: 1, method: "events.subscribe", params: {} })));
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
