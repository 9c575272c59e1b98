// pcpctl's output: aligned tables, key/value blocks, one line per event or dataplane
// operation (the --json forms are printed by the commands themselves).
import type { Mapping, MappingEventNotice } from "../../control/protocol.js";
import type { DataplaneOp } from "../../dataplane/ops.js";
import type { PersistenceStatus } from "../../persist/store.js";
import { PROTOCOL_NAMES } from "./args.js";

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

const expiry = (t: number): string | number => (t === 0 ? "-" : t);

export function printMappings(mappings: Mapping[]): void {
  printTable(
    ["SHARD", "ID", "KIND", "PROTO", "INTERNAL", "EXTERNAL", "DIR", "FLAGS", "MAP-EXPIRY", "OUT-EXPIRY", "FILTERS"],
    mappings.map((m) => [
      m.shard,
      m.id,
      m.kind,
      protocolName(m.protocol),
      endpoint(m.internalAddress, m.internalPort),
      endpoint(m.externalAddress, m.externalPort),
      direction(m),
      flags(m),
      expiry(m.mapExpiry),
      expiry(m.outExpiry),
      m.filters.length,
    ]),
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
    ["map expiry", expiry(m.mapExpiry)],
    ["out expiry", expiry(m.outExpiry)],
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
    direction(m),
    `flags=${flags(m)}`,
    `map-expiry=${expiry(m.mapExpiry)}`,
    `out-expiry=${expiry(m.outExpiry)}`,
    `time=${e.time}`,
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
