// Is the build current? `npm start` (scripts/start.mjs) builds only when it is not.
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

// What `npm run build` makes, each from what: the TypeScript (with the wire mirror that
// gen:wire derives from assembly/), and the two WASM builds.
export const TARGETS = [
  { outputs: ["dist/cli/pcp-server.js"], inputs: ["src", "assembly", "scripts/gen-wire.mjs", "tsconfig.json"] },
  { outputs: ["build/debug.wasm", "build/release.wasm"], inputs: ["assembly", "asconfig.json"] },
];

function newest(path) {
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  let t = st.mtimeMs; // a deleted file changes its directory
  for (const e of readdirSync(path)) t = Math.max(t, newest(join(path, e)));
  return t;
}

/** Why the build under `root` is stale (an output missing, an input newer), or undefined when it is current. */
export function staleness(root) {
  for (const { outputs, inputs } of TARGETS) {
    const missing = outputs.find((o) => !existsSync(join(root, o)));
    if (missing) return `${missing} is missing`;
    const built = Math.min(...outputs.map((o) => statSync(join(root, o)).mtimeMs));
    const changed = inputs.find((i) => existsSync(join(root, i)) && newest(join(root, i)) > built);
    if (changed) return `${changed} changed since ${outputs.join(" and ")} was built`;
  }
  return undefined;
}
