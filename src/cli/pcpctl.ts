#!/usr/bin/env node
// pcpctl: the control channel's command line (one subcommand per method of
// pcpd-control/1, src/control/protocol.ts), built on the client SDK (src/client/).
// Exit codes: 0 ok, 1 server error / connection failure / no such mapping, 2 usage error.
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { stringify as toYaml } from "yaml";
import type { z } from "zod";
import {
  ControlClient,
  ControlClientError,
  ControlError,
  rpcErrorName,
  type EventKind,
  type MethodParams,
  type SubscriptionItem,
} from "../client/control-client.js";
import { defaultTokenFile, defaultTokenFiles, findTokenFile, readTokenFile } from "../client/token-file.js";
import * as W from "../wire.generated.js";
import { CONTROL_PATH, Params, RpcErrors, type Mapping, type MappingEventNotice, type Method, type Results } from "../control/protocol.js";
import type { DataplaneOp } from "../dataplane/ops.js";
import type { PersistenceStatus } from "../persist/store.js";

const DEFAULT_URL = `ws://127.0.0.1:5380${CONTROL_PATH}`;
const MAPPING_KINDS = ["dynamic", "static", "held"] as const;
const EVENT_KINDS: readonly EventKind[] = ["create", "refresh", "delete", "expire", "release", "update"];
const PROTOCOL_NAMES: Record<string, number> = { tcp: 6, udp: 17, dccp: 33, sctp: 132 };

const GLOBAL_USAGE = `global options:
  --url URL            control channel (default ${DEFAULT_URL}; wss:// for TLS)
  --token TOKEN        bearer token (else $PCPCTL_TOKEN, else --token-file)
  --token-file FILE    file holding the token (default ${defaultTokenFile()}${
    process.env.XDG_RUNTIME_DIR ? `,\n                       else ${defaultTokenFiles()[1]}` : ""
  })
  --ca FILE            CA certificate (PEM) for a wss:// server
  --insecure           accept any server certificate (testing only)
  --timeout MS         connect and per-call timeout, ms (default 10000)
  --json               raw JSON output (JSON lines for events)
  -h, --help           this text`;

function fullUsage(): string {
  const commands = COMMANDS.map((c) => `${c.synopsis.map((s) => `  ${s}`).join("\n")}\n      ${c.describe}`).join("\n");
  return `usage: pcpctl [global options] <command> [options]

${GLOBAL_USAGE}

commands:
${commands}

A is an IP address; P is a protocol number or tcp, udp, dccp, sctp.
exit codes: 0 ok, 1 server error or connection failure, 2 usage error`;
}

function commandUsage(commands: Command[]): string {
  const prefix = "pcpctl [global options] ";
  const lines = commands.flatMap((c) => c.synopsis.map((s) => (s.startsWith(" ") ? " ".repeat(prefix.length) : prefix) + s));
  return `usage: ${lines.join("\n       ")}\n(pcpctl --help for everything)`;
}

const OPTIONS = {
  url: { type: "string" },
  token: { type: "string" },
  "token-file": { type: "string" },
  ca: { type: "string" },
  insecure: { type: "boolean" },
  timeout: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
  internal: { type: "string" },
  external: { type: "string" },
  protocol: { type: "string" },
  port: { type: "string" },
  "external-port": { type: "string" },
  family: { type: "string" },
  kind: { type: "string", multiple: true },
  "mapping-kind": { type: "string" },
  limit: { type: "string" },
  cursor: { type: "string" },
  all: { type: "boolean" },
  shard: { type: "string" },
  "third-party-id": { type: "string" },
} as const;
type OptionName = keyof typeof OPTIONS;
type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true; strict: true }>>["values"];
const GLOBAL_OPTIONS: OptionName[] = ["url", "token", "token-file", "ca", "insecure", "timeout", "json", "help"];

class UsageError extends Error {}

// ---- output ----

function out(line = ""): void {
  process.stdout.write(`${line}\n`);
}

function printJson(value: unknown): void {
  out(JSON.stringify(value, null, 2));
}

