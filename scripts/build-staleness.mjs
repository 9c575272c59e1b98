// Is the build current? `npm start` (scripts/start.mjs) builds only when it is not.
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

// What `npm run build` makes, and what it makes it from.
export const OUTPUTS = ["dist/cli/pcp-server.js", "build/debug.wasm", "build/release.wasm"];
export const INPUTS = ["src", "assembly", "scripts/gen-wire.mjs", "tsconfig.json", "asconfig.json"];

function newest(path) {
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  let t = st.mtimeMs; // a deleted file changes its directory
  for (const e of readdirSync(path)) t = Math.max(t, newest(join(path, e)));
  return t;
}

/** Why the build under `root` is stale (an output missing, an input newer), or undefined when it is current. */
export function staleness(root) {
  const missing = OUTPUTS.find((o) => !existsSync(join(root, o)));
  if (missing) return `${missing} is missing`;
  const built = Math.min(...OUTPUTS.map((o) => statSync(join(root, o)).mtimeMs));
  const changed = INPUTS.find((i) => existsSync(join(root, i)) && newest(join(root, i)) > built);
  return changed ? `${changed} changed since the last build` : undefined;
}
