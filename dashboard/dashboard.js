// The pcpd dashboard: a client of the control channel (pcpd-control/2, README "The
// control channel") in plain browser JavaScript. It polls stats.get, server.health and
// ha.status, subscribes to a sample of the live mapping events (events.subscribe with
// `latest`: once a second the newest EVENTS_SHOWN events and the interval's total, pulled
// from the shards' event rings, so an open dashboard costs the packet path next to
// nothing however fast mappings change) and looks mappings up with mappings.get / mappings.list. A browser cannot set an
// Authorization header on a WebSocket, so the token travels as the subprotocol
// "pcpd-bearer.<token, base64url>" next to "pcpd-control" (the server answers the latter
// only). The token comes from the form, or from the URL fragment (#token=…), which is then
// removed from the address bar; it is kept in memory only.
const POLL_MS = 1000;
const EVENTS_SHOWN = 200;
const COUNT_PAGES = 20; // mappings counted per pool address: at most 20 pages of 1000
const $ = (id) => document.getElementById(id);

let socket;
let nextId = 1;
const pending = new Map();
let pollTimer;
let previous; // the last stats.get and when it came: rates between polls
let eventsSeen = 0;
const events = []; // newest first, at most EVENTS_SHOWN
let poolCounts = new Map();

const fmt = (n) => (typeof n === "number" ? n.toLocaleString("en") : String(n ?? "–"));
const base64url = (text) =>
  btoa(String.fromCharCode(...new TextEncoder().encode(text)))
    .replace(/\+/g, "-")
    .replace(/\//g, "_")
    .replace(/=+$/, "");
const PROTOCOLS = { 6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6" };

function setStatus(text, good) {
  const s = $("status");
  s.textContent = text;
  s.className = `state ${good ? "good" : "bad"}`;
}

/** Replaces a table body's rows; each row an array of cell texts. */
function rows(table, list) {
  const body = $(table).tBodies[0];
  body.replaceChildren(
    ...list.map((cells) => {
      const tr = document.createElement("tr");
      for (const c of cells) {
        const td = document.createElement("td");
        td.textContent = c;
        tr.append(td);
      }
      return tr;
    }),
  );
}

function call(method, params = {}) {
  return new Promise((resolve, reject) => {
    if (!socket || socket.readyState !== WebSocket.OPEN) return reject(new Error("not connected"));
    const id = nextId++;
    pending.set(id, { resolve, reject });
    socket.send(JSON.stringify({ jsonrpc: "2.0", id, method, params }));
  });
}

function connect(token) {
  if (socket) socket.close(1000);
  clearInterval(pollTimer);
  const url = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/control`;
  const protocols = token ? ["pcpd-control", `pcpd-bearer.${base64url(token)}`] : ["pcpd-control"];
  const ws = new WebSocket(url, protocols);
  socket = ws;
  let opened = false;
  setStatus("connecting…", false);
  ws.onopen = async () => {
    opened = true;
    try {
      const info = await call("server.info");
      $("server").textContent = `${info.node} · ${info.version} · ${info.protocol} · ${info.workers} worker(s) · role ${info.role}`;
      setStatus(`connected (${info.role})`, true);
      await call("events.subscribe", { filter: {}, latest: { count: EVENTS_SHOWN, intervalMs: POLL_MS } });
      await poll();
      pollTimer = setInterval(poll, POLL_MS);
    } catch (e) {
      setStatus(`error: ${e.message}`, false);
    }
  };
  ws.onmessage = (m) => onMessage(JSON.parse(m.data));
  ws.onclose = (e) => {
    if (socket !== ws) return;
    clearInterval(pollTimer);
    for (const p of pending.values()) p.reject(new Error("connection closed"));
    pending.clear();
    // The upgrade's 401 is not visible to a page: a connection that never opened was refused.
    setStatus(opened ? `disconnected (${e.code}${e.reason ? ` ${e.reason}` : ""})` : "refused: a valid token is required", false);
  };
}

function onMessage(m) {
  if (m.id !== undefined && m.id !== null) {
    const p = pending.get(m.id);
    if (!p) return;
    pending.delete(m.id);
    if (m.error) p.reject(Object.assign(new Error(m.error.message), { code: m.error.code }));
    else p.resolve(m.result);
  } else if (m.method === "events.mappings") {
    for (const e of m.params.events) addEvent(e);
    // Sampled: `total` events happened in the interval, the newest of them are in the frame.
    eventsSeen += m.params.total ?? m.params.events.length;
    showEvents();
  } else if (m.method === "events.dropped") {
    addEvent({ dropped: m.params.dropped });
    showEvents();
  }
}

function eventText(e) {
  if (e.dropped !== undefined) return `… ${e.dropped} events dropped by the server (this page read too slowly)`;
  const m = e.mapping;
  const proto = PROTOCOLS[m.protocol] ?? m.protocol;
  return `shard ${e.shard} ${e.kind.padEnd(7)} ${m.kind} ${proto} ${m.internalAddress}:${m.internalPort} → ${m.externalAddress}:${m.externalPort} t=${e.time}`;
}

function addEvent(e) {
  events.unshift(eventText(e));
  if (events.length > EVENTS_SHOWN) events.length = EVENTS_SHOWN;
}

let showQueued = false;
/** Redrawn at most once per animation frame, however many frames arrive. */
function showEvents() {
  if (showQueued) return;
  showQueued = true;
  requestAnimationFrame(() => {
    showQueued = false;
    const needle = $("events-filter").value.trim();
    const shown = needle ? events.filter((t) => t.includes(needle)) : events;
    $("events").replaceChildren(
      ...shown.map((t) => {
        const li = document.createElement("li");
        li.textContent = t;
        return li;
      }),
    );
    $("events-count").textContent = `${fmt(eventsSeen)} events, latest ${shown.length} shown`;
  });
}

async function poll() {
  const [stats, health] = await Promise.all([call("stats.get"), call("server.health")]);
  const ha = await call("ha.status").catch((e) => (e.code === -32006 ? null : { error: e.message }));
  const now = performance.now();
  showCounters(stats, now);
  showShards(stats, health);
  showPool(stats);
  showDataplane(stats.dataplane);
  showHa(ha, health.ha);
  previous = { stats, at: now };
}

function showCounters(stats, now) {
  const e = stats.engine;
  const since = previous ? (now - previous.at) / 1000 : 0;
  const rate = (value, before) => (since > 0 ? `${fmt(Math.round((value - before) / since))}/s` : "");
  const p = previous?.stats;
  const list = [
    ["packets", fmt(stats.packets), p ? rate(stats.packets, p.packets) : ""],
    ["mappings", fmt(e.mappings), ""],
    ["held (hold-down)", fmt(e.held), ""],
    ["subscribers", fmt(e.subscribers), ""],
    ["port blocks", fmt(e.blocks), ""],
    ["created", fmt(e.created), p ? rate(e.created, p.engine.created) : ""],
    ["refreshed", fmt(e.refreshed), p ? rate(e.refreshed, p.engine.refreshed) : ""],
    ["deleted", fmt(e.deleted), p ? rate(e.deleted, p.engine.deleted) : ""],
    ["expired", fmt(e.expired), p ? rate(e.expired, p.engine.expired) : ""],
    ["events lost in the engine", fmt(e.eventsLost), ""],
  ];
  for (const [name, value] of Object.entries(stats.drops)) if (value > 0) list.push([`dropped: ${name}`, fmt(value), ""]);
  for (const [name, value] of Object.entries(stats.pcpResults)) if (value > 0) list.push([`PCP ${name}`, fmt(value), ""]);
  for (const [name, value] of Object.entries(stats.natPmpResults)) if (value > 0) list.push([`NAT-PMP ${name}`, fmt(value), ""]);
  rows("counters", list);
  const r = stats.rates;
  $("rates-note").textContent = r
    ? `server rates over ${r.intervalSeconds} s: ${fmt(Math.round(r.packets))} packets/s, ${fmt(Math.round(r.created))} created/s, ${fmt(Math.round(r.refreshed))} refreshed/s`
    : "server rates: after the first sampling interval";
}

function showShards(stats, health) {
  rows(
    "shards",
    stats.shards.map((s) => {
      const h = health.shards.find((x) => x.shard === s.shard);
      const p = s.persistence;
      return [
        s.shard,
        h?.up ? "up" : "DOWN",
        s.epoch,
        fmt(s.packets),
        fmt(s.mappings),
        fmt(s.subscribers),
        p ? `${p.state}${p.reason ? ` (${p.reason})` : ""}` : "off",
      ].map(String);
    }),
  );
  $("health").textContent = `health: ${health.status}`;
  $("health").className = `state ${health.status === "ok" ? "good" : "bad"}`;
}

function showPool(stats) {
  rows(
    "pool",
    stats.shards.flatMap((s) =>
      s.pool.map((a) => [String(s.shard), a.address, fmt(a.freeBlocks), a.retired ? "yes" : "no", poolCounts.get(`${s.shard} ${a.address}`) ?? "–"]),
    ),
  );
}

/** mappings.list per pool address (paged, at most COUNT_PAGES pages each): the count per address. */
async function countPool() {
  const stats = previous?.stats ?? (await call("stats.get"));
  const counts = new Map();
  const addresses = [...new Set(stats.shards.flatMap((s) => s.pool.map((a) => a.address)))];
  for (const address of addresses) {
    const perShard = new Map();
    let cursor;
    let pages = 0;
    do {
      const page = await call("mappings.list", { filter: { externalAddress: address }, limit: 1000, ...(cursor ? { cursor } : {}) });
      for (const m of page.mappings) perShard.set(m.shard, (perShard.get(m.shard) ?? 0) + 1);
      cursor = page.next;
    } while (cursor && ++pages < COUNT_PAGES);
    for (const s of stats.shards) counts.set(`${s.shard} ${address}`, `${fmt(perShard.get(s.shard) ?? 0)}${cursor ? "+" : ""}`);
  }
  poolCounts = counts;
  $("pool-note").textContent = `counted at ${new Date().toLocaleTimeString()}`;
  showPool(stats);
}

function showDataplane(d) {
  if (!d) return rows("dataplane", [["dataplane", "none configured"]]);
  rows(
    "dataplane",
    Object.entries(d).map(([k, v]) => [k, typeof v === "object" && v !== null ? JSON.stringify(v) : String(v)]),
  );
}

function showHa(ha, health) {
  if (ha === null) return rows("ha", [["HA", "off (ha.enabled is false)"]]);
  if (ha.error) return rows("ha", [["HA", `unknown: ${ha.error}`]]);
  const list = [
    ["node", ha.node ?? "–"],
    ["NATS", String(health?.nats ?? ha.nats ?? "–")],
  ];
  for (const g of ha.groups ?? []) list.push([`group ${g.name}`, `${g.role}${g.holder ? `, held by ${g.holder}` : ""}`]);
  for (const p of health?.problems ?? []) list.push(["problem", p]);
  rows("ha", list);
}

function describeFlags(m) {
  return [m.inbound && "map", m.outbound && "peer", m.natPmp && "nat-pmp", m.thirdParty && "third-party", m.preferFailure && "prefer-failure"]
    .filter(Boolean)
    .join(",");
}

async function lookup() {
  const side = $("lookup-side").value;
  const address = $("lookup-address").value.trim();
  const protocol = $("lookup-protocol").value;
  const port = $("lookup-port").value.trim();
  const note = $("lookup-note");
  try {
    let found;
    if (port !== "" && protocol !== "") {
      const params =
        side === "internal"
          ? { internalAddress: address, protocol: Number(protocol), internalPort: Number(port) }
          : { externalAddress: address, protocol: Number(protocol), externalPort: Number(port) };
      const r = await call("mappings.get", params);
      found = r.mapping ? [r.mapping] : [];
    } else {
      const filter = { [side === "internal" ? "internalAddress" : "externalAddress"]: address, ...(protocol ? { protocol: Number(protocol) } : {}) };
      found = (await call("mappings.list", { filter, limit: 100 })).mappings;
    }
    note.textContent = found.length === 0 ? "no mapping found" : `${found.length} mapping(s)`;
    rows(
      "lookup-result",
      found.map((m) => [
        String(m.shard),
        m.kind,
        PROTOCOLS[m.protocol] ?? String(m.protocol),
        `${m.internalAddress}:${m.internalPort}`,
        `${m.externalAddress}:${m.externalPort}`,
        m.expiresIn === null ? "static" : `${fmt(m.expiresIn)} s`,
        describeFlags(m),
        m.description ?? "",
      ]),
    );
  } catch (e) {
    note.textContent = `error: ${e.message}`;
    rows("lookup-result", []);
  }
}

$("login").addEventListener("submit", (e) => {
  e.preventDefault();
  connect($("token").value);
});
$("lookup").addEventListener("submit", (e) => {
  e.preventDefault();
  void lookup();
});
$("pool-count").addEventListener("click", () => void countPool().catch((e) => ($("pool-note").textContent = `error: ${e.message}`)));
$("events-filter").addEventListener("input", showEvents);

// #token=… in the URL: used, then removed from the address bar and history.
function tokenFromFragment() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (!fragment.has("token")) return undefined;
  history.replaceState(null, "", location.pathname + location.search);
  return fragment.get("token");
}
window.addEventListener("hashchange", () => {
  const token = tokenFromFragment();
  if (token === undefined) return;
  $("token").value = token;
  connect(token);
});
const initial = tokenFromFragment() ?? "";
$("token").value = initial;
connect(initial);