/** Aligned columns, two spaces apart. */
function formatTable(headers: string[], rows: (string | number)[][]): string {
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
function persistenceState(p: PersistenceStatus | null): string {
  if (!p) return "off";
  return p.state === "ok" ? "ok" : `${p.state.toUpperCase()} since ${new Date(p.since).toISOString()}: ${p.reason}`;
}

function printTable(headers: string[], rows: (string | number)[][]): void {
  out(formatTable(headers, rows));
}

function printPairs(pairs: [string, string | number][]): void {
  const width = Math.max(...pairs.map(([k]) => k.length));
  for (const [k, v] of pairs) out(`${k.padEnd(width)}  ${v}`);
}

function protocolName(n: number): string {
  for (const [name, value] of Object.entries(PROTOCOL_NAMES)) if (value === n) return name;
  return String(n);
}

function endpoint(address: string, port: number): string {
  return address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`;
}

function direction(m: { inbound: boolean; outbound: boolean }): string {
  return m.inbound && m.outbound ? "in+out" : m.inbound ? "in" : m.outbound ? "out" : "-";
}

function flags(m: { natPmp: boolean; thirdParty: boolean; preferFailure: boolean }): string {
  const f = [m.natPmp && "nat-pmp", m.thirdParty && "third-party", m.preferFailure && "prefer-failure"].filter(Boolean);
  return f.length ? f.join(",") : "-";
}

const expiry = (t: number): string | number => (t === 0 ? "-" : t);

function printMappings(mappings: Mapping[]): void {
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

function printMapping(m: Mapping): void {
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

function eventLine(e: MappingEventNotice): string {
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

function duration(seconds: number): string {
  let s = Math.floor(seconds);
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  return `${d ? `${d}d` : ""}${d || h ? `${h}h` : ""}${d || h || m ? `${m}m` : ""}${s}s`;
}

function counterTable(title: string, record: Record<string, number>, hideZero: boolean): void {
  const rows = Object.entries(record).filter(([, v]) => !hideZero || v !== 0);
  if (rows.length === 0) {
    out(`${title}: ${Object.keys(record).length === 0 ? "(none)" : "(all zero)"}`);
    return;
  }
  printTable([title.toUpperCase(), "COUNT"], rows);
}

// ---- arguments ----

function integer(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) throw new UsageError(`--${name}: not a non-negative integer: ${value}`);
  return Number(value);
}

function protocol(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const named = PROTOCOL_NAMES[value.toLowerCase()];
  if (named !== undefined) return named;
  if (!/^\d+$/.test(value)) throw new UsageError(`--protocol: not a protocol number or tcp, udp, dccp, sctp: ${value}`);
  return Number(value);
}

function family(value: string | undefined): 4 | 6 | undefined {
  if (value === undefined) return undefined;
  if (value === "4" || value === "6") return Number(value) as 4 | 6;
  throw new UsageError(`--family: 4 or 6, not ${value}`);
}

function mappingKind(name: string, value: string | undefined): (typeof MAPPING_KINDS)[number] | undefined {
  if (value === undefined) return undefined;
  if ((MAPPING_KINDS as readonly string[]).includes(value)) return value as (typeof MAPPING_KINDS)[number];
  const hint = (EVENT_KINDS as readonly string[]).includes(value) ? " (event kinds go to `events --kind`)" : "";
  throw new UsageError(`--${name}: one of ${MAPPING_KINDS.join(", ")}, not ${value}${hint}`);
}

function eventKinds(values: string[] | undefined): EventKind[] | undefined {
  if (values === undefined) return undefined;
  const kinds = values.flatMap((v) => v.split(",")).map((k) => k.trim()).filter((k) => k !== "");
  for (const k of kinds) {
    if (!(EVENT_KINDS as readonly string[]).includes(k)) {
      const hint = (MAPPING_KINDS as readonly string[]).includes(k) ? " (use --mapping-kind for dynamic, static, held)" : "";
      throw new UsageError(`--kind: one of ${EVENT_KINDS.join(", ")}, not ${k}${hint}`);
    }
  }
  return [...new Set(kinds)] as EventKind[];
}

function required<T>(name: string, value: T | undefined): T {
  if (value === undefined) throw new UsageError(`--${name} is required`);
  return value;
}

/** Option names for the params' fields, to word validation errors in the user's terms. */
const FIELD_FLAGS: Record<string, string> = {
  internalAddress: "--internal",
  externalAddress: "--external",
  protocol: "--protocol",
  internalPort: "--port",
  externalPort: "--external-port",
  family: "--family",
  kind: "--kind",
  limit: "--limit",
  cursor: "--cursor",
  shard: "--shard",
  kinds: "--kind",
};

/** Validates params with the protocol's schema (as the server will); a problem is a usage error. */
function check<M extends Method>(method: M, params: MethodParams<M>, fieldFlags: Record<string, string> = {}): void {
  const result = (Params[method] as z.ZodType).safeParse(params);
  if (result.success) return;
  const problems = flattenIssues(result.error.issues).map((issue) => {
    const field = [...issue.path].reverse().find((p) => typeof p === "string") as string | undefined;
    const flag = field === undefined ? undefined : (fieldFlags[field] ?? FIELD_FLAGS[field] ?? field);
    return flag ? `${flag}: ${issue.message}` : issue.message;
  });
  throw new UsageError([...new Set(problems)].join("; "));
}

function flattenIssues(issues: readonly z.core.$ZodIssue[]): z.core.$ZodIssue[] {
  return issues.flatMap((issue) => {
    if (issue.code === "invalid_union" && issue.errors.length > 0) {
      // The branch that came closest.
      const best = [...issue.errors].sort((a, b) => a.length - b.length)[0];
      return flattenIssues(best);
    }
    return [issue];
  });
}

// ---- commands ----

interface Context {
  values: Values;
  args: string[];
  json: boolean;
  call<M extends Method>(method: M, params: MethodParams<M>, fieldFlags?: Record<string, string>): Promise<Results[M]>;
  client(): Promise<ControlClient>;
}

interface Command {
  path: string[];
  synopsis: string[];
  describe: string;
  /** Names of the positional arguments. */
  args: string[];
  options: OptionName[];
  run(ctx: Context): Promise<number>;
}

const COMMANDS: Command[] = [
  {
    path: ["info"],
    synopsis: ["info"],
    describe: "server.info: version, uptime, workers, shards, your role",
    args: [],
    options: [],
    async run(ctx) {
      const info = await ctx.call("server.info", {});
      if (ctx.json) return printJson(info), 0;
      printPairs([
        ["protocol", info.protocol],
        ["version", info.version],
        ["node", info.node],
        ["started", `${info.startedAt} (up ${duration(info.uptimeSeconds)})`],
        ["workers", info.workers],
        ["role", info.role],
      ]);
      out();
      printTable(
        ["SHARD", "THREAD", "LISTEN", "EPOCH"],
        info.shards.map((s) => [s.shard, s.thread ?? "-", s.listen.map((l) => endpoint(l.address, l.port)).join(",") || "-", s.epoch]),
      );
      return 0;
    },
  },
  {
    path: ["health"],
    synopsis: ["health"],
    describe: "server.health: status and shards up",
    args: [],
    options: [],
    async run(ctx) {
      const health = await ctx.call("server.health", {});
      if (ctx.json) return printJson(health), 0;
      out(`status  ${health.status}`);
      out();
      printTable(["SHARD", "UP", "PERSISTENCE"], health.shards.map((s) => [s.shard, s.up ? "yes" : "no", persistenceState(s.persistence)]));
      return 0;
    },
  },
  {
    path: ["stats"],
    synopsis: ["stats"],
    describe: "stats.get: counters, per-shard figures, pool",
    args: [],
    options: [],
    async run(ctx) {
      const stats = await ctx.call("stats.get", {});
      if (ctx.json) return printJson(stats), 0;
      out(`packets  ${stats.packets}`);
      const dp = stats.dataplane;
      if (dp) out(`dataplane  ${dp.backend} ${dp.up ? "up" : "DOWN"}: ${dp.installed} installed, ${dp.pendingKeys} pending, ${dp.transactions} transactions, ${dp.failures} failures${dp.lastError ? ` (last: ${dp.lastError})` : ""}`);
      out();
      printTable(
        ["SHARD", "EPOCH", "PACKETS", "MAPPINGS", "SUBSCRIBERS"],
        stats.shards.map((s) => [s.shard, s.epoch, s.packets, s.mappings, s.subscribers]),
      );
      if (stats.shards.some((s) => s.persistence)) {
        out();
        printTable(
          ["SHARD", "PERSISTENCE", "WRITE ERRORS", "BACKLOG BYTES", "DROPPED BYTES"],
          stats.shards.map((s) => [s.shard, persistenceState(s.persistence), s.persistence?.writeErrors ?? "-", s.persistence?.backlogBytes ?? "-", s.persistence?.droppedBytes ?? "-"]),
        );
      }
      out();
      printTable(
        ["SHARD", "POOL ADDRESS", "FREE BLOCKS", "RETIRED"],
        stats.shards.flatMap((s) => s.pool.map((p) => [s.shard, p.address, p.freeBlocks, p.retired ? "yes" : "no"])),
      );
      out();
      counterTable("engine counter", stats.engine, false);
      out();
      counterTable("pcp result", stats.pcpResults, true);
      out();
      counterTable("nat-pmp result", stats.natPmpResults, true);
      out();
      counterTable("drop reason", stats.drops, true);
      return 0;
    },
  },
  {
    path: ["mappings", "list"],
    synopsis: ["mappings list [--internal A] [--external A] [--protocol P] [--kind dynamic|static|held]", "              [--limit N] [--cursor C] [--all]"],
    describe: "mappings.list: --limit is the page size (1-1000; default 100, 1000 with --all); --all follows the pages",
    args: [],
    options: ["internal", "external", "protocol", "kind", "limit", "cursor", "all"],
    async run(ctx) {
      const v = ctx.values;
      if ((v.kind?.length ?? 0) > 1) throw new UsageError("--kind: give it once");
      const filter = {
        internalAddress: v.internal,
        externalAddress: v.external,
        protocol: protocol(v.protocol),
        kind: mappingKind("kind", v.kind?.[0]),
      };
      // --all walks the whole table: in the largest pages unless told otherwise.
      const limit = integer("limit", v.limit) ?? (v.all ? 1000 : undefined);
      const mappings: Mapping[] = [];
      let cursor = v.cursor;
      let next: string | null = null;
      do {
        const params = { filter: defined(filter), ...defined({ cursor, limit }) };
        const page = await withRetry(() => ctx.call("mappings.list", params));
        mappings.push(...page.mappings);
        next = page.next;
        cursor = next ?? undefined;
      } while (v.all && next !== null);
      if (ctx.json) return printJson({ mappings, next }), 0;
      if (mappings.length === 0) out("no mappings");
      else printMappings(mappings);
      if (next !== null) process.stderr.write(`more: --cursor ${next} (or --all)\n`);
      return 0;
    },
  },
  {
    path: ["mappings", "get"],
    synopsis: ["mappings get --internal A --protocol P --port N [--family 4|6] [--third-party-id HEX]", "mappings get --external A --protocol P --port N"],
    describe: "mappings.get: by internal or external endpoint; exits 1 when there is none",
    args: [],
    options: ["internal", "external", "protocol", "port", "family", "third-party-id"],
    async run(ctx) {
      const v = ctx.values;
      if ((v.internal === undefined) === (v.external === undefined)) throw new UsageError("give --internal or --external (one of them)");
      if (v.internal === undefined && v["third-party-id"] !== undefined) throw new UsageError("--third-party-id goes with --internal only");
      const proto = required("protocol", protocol(v.protocol));
      const port = required("port", integer("port", v.port));
      let result: Results["mappings.get"];
      if (v.internal !== undefined) {
        result = await ctx.call("mappings.get", defined({ internalAddress: v.internal, protocol: proto, internalPort: port, family: family(v.family), thirdPartyId: v["third-party-id"] }), { thirdPartyId: "--third-party-id" });
      } else {
        if (v.family !== undefined) throw new UsageError("--family goes with --internal only");
        result = await ctx.call("mappings.get", { externalAddress: v.external!, protocol: proto, externalPort: port }, { externalPort: "--port" });
      }
      if (ctx.json) printJson(result);
      else if (result.mapping) printMapping(result.mapping);
      if (result.mapping === null) {
        if (!ctx.json) process.stderr.write("no such mapping\n");
        return 1;
      }
      return 0;
    },
  },
  {
    path: ["static", "add"],
    synopsis: ["static add --internal A --protocol P --port N --external A --external-port N"],
    describe: "mappings.addStatic",
    args: [],
    options: ["internal", "protocol", "port", "external", "external-port"],
    async run(ctx) {
      const v = ctx.values;
      const result = await ctx.call("mappings.addStatic", {
        internalAddress: required("internal", v.internal),
        protocol: required("protocol", protocol(v.protocol)),
        internalPort: required("port", integer("port", v.port)),
        externalAddress: required("external", v.external),
        externalPort: required("external-port", integer("external-port", v["external-port"])),
      });
      if (ctx.json) return printJson(result), 0;
      printMapping(result.mapping);
      return 0;
    },
  },
  {
    path: ["static", "remove"],
    synopsis: ["static remove --internal A --protocol P --port N [--family 4|6]"],
    describe: "mappings.removeStatic",
    args: [],
    options: ["internal", "protocol", "port", "family"],
    async run(ctx) {
      const v = ctx.values;
      const result = await ctx.call(
        "mappings.removeStatic",
        defined({
          internalAddress: required("internal", v.internal),
          protocol: required("protocol", protocol(v.protocol)),
          internalPort: required("port", integer("port", v.port)),
          family: family(v.family),
        }),
      );
      if (ctx.json) return printJson(result), 0;
      out("removed");
      return 0;
    },
  },
  {
    path: ["subscriber", "usage"],
    synopsis: ["subscriber usage A [--third-party-id HEX]"],
    describe: "subscribers.usage: mappings and port blocks per shard",
    args: ["ADDRESS"],
    options: ["third-party-id"],
    async run(ctx) {
      const result = await ctx.call("subscribers.usage", defined({ internalAddress: ctx.args[0], thirdPartyId: ctx.values["third-party-id"] }), { internalAddress: "ADDRESS", thirdPartyId: "--third-party-id" });
      if (ctx.json) return printJson(result), 0;
      printTable(["SHARD", "MAPPINGS", "BLOCKS"], result.shards.map((s) => [s.shard, s.mappings, s.blocks]));
      return 0;
    },
  },
  {
    path: ["subscriber", "delete"],
    synopsis: ["subscriber delete A [--third-party-id HEX]"],
    describe: "subscribers.deleteMappings: deletes all of the subscriber's mappings",
    args: ["ADDRESS"],
    options: ["third-party-id"],
    async run(ctx) {
      const result = await ctx.call("subscribers.deleteMappings", defined({ internalAddress: ctx.args[0], thirdPartyId: ctx.values["third-party-id"] }), { internalAddress: "ADDRESS", thirdPartyId: "--third-party-id" });
      if (ctx.json) return printJson(result), 0;
      out(`deleted ${result.deleted} mapping${result.deleted === 1 ? "" : "s"}`);
      return 0;
    },
  },
  {
    path: ["epoch"],
    synopsis: ["epoch"],
    describe: "epoch.get",
    args: [],
    options: [],
    async run(ctx) {
      const result = await ctx.call("epoch.get", {});
      if (ctx.json) return printJson(result), 0;
      printTable(["SHARD", "EPOCH"], result.shards.map((s) => [s.shard, s.epoch]));
      return 0;
    },
  },
  {
    path: ["epoch", "reset"],
    synopsis: ["epoch reset --shard N"],
    describe: "epoch.reset",
    args: [],
    options: ["shard"],
    async run(ctx) {
      const result = await ctx.call("epoch.reset", { shard: required("shard", integer("shard", ctx.values.shard)) });
      if (ctx.json) return printJson(result), 0;
      out(`shard ${result.shard}: epoch reset, now ${result.epoch}`);
      return 0;
    },
  },
  {
    path: ["config", "show"],
    synopsis: ["config show"],
    describe: "config.get (YAML; JSON with --json)",
    args: [],
    options: [],
    async run(ctx) {
      const result = await ctx.call("config.get", {});
      if (ctx.json) return printJson(result), 0;
      process.stdout.write(toYaml(result.config));
      return 0;
    },
  },
  {
    path: ["config", "reload"],
    synopsis: ["config reload"],
    describe: "config.reload: what changed that needs a restart",
    args: [],
    options: [],
    async run(ctx) {
      const result = await ctx.call("config.reload", {});
      if (ctx.json) return printJson(result), 0;
      out("configuration reloaded");
      if (result.restartNeededFor.length > 0) out(`restart needed for: ${result.restartNeededFor.join(", ")}`);
      return 0;
    },
  },
  {
    path: ["events"],
    synopsis: ["events [--internal A] [--external A] [--protocol P] [--mapping-kind dynamic|static|held]", "       [--kind create|refresh|delete|expire|release|update[,...]]..."],
    describe: "events.subscribe: one line per event until Ctrl-C (JSON lines with --json)",
    args: [],
    options: ["internal", "external", "protocol", "mapping-kind", "kind"],
    async run(ctx) {
      const v = ctx.values;
      const filter = defined({
        internalAddress: v.internal,
        externalAddress: v.external,
        protocol: protocol(v.protocol),
        kind: mappingKind("mapping-kind", v["mapping-kind"]),
      });
      const kinds = eventKinds(v.kind);
      check("events.subscribe", kinds === undefined ? { filter } : { filter, kinds }, { kind: "--mapping-kind" });
      const client = await ctx.client();
      const subscription = await client.subscribe(filter, kinds);
      let stopped = false;
      const stop = () => {
        stopped = true;
        void subscription.unsubscribe().finally(() => client.close());
      };
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
      const print = (item: SubscriptionItem) => {
        if (ctx.json) out(JSON.stringify(item.type === "event" ? item.event : { dropped: item.dropped, source: item.source }));
        else if (item.type === "event") out(eventLine(item.event));
        else out(`# ${item.dropped} event${item.dropped === 1 ? "" : "s"} dropped (${item.source === "server" ? "by the server" : "here"}: read too slowly)`);
      };
      try {
        for await (const item of subscription) print(item);
      } catch (e) {
        if (!stopped) throw e;
      }
      return 0;
    },
  },
  {
    path: ["dataplane", "watch"],
    synopsis: ["dataplane watch"],
    describe: "dataplane.subscribe (admin; dataplane.backend events): the operations an external dataplane receives, until Ctrl-C",
    args: [],
    options: [],
    async run(ctx) {
      const client = await ctx.client();
      let stopped = false;
      const ended = new Promise<void>((resolve, reject) => {
        client.on("notification", (method: string, params: any) => {
          if (ctx.json) return out(JSON.stringify({ method, ...params }));
          if (method === "dataplane.reset") return out(`# reset (seq ${params.seq}): forget every mapping`);
          if (method !== "dataplane.ops") return;
          out(`# transaction seq ${params.seq}: ${params.ops.length} operation${params.ops.length === 1 ? "" : "s"}`);
          for (const o of params.ops as DataplaneOp[]) out(opLine(o));
        });
        client.once("close", () => (stopped ? resolve() : reject(new Error("the control connection closed"))));
      });
      await client.call("dataplane.subscribe", {});
      const stop = () => {
        stopped = true;
        void client.call("dataplane.unsubscribe", {}).catch(() => undefined).finally(() => client.close());
      };
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
      await ended;
      return 0;
    },
  },
];

