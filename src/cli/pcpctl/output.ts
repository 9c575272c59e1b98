// pcpctl's output: aligned tables, key/value blocks, one line per event or dataplane
// operation (the --json forms are printed by the commands themselves).
import type { Mapping, MappingEventNotice } from "../../control/protocol.js";
import type { DataplaneOp } from "../../dataplane/ops.js";
import type { PersistenceStatus } from "../../persist/store.js";
import { PROTOCOL_NAMES } from "./args.js";
import { ALL_CONSTANTS } from "../../wire.generated.js";

export function out(line = ""): void {
  process.stdout.write(`${line}\n`);
}

export function printJson(value: unknown): void {
  out(JSON.stringify(value, null, 2));
}

/** Aligned columns, two spaces apart. */
export function formatTable(headers: string[], rows: (string | number)[][]): string {
  const cells = rows.map((row) => row.map((c) => String(c)));
  // A column of numbers (and "-" for none) is right-aligned.
  const numeric = headers.map((_, i) => rows.some((row) => typeof row[i] === "number") && rows.every((row) => typeof row[i] === "number" || row[i] === "-"));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((row) => (row[i] ?? "").length)));
  const line = (row: string[]) =>
    row
      .map((c, i) => (numeric[i] ? c.padStart(widths[i]) : i === row.length - 1 ? c : c.padEnd(widths[i])))
      .join("  ")
      .trimEnd();
  return [line(headers), ...cells.map(line)].join("\n");
}

/** A shard's persistence in one cell: off, ok, or the state with its reason. */
export function persistenceState(p: PersistenceStatus | null): string {
  if (!p) return "off";
  return p.state === "ok" ? "ok" : `${p.state.toUpperCase()} since ${new Date(p.since).toISOString()}: ${p.reason}`;
}

export function printTable(headers: string[], rows: (string | number)[][]): void {
  out(formatTable(headers, rows));
}

export function printPairs(pairs: [string, string | number][]): void {
  const width = Math.max(...pairs.map(([k]) => k.length));
  for (const [k, v] of pairs) out(`${k.padEnd(width)}  ${v}`);
}

export function protocolName(n: number): string {
  for (const [name, value] of Object.entries(PROTOCOL_NAMES)) if (value === n) return name;
  return String(n);
}

