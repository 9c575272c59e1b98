// pcpctl's arguments: the option table, the parsers of option values, and the check of a
// method's params against the protocol's schema before anything is sent.
import type { parseArgs } from "node:util";
import type { z } from "zod";
import type { EventKind, MethodParams } from "../../client/control-client.js";
import { Params, type Method } from "../../control/protocol.js";

export const MAPPING_KINDS = ["dynamic", "static", "held"] as const;
export const EVENT_KINDS: readonly EventKind[] = ["create", "refresh", "delete", "expire", "release", "update"];
export const PROTOCOL_NAMES: Record<string, number> = { tcp: 6, udp: 17, dccp: 33, sctp: 132 };

export const OPTIONS = {
  url: { type: "string" },
  token: { type: "string" },
  "token-file": { type: "string" },
  ca: { type: "string" },
  insecure: { type: "boolean" },
  timeout: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean" },
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
  to: { type: "string" },
  server: { type: "string" },
  user: { type: "string" },
  password: { type: "string" },
  "server-name": { type: "string" },
  bind: { type: "string" },
} as const;
export type OptionName = keyof typeof OPTIONS;
export type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true; strict: true }>>["values"];
export const GLOBAL_OPTIONS: OptionName[] = ["url", "token", "token-file", "ca", "insecure", "timeout", "json", "help", "version"];

/** A mistake in the command line: printed with the usage, exit code 2. */
export class UsageError extends Error {}

export function integer(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) throw new UsageError(`--${name}: not a non-negative integer: ${value}`);
  return Number(value);
}

export function protocol(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const named = PROTOCOL_NAMES[value.toLowerCase()];
  if (named !== undefined) return named;
  if (!/^\d+$/.test(value)) throw new UsageError(`--protocol: not a protocol number or tcp, udp, dccp, sctp: ${value}`);
  return Number(value);
}

export function family(value: string | undefined): 4 | 6 | undefined {
  if (value === undefined) return undefined;
  if (value === "4" || value === "6") return Number(value) as 4 | 6;
  throw new UsageError(`--family: 4 or 6, not ${value}`);
}

export function mappingKind(name: string, value: string | undefined): (typeof MAPPING_KINDS)[number] | undefined {
  if (value === undefined) return undefined;
  if ((MAPPING_KINDS as readonly string[]).includes(value)) return value as (typeof MAPPING_KINDS)[number];
  const hint = (EVENT_KINDS as readonly string[]).includes(value) ? " (event kinds go to `events --kind`)" : "";
  throw new UsageError(`--${name}: one of ${MAPPING_KINDS.join(", ")}, not ${value}${hint}`);
}

export function eventKinds(values: string[] | undefined): EventKind[] | undefined {
  if (values === undefined) return undefined;
  const kinds = values
    .flatMap((v) => v.split(","))
    .map((k) => k.trim())
    .filter((k) => k !== "");
  for (const k of kinds) {
    if (!(EVENT_KINDS as readonly string[]).includes(k)) {
      const hint = (MAPPING_KINDS as readonly string[]).includes(k) ? " (use --mapping-kind for dynamic, static, held)" : "";
      throw new UsageError(`--kind: one of ${EVENT_KINDS.join(", ")}, not ${k}${hint}`);
    }
  }
  return [...new Set(kinds)] as EventKind[];
}

export function required<T>(name: string, value: T | undefined): T {
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
export function check<M extends Method>(method: M, params: MethodParams<M>, fieldFlags: Record<string, string> = {}): void {
  const result = (Params[method] as z.ZodType).safeParse(params);
  if (result.success) return;
  const problems = flattenIssues(result.error.issues).map((issue) => {
    const field = [...issue.path].reverse().find((p) => typeof p === "string") as string | undefined;
    const flag = field === undefined ? undefined : (fieldFlags[field] ?? FIELD_FLAGS[field] ?? field);
    return flag ? `${flag}: ${issue.message}` : issue.message;
  });
  throw new UsageError([...new Set(problems)].join("; "));
}

export function flattenIssues(issues: readonly z.core.$ZodIssue[]): z.core.$ZodIssue[] {
  return issues.flatMap((issue) => {
    if (issue.code === "invalid_union" && issue.errors.length > 0) {
      // The branch that came closest.
      const best = [...issue.errors].sort((a, b) => a.length - b.length)[0];
      return flattenIssues(best);
    }
    return [issue];
  });
}

export function defined<T extends Record<string, unknown>>(o: T): { [K in keyof T]: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as { [K in keyof T]: Exclude<T[K], undefined> };
}