/** "map tcp 198.51.100.1:1234 -> 10.0.0.2:8080 in out allow=192.0.2.0/24:any" */
function opLine(o: DataplaneOp): string {
  const m = o.mapping;
  const allow = m.filters.map((f) => `${f.address}/${f.prefixLength}:${f.port || "any"}`).join(",");
  return [o.op.padEnd(5), protocolName(m.protocol), `${m.external.address}:${m.external.port}`, "->", `${m.internal.address}:${m.internal.port}`, m.inbound ? "in" : "-", m.outbound ? "out" : "-", ...(allow ? [`allow=${allow}`] : [])].join(" ");
}

/** Retries a call the server refused as over the connection's request rate (a long --all walk). */
async function withRetry<T>(call: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await call();
    } catch (e) {
      if (!(e instanceof ControlError && e.code === RpcErrors.RATE_LIMITED) || attempt >= 5) throw e;
      await new Promise((resolve) => setTimeout(resolve, 100 * 2 ** attempt));
    }
  }
}

function defined<T extends Record<string, unknown>>(o: T): { [K in keyof T]: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as { [K in keyof T]: Exclude<T[K], undefined> };
}

function findCommand(positionals: string[]): Command | undefined {
  let best: Command | undefined;
  for (const c of COMMANDS) {
    if (c.path.every((p, i) => positionals[i] === p) && (!best || c.path.length > best.path.length)) best = c;
  }
  return best;
}

