#!/usr/bin/env node
// `npm start [-- pcp-server flags]`: builds only when the build is missing or older than
// its sources, then runs pcp-server in this very process. The package.json script is
// `exec node scripts/start.mjs`: the shell npm runs it with replaces itself, so no shell
// and no child process stand between npm and the server, and the SIGTERM or SIGINT npm
// forwards (a service manager, Ctrl-C) reaches the server itself, which stops cleanly and
// frees its ports and lock (a shell in between died and left the server running).
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { staleness } from "./build-staleness.mjs";

const root = fileURLToPath(new URL("..", import.meta.url));
const why = staleness(root);
if (why) {
  process.stderr.write(`npm start: building (${why})\n`);
  const npm = process.env.npm_execpath;
  const build = npm
    ? spawnSync(process.execPath, [npm, "run", "build"], { cwd: root, stdio: "inherit" })
    : spawnSync("npm", ["run", "build"], { cwd: root, stdio: "inherit" });
  if (build.status !== 0) {
    process.stderr.write("npm start: the build failed; not starting\n");
    process.exit(build.status ?? 1);
  }
}
await import(new URL("../dist/cli/pcp-server.js", import.meta.url).href);
