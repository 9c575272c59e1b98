// pcpctl's commands: one per method of pcpd-control/1 (a few group a method's variants),
// each with its synopsis, the options it takes and how it prints the result.
import { stringify as toYaml } from "yaml";
import { ControlClientError, ControlError, type ControlClient, type MethodParams, type SubscriptionItem } from "../../client/control-client.js";
import {
  NOTIFY_DATAPLANE_OPS,
  NOTIFY_DATAPLANE_RESET,
  RpcErrors,
  type Mapping,
  type Method,
  type Notifications,
  type Results,
} from "../../control/protocol.js";
import { check, defined, eventKinds, family, integer, mappingKind, protocol, required, UsageError, type OptionName, type Values } from "./args.js";
import {
  counterTable,
  duration,
  natPmpResultNames,
  endpoint,
  eventLine,
  opLine,
  out,
  persistenceState,
  printJson,
  printMapping,
  printMappings,
  printPairs,
  printTable,
} from "./output.js";
import { HA_COMMANDS, printHaHealth } from "./ha-commands.js";
import { AUTH_COMMANDS } from "./auth-commands.js";

export interface Context {
  values: Values;
  args: string[];
  json: boolean;
  call<M extends Method>(method: M, params: MethodParams<M>, fieldFlags?: Record<string, string>): Promise<Results[M]>;
  client(): Promise<ControlClient>;
}

export interface Command {
  path: string[];
  synopsis: string[];
  describe: string;
  /** Names of the positional arguments. */
  args: string[];
  options: OptionName[];
  run(ctx: Context): Promise<number>;
}

export const COMMANDS: Command[] = [
  {
    path: ["info"],
    synopsis: ["info"],
    describe: "server.info: version, uptime, workers, shards, your role",
    args: [],
    options: [],
    async run(ctx) {
      const info = await ctx.call("server.info", {});
      if (ctx.json) return (printJson(info), 0);
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
      if (ctx.json) return (printJson(health), 0);
      out(`status  ${health.status}`);
      out();
      printTable(
        ["SHARD", "UP", "PERSISTENCE"],
        health.shards.map((s) => [s.shard, s.up ? "yes" : "no", persistenceState(s.persistence)]),
      );
      if (health.ha) {
        out();
        printHaHealth(health.ha);
      }
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
      if (ctx.json) return (printJson(stats), 0);
      out(`packets  ${stats.packets}`);
      const dp = stats.dataplane;
      if (dp)
        out(
          `dataplane  ${dp.backend} ${dp.up ? "up" : "DOWN"}: ${dp.installed} installed, ${dp.pendingKeys} pending${dp.backlogBytes > 0 ? ` (${Math.ceil(dp.backlogBytes / 1024)} KiB of changes not yet decoded)` : ""}${dp.backlogOverflows ? `, ${dp.backlogOverflows} backlogs let go (resynchronised)` : ""}, ${dp.transactions} transactions, ${dp.failures} failures${dp.lastError ? ` (last: ${dp.lastError})` : ""}`,
        );
      out();
      printTable(
        ["SHARD", "EPOCH", "PACKETS", "MAPPINGS", "SUBSCRIBERS"],
        stats.shards.map((s) => [s.shard, s.epoch, s.packets, s.mappings, s.subscribers]),
      );
      if (stats.shards.some((s) => s.persistence)) {
        out();
        printTable(
          ["SHARD", "PERSISTENCE", "WRITE ERRORS", "BACKLOG BYTES", "DROPPED BYTES"],
          stats.shards.map((s) => [
            s.shard,
            persistenceState(s.persistence),
            s.persistence?.writeErrors ?? "-",
            s.persistence?.backlogBytes ?? "-",
            s.persistence?.droppedBytes ?? "-",
          ]),
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
      counterTable("nat-pmp result", natPmpResultNames(stats.natPmpResults), true);
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
      if (ctx.json) return (printJson({ mappings, next }), 0);
      if (mappings.length === 0) out("no mappings");
      else printMappings(mappings);
      // The server fills a page across shards: a cursor means the page is full (or its scan
      // budget ran out), so more may follow.
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
        result = await ctx.call(
          "mappings.get",
          defined({ internalAddress: v.internal, protocol: proto, internalPort: port, family: family(v.family), thirdPartyId: v["third-party-id"] }),
          { thirdPartyId: "--third-party-id" },
        );
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
      if (ctx.json) return (printJson(result), 0);
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
      if (ctx.json) return (printJson(result), 0);
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
      const result = await ctx.call("subscribers.usage", defined({ internalAddress: ctx.args[0], thirdPartyId: ctx.values["third-party-id"] }), {
        internalAddress: "ADDRESS",
        thirdPartyId: "--third-party-id",
      });
      if (ctx.json) return (printJson(result), 0);
      printTable(
        ["SHARD", "MAPPINGS", "BLOCKS"],
        result.shards.map((s) => [s.shard, s.mappings, s.blocks]),
      );
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
      const result = await ctx.call("subscribers.deleteMappings", defined({ internalAddress: ctx.args[0], thirdPartyId: ctx.values["third-party-id"] }), {
        internalAddress: "ADDRESS",
        thirdPartyId: "--third-party-id",
      });
      if (ctx.json) return (printJson(result), 0);
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
      if (ctx.json) return (printJson(result), 0);
      printTable(
        ["SHARD", "EPOCH"],
        result.shards.map((s) => [s.shard, s.epoch]),
      );
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
      if (ctx.json) return (printJson(result), 0);
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
      if (ctx.json) return (printJson(result), 0);
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
      if (ctx.json) return (printJson(result), 0);
      out("configuration reloaded");
      if (result.restartNeededFor.length > 0) out(`restart needed for: ${result.restartNeededFor.join(", ")}`);
      return 0;
    },
  },
  {
    path: ["events"],
    synopsis: [
      "events [--internal A] [--external A] [--protocol P] [--mapping-kind dynamic|static|held]",
      "       [--kind create|refresh|delete|expire|release|update[,...]]...",
    ],
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
      // Settled when the connection closes: quietly after Ctrl-C, as an error otherwise.
      // A refused subscription (no "events" backend, a read-only token) closes it too:
      // that rejection is the call's, so this one is marked handled first.
      const ended = new Promise<void>((resolve, reject) => {
        client.on("notification", (method: string, params: unknown) => {
          if (ctx.json) return out(JSON.stringify({ method, ...(params as object) }));
          if (method === NOTIFY_DATAPLANE_RESET)
            return out(`# reset (seq ${(params as Notifications[typeof NOTIFY_DATAPLANE_RESET]).seq}): forget every mapping`);
          if (method !== NOTIFY_DATAPLANE_OPS) return;
          const { seq, ops } = params as Notifications[typeof NOTIFY_DATAPLANE_OPS];
          out(`# transaction seq ${seq}: ${ops.length} operation${ops.length === 1 ? "" : "s"}`);
          for (const o of ops) out(opLine(o));
        });
        client.once("close", () => (stopped ? resolve() : reject(new ControlClientError("CLOSED", "the control connection closed"))));
      });
      ended.catch(() => undefined);
      await client.call("dataplane.subscribe", {});
      const stop = () => {
        stopped = true;
        void client
          .call("dataplane.unsubscribe", {})
          .catch(() => undefined)
          .finally(() => client.close());
      };
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
      await ended;
      return 0;
    },
  },
  ...HA_COMMANDS,
  ...AUTH_COMMANDS,
];

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