// ---- main ----

function resolveToken(values: Values): string {
  if (values.token !== undefined) {
    if (values.token.trim() === "") throw new UsageError("--token is empty");
    return values.token.trim();
  }
  const fromEnv = process.env.PCPCTL_TOKEN?.trim();
  if (fromEnv) return fromEnv;
  const file = values["token-file"] ?? findTokenFile();
  try {
    return readTokenFile(file);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why = err.code === "ENOENT" ? "not found" : err.code === "EACCES" ? "permission denied" : err.message;
    throw new UsageError(`no token: give --token, PCPCTL_TOKEN or --token-file (${file}: ${why})`);
  }
}

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (e) {
    const { positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: false });
    return usage((e as Error).message, commandsFor(positionals));
  }
  const { values, positionals } = parsed;
  const command = findCommand(positionals);
  if (values.help) {
    const commands = commandsFor(positionals);
    out(commands ? commandUsage(commands) : fullUsage());
    return 0;
  }
  if (positionals.length === 0) return usage("no command");
  if (!command) {
    const group = commandsFor(positionals);
    if (group && positionals.length === 1) return usage(`${positionals[0]}: which one? (${group.map((c) => c.path[1]).join(", ")})`, group);
    return usage(`unknown command: ${positionals.join(" ")}`, group);
  }
  const args = positionals.slice(command.path.length);
  if (args.length !== command.args.length) {
    const name = command.path.join(" ");
    const group = COMMANDS.filter((c) => c.path[0] === command.path[0]);
    if (args.length > 0 && command.args.length === 0 && group.length > 1) return usage(`unknown command: ${positionals.join(" ")}`, group);
    return usage(
      command.args.length === 0 ? `${name} takes no arguments (got ${args.join(" ")})` : `${name} needs ${command.args.join(" ")}`,
      [command],
    );
  }
  const allowed = new Set<string>([...GLOBAL_OPTIONS, ...command.options]);
  const stray = Object.keys(values).filter((k) => !allowed.has(k));
  if (stray.length > 0) return usage(`${command.path.join(" ")} does not take ${stray.map((k) => `--${k}`).join(", ")}`, [command]);

  let client: ControlClient | undefined;
  const ctx: Context = {
    values,
    args,
    json: values.json ?? false,
    async client() {
      if (client) return client;
      const token = resolveToken(values);
      let ca: Buffer | undefined;
      if (values.ca !== undefined) {
        try {
          ca = readFileSync(values.ca);
        } catch (e) {
          throw new UsageError(`--ca: cannot read ${values.ca}: ${(e as Error).message}`);
        }
      }
      const timeoutMs = integer("timeout", values.timeout);
      if (timeoutMs === 0) throw new UsageError("--timeout: must be at least 1");
      client = await ControlClient.connect(values.url ?? DEFAULT_URL, {
        token,
        ca,
        rejectUnauthorized: !values.insecure,
        timeoutMs,
      });
      return client;
    },
    async call(method, params, fieldFlags) {
      check(method, params, fieldFlags);
      const c = await this.client();
      return c.call(method, params);
    },
  };
  try {
    return await command.run(ctx);
  } catch (e) {
    if (e instanceof UsageError) return usage(e.message, [command]);
    if (e instanceof ControlError) {
      const name = e.codeName ?? rpcErrorName(e.code);
      const data = e.data === undefined ? "" : ` (${describeData(e)})`;
      process.stderr.write(`pcpctl: server error ${e.code}${name ? ` ${name}` : ""}: ${e.message}${data}\n`);
      return 1;
    }
    if (e instanceof ControlClientError) {
      process.stderr.write(`pcpctl: ${e.message}\n`);
      return 1;
    }
    throw e;
  } finally {
    await client?.close();
  }
}

