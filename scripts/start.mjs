#!/usr/bin/env node
// `npm start [-- pcp-server flags]`: builds only when the build is missing or older than
// its sources, then runs pcp-server in this very process. No shell and no child process
// stand between npm and the server, so the SIGTERM or SIGINT npm forwards (a service
// manager, Ctrl-C) reaches the server itself, which stops cleanly and frees its ports
// and lock.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
// What `npm run build` makes, and what it makes it from.
const OUTPUTS = ["dist/cli/pcp-server.js", "build/debug.wasm", "build/release.wasm"];
const INPUTS = ["src", "assembly", "scripts/gen-wire.mjs", "tsconfig.json", "asconfig.json"];

function newest(path) {
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  let t = st.mtimeMs; // a deleted file changes its directory
  for (const e of readdirSync(path)) t = Math.max(t, newest(join(path, e)));
  return t;
}

/** Why a build is needed, or undefined when the build is current. */
export function staleness() {
  const missing = OUTPUTS.find((o) => !existsSync(join(root, o)));
  if (missing) return `${missing} is missing`;
  const built = Math.min(...OUTPUTS.map((o) => statSync(join(root, o)).mtimeMs));
  const changed = INPUTS.find((i) => existsSync(join(root, i)) && newest(join(root, i)) > built);
  return changed ? `${changed} changed since the last build` : undefined;
}

const why = staleness();
if (why) {
  process.stderr.write(`npm start: building (${why})\n`);
  const npm = process.env.npm_execpath;
  const build = npm ? spawnSync(process.execPath, [npm, "run", "build"], { cwd: root, stdio: "inherit" }) : spawnSync("npm", ["run", "build"], { cwd: root, stdio: "inherit" });
  if (build.status !== 0) {
    process.stderr.write("npm start: the build failed; not starting\n");
    process.exit(build.status ?? 1);
  }
}
await import(new URL("../dist/cli/pcp-server.js", import.meta.url).href);
