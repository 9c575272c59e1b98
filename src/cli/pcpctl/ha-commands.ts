// pcpctl's high-availability commands (docs/ha.md): ha.status as tables (one row per
// group, then one per shard of each group), ha.switchover of one group.
import type { HaGroupStatus, HaStatus, HaTakeover } from "../../ha/types.js";
import type { HaHealth } from "../../control/protocol.js";
import { check, defined } from "./args.js";
import type { Command } from "./commands.js";
import { out, printJson, printPairs, printTable } from "./output.js";

/** pcpctl's wait for ha.switchover without --timeout: above the server's own wait for a new holder (30 s). */
const SWITCHOVER_WAIT_MS = 45_000;

/** A duration: ms below a second ("40ms"), seconds with two decimals below a minute ("1.25s"), else whole seconds. */
export function seconds(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  return ms < 60_000 ? `${(ms / 1000).toFixed(2)}s` : `${Math.round(ms / 1000)}s`;
}

/** "2026-12-04T17:00:00.000Z pcpd-2 -> pcpd-1 (lapsed, 0.85s, Epoch continued)" */
export function takeoverText(t: HaTakeover | undefined): string {
  if (!t) return "-";
  return `${t.at} ${t.from ?? "(none)"} -> ${t.to} (${t.reason}, ${seconds(t.durationMs)}, Epoch ${t.epochContinued ? "continued" : "reset"})`;
}

const serving = (g: HaGroupStatus) => g.role === "active" || g.role === "degraded";

export function printHaStatus(s: HaStatus): void {
  printPairs([
    ["node", s.node],
    ["cluster", s.cluster],
    ["nats", s.natsServer ? `${s.nats} (server ${s.natsServer})` : s.nats],
  ]);
  if (s.groups.length === 0) return;
  out();
  printTable(
    ["GROUP", "ROLE", "HOLDER", "TERM", "LEASE LEFT", "LAG", "LAST TAKEOVER"],
    s.groups.map((g) => [
      g.name,
      g.role,
      g.holder ?? "(none)",
      g.term,
      serving(g) ? seconds(g.leaseRemainingMs) : "-",
      seconds(g.lagMs),
      takeoverText(g.lastTakeover),
    ]),
  );
  out();
  printTable(
    ["GROUP", "SHARD", "ROLE", "SEQ", "LAST SEQ", "LAG", "RECORDS", "COMPLETE", "PENDING BYTES", "GATE DROPS", "ERROR"],
    s.groups.flatMap((g) =>
      g.replication.map((r) => [
        g.name,
        r.shard,
        r.role,
        r.seq,
        r.lastSeq,
        seconds(r.lagMs),
        r.records,
        r.complete ? "yes" : "no",
        r.pendingBytes,
        r.gateDrops,
        r.error ?? "-",
      ]),
    ),
  );
}

/** The HA part of `pcpctl health`. */
export function printHaHealth(h: HaHealth): void {
  out(`ha nats  ${h.nats}`);
  for (const p of h.problems) out(`problem  ${p}`);
  if (h.groups.length === 0) return;
  out();
  printTable(
    ["GROUP", "ROLE", "HOLDER"],
    h.groups.map((g) => [g.name, g.role, g.holder ?? "(none)"]),
  );
}

export const HA_COMMANDS: Command[] = [
  {
    path: ["ha", "status"],
    synopsis: ["ha status"],
    describe: "ha.status: each group's role here, lease holder and term, lease left, lag, last takeover; then each shard's replication",
    args: [],
    options: [],
    async run(ctx) {
      const status = await ctx.call("ha.status", {});
      if (ctx.json) return (printJson(status), 0);
      printHaStatus(status);
      return 0;
    },
  },
  {
    path: ["ha", "switchover"],
    synopsis: ["ha switchover GROUP [--to NODE]"],
    describe:
      "ha.switchover (admin; on the group's active): hands the group to NODE (default: the first standby ready), no request lost; waits up to 45 s unless --timeout",
    args: ["GROUP"],
    options: ["to"],
    async run(ctx) {
      const params = defined({ group: ctx.args[0], to: ctx.values.to });
      check("ha.switchover", params, { group: "GROUP", to: "--to" });
      // The server waits up to 30 s for another node to take the group: without --timeout,
      // wait longer than that rather than give up on a switchover still under way.
      const timeoutMs = ctx.values.timeout === undefined ? SWITCHOVER_WAIT_MS : undefined;
      const result = await (await ctx.client()).call("ha.switchover", params, { timeoutMs });
      if (ctx.json) return (printJson(result), 0);
      out(`group ${result.group}: switched over from ${result.from} to ${result.to} in ${seconds(result.durationMs)}`);
      return 0;
    },
  },
];