export function endpoint(address: string, port: number): string {
  return address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`;
}

export function direction(m: { inbound: boolean; outbound: boolean }): string {
  return m.inbound && m.outbound ? "in+out" : m.inbound ? "in" : m.outbound ? "out" : "-";
}

export function flags(m: { natPmp: boolean; thirdParty: boolean; preferFailure: boolean }): string {
  const f = [m.natPmp && "nat-pmp", m.thirdParty && "third-party", m.preferFailure && "prefer-failure"].filter(Boolean);
  return f.length ? f.join(",") : "-";
}

/**
 * An expiry (engine time, 0 = none) as the time left from `now` (engine time): "9m58s",
 * "expired", "-" for none; "never" for a static mapping's MAP part.
 */
export function timeLeft(expiry: number, now: number | undefined, isStatic = false): string {
  if (expiry === 0) return isStatic ? "never" : "-";
  if (now === undefined) return "?";
  return expiry > now ? duration(expiry - now) : "expired";
}

/** The engine time a listed mapping was read at (its expiresIn is counted from it). */
function readAt(m: Mapping): number | undefined {
  return m.expiresIn === null || m.expiresIn === 0 ? undefined : Math.max(m.mapExpiry, m.outExpiry) - m.expiresIn;
}

/** The PEER's remote peer, "+N" for the mapping's other remote peers; "-" for none. */
export function peerCell(m: { peer?: { address: string; port: number; count: number } }): string {
  if (!m.peer) return "-";
  return `${endpoint(m.peer.address, m.peer.port)}${m.peer.count > 1 ? ` (+${m.peer.count - 1})` : ""}`;
}

export function printMappings(mappings: Mapping[]): void {
  printTable(
    ["SHARD", "ID", "KIND", "PROTO", "INTERNAL", "EXTERNAL", "PEER", "DIR", "FLAGS", "MAP-LEFT", "OUT-LEFT", "FILTERS"],
    mappings.map((m) => {
      const now = readAt(m);
      const expired = m.expiresIn === 0 ? "expired" : undefined;
      return [
        m.shard,
        m.id,
        m.kind,
        protocolName(m.protocol),
        endpoint(m.internalAddress, m.internalPort),
        endpoint(m.externalAddress, m.externalPort),
        peerCell(m),
        direction(m),
        flags(m),
        m.mapExpiry === 0 ? timeLeft(0, now, m.kind === "static") : (expired ?? timeLeft(m.mapExpiry, now)),
        m.outExpiry === 0 ? "-" : (expired ?? timeLeft(m.outExpiry, now)),
        m.filters.length,
      ];
    }),
  );
}

export function printMapping(m: Mapping): void {
  printPairs([
    ["shard", m.shard],
    ["id", m.id],
    ["kind", m.kind],
    ["protocol", protocolName(m.protocol)],
    ["family", `IPv${m.family}`],
    ["internal", endpoint(m.internalAddress, m.internalPort)],
    ["external", endpoint(m.externalAddress, m.externalPort)],
    ["direction", direction(m)],
    ["flags", flags(m)],
    ["peer", peerCell(m)],
    ["map expires in", m.mapExpiry === 0 ? timeLeft(0, undefined, m.kind === "static") : m.expiresIn === 0 ? "expired" : timeLeft(m.mapExpiry, readAt(m))],
    ["out expires in", m.outExpiry === 0 ? "-" : m.expiresIn === 0 ? "expired" : timeLeft(m.outExpiry, readAt(m))],
    ["filters", m.filters.length === 0 ? "-" : m.filters.map((f) => `${f.address}/${f.prefixLength} port ${f.port || "any"}`).join(", ")],
    ["description", m.description === undefined ? "-" : JSON.stringify(m.description)],
    ["third-party id", m.thirdPartyId ?? "-"],
  ]);
}

export function eventLine(e: MappingEventNotice): string {
  const m = e.mapping;
  return [
    new Date().toISOString(),
    `shard=${e.shard}`,
    e.kind.padEnd(7),
    m.kind.padEnd(7),
    protocolName(m.protocol).padEnd(3),
    `${endpoint(m.internalAddress, m.internalPort)} -> ${endpoint(m.externalAddress, m.externalPort)}`,
    ...(m.peer ? [`peer=${peerCell(m)}`] : []),
    direction(m),
    `flags=${flags(m)}`,
    `map-left=${timeLeft(m.mapExpiry, e.time, m.kind === "static")}`,
    `out-left=${timeLeft(m.outExpiry, e.time)}`,
  ].join(" ");
}

export function duration(seconds: number): string {
  let s = Math.floor(seconds);
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  return `${d ? `${d}d` : ""}${d || h ? `${h}h` : ""}${d || h || m ? `${m}m` : ""}${s}s`;
}

export function counterTable(title: string, record: Record<string, number>, hideZero: boolean): void {
  const rows = Object.entries(record).filter(([, v]) => !hideZero || v !== 0);
  if (rows.length === 0) {
    out(`${title}: ${Object.keys(record).length === 0 ? "(none)" : "(all zero)"}`);
    return;
  }
  printTable([title.toUpperCase(), "COUNT"], rows);
}

/** NAT-PMP result counters keyed by name [RFC 6886 §3.5] ("2 NOT_AUTHORIZED"), as the server sends them by number. */
export function natPmpResultNames(record: Record<string, number>): Record<string, number> {
  const names = new Map<string, string>();
  for (const [name, code] of Object.entries(ALL_CONSTANTS))
    if (name.startsWith("NATPMP_RESULT_") && name !== "NATPMP_RESULT_CODE_LIMIT") names.set(String(code), name.slice("NATPMP_RESULT_".length));
  return Object.fromEntries(Object.entries(record).map(([code, n]) => [names.has(code) ? `${names.get(code)} (${code})` : code, n]));
}

/** "map tcp 198.51.100.1:1234 -> 10.0.0.2:8080 in out allow=192.0.2.0/24:any" */
export function opLine(o: DataplaneOp): string {
  const m = o.mapping;
  const allow = m.filters.map((f) => `${f.address}/${f.prefixLength}:${f.port || "any"}`).join(",");
  return [
    o.op.padEnd(5),
    protocolName(m.protocol),
    `${m.external.address}:${m.external.port}`,
    "->",
    `${m.internal.address}:${m.internal.port}`,
    m.inbound ? "in" : "-",
    m.outbound ? "out" : "-",
    ...(allow ? [`allow=${allow}`] : []),
  ].join(" ");
}
