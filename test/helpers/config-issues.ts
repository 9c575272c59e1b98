// The issue lines parseConfig refuses a document with (none: it was accepted).
import { ConfigError } from "../../src/errors.js";
import { parseConfig } from "../../src/config/schema.js";

export function configIssues(document: unknown): string[] {
  try {
    parseConfig(document);
  } catch (e) {
    if (e instanceof ConfigError) return e.issues;
    throw e;
  }
  return [];
}