/** An error's data; a REFUSED error's PCP result code also by name. */
function describeData(e: ControlError): string {
  const result = typeof e.data === "number" ? e.data : (e.data as { result?: unknown } | null)?.result;
  if (e.code === RpcErrors.REFUSED && typeof result === "number") {
    const name = Object.entries(W).find(([k, v]) => k.startsWith("RESULT_") && k !== "RESULT_CODE_LIMIT" && v === result)?.[0];
    return `PCP result ${result}${name ? ` ${name.slice("RESULT_".length)}` : ""}`;
  }
  return `data: ${JSON.stringify(e.data)}`;
}

/** Prints the problem and the usage of `commands` (all of them when none is known); exit code 2. */
function usage(message: string, commands?: Command[]): number {
  process.stderr.write(`pcpctl: ${message}\n${commands ? commandUsage(commands) : fullUsage()}\n`);
  return 2;
}

/** The command named by `positionals`, else the commands of the group its first word names. */
function commandsFor(positionals: string[]): Command[] | undefined {
  const command = findCommand(positionals);
  if (command) return [command];
  const group = COMMANDS.filter((c) => c.path[0] === positionals[0]);
  return group.length > 0 ? group : undefined;
}

// A closed stdout (`pcpctl events | head`) ends the command quietly.
process.stdout.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code === "EPIPE") process.exit(0);
  throw e;
});

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // Everything is closed by now; this only guards against a handle left open.
    setTimeout(() => process.exit(code), 2000).unref();
  },
  (e) => {
    process.stderr.write(`pcpctl: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
