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

export interface Loaded {
  config: Config;
  /** Top-level sections the file sets (what a reload must still set). */
  sections: string[];
}

/** At start: no file means the embedded defaults; a file may set any part. */
export function loadFile(path: string | undefined, overrides: Overrides = {}): Loaded {
  return fromDocument((path ? readDocument(path) : {}) ?? {}, overrides);
}

function fromDocument(document: unknown, overrides: Overrides): Loaded {
  if (typeof document !== "object" || Array.isArray(document)) throw new ConfigError(["(document): must be a mapping of settings"]);
  const d = structuredClone(document) as Record<string, Record<string, unknown>>;
  const sections = Object.keys(d);
  if (overrides.listen || overrides.port !== undefined) {
    d.listen = {
      ...(d.listen ?? {}),
      ...(overrides.listen ? { addresses: overrides.listen } : {}),
      ...(overrides.port !== undefined ? { port: overrides.port } : {}),
    };
  }
  if (overrides.logLevel) d.log = { ...(d.log ?? {}), level: overrides.logLevel };
  return { config: parseConfig(d), sections };
}

export function loadConfig(path: string | undefined, overrides: Overrides = {}): Config {
  return loadFile(path, overrides).config;
}

/**
 * On reload (SIGHUP, config.reload) the file must be a complete configuration: readable,
 * a non-empty mapping, still setting every top-level section the configuration in force
 * was loaded with (`inForce`; write a section as `{}` to return it to its defaults), and
 * valid as a whole. An empty, emptied or truncated file would otherwise read as "defaults"
 * for whatever it lost: a renumbering to the documentation pool, an Epoch reset.
 */
export function loadReload(path: string | undefined, overrides: Overrides, inForce: string[]): Loaded {
  if (!path) return loadFile(undefined, overrides); // started on the embedded defaults: nothing to re-read
  const document = readDocument(path);
  if (document === null || document === undefined || (typeof document === "object" && !Array.isArray(document) && Object.keys(document).length === 0)) {
    throw new ConfigError([`${path}: empty: a reload needs the complete configuration (the running one stays)`]);
  }
  const loaded = fromDocument(document, overrides);
  const lost = inForce.filter((k) => !loaded.sections.includes(k));
  if (lost.length > 0) {
    throw new ConfigError([
      `${path}: ${lost.join(", ")} missing (the running configuration sets ${lost.length === 1 ? "it" : "them"}; a truncated file?): write a section as {} to return it to its defaults`,
    ]);
  }
  return loaded;
}
