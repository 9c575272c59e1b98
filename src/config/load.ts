// Where the configuration comes from: a JSON or YAML file (--config or PCPD_CONFIG), then
// command-line overrides; the embedded defaults fill the rest.
import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { ConfigError } from "../errors.js";
import { parseConfig, type Config } from "./schema.js";

export interface Overrides {
  listen?: string[];
  port?: number;
  logLevel?: string;
}

export function readDocument(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new ConfigError([`${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`]);
  }
  try {
    return path.endsWith(".json") ? JSON.parse(text) : parseYaml(text);
  } catch (e) {
    throw new ConfigError([`${path}: not valid ${path.endsWith(".json") ? "JSON" : "YAML"}: ${(e as Error).message}`]);
  }
}

export function loadConfig(path: string | undefined, overrides: Overrides = {}): Config {
  const document = (path ? readDocument(path) : {}) ?? {};
  if (typeof document !== "object" || Array.isArray(document)) throw new ConfigError(["(document): must be a mapping of settings"]);
  const d = structuredClone(document) as Record<string, Record<string, unknown>>;
  if (overrides.listen || overrides.port !== undefined) {
    d.listen = { ...(d.listen ?? {}), ...(overrides.listen ? { addresses: overrides.listen } : {}), ...(overrides.port !== undefined ? { port: overrides.port } : {}) };
  }
  if (overrides.logLevel) d.log = { ...(d.log ?? {}), level: overrides.logLevel };
  return parseConfig(d);
}
