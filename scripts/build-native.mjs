#!/usr/bin/env node
// Builds the batched UDP addon (native/udp_batch.c → native/build/Release/udp_batch.node)
// with npm's own node-gyp against the Node headers already installed — never downloaded
// (no network needed): the headers are found next to the running node (`process.execPath`
// → <prefix>/include/node/node_api.h, e.g. /usr on Debian's nodejs package, or the
// prefix of an official tarball) or where process.config says node was installed.
// Run by `npm install`/`npm ci` (the install script) and by scripts/test-deps.sh.
// A failed build (no compiler, no headers, another OS) never fails the install: the server
// then runs on the dgram path and says so at start (docs/io.md).
// Flags: --if-missing (do nothing when the addon is there and newer than every file of
// native/: an addon built before a source changed — a new export — is rebuilt), --quiet.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const native = join(root, "native");
const addon = join(native, "build", "Release", "udp_batch.node");
const quiet = process.argv.includes("--quiet");
const say = (m) => console.error(`build-native: ${m}`);

const current = () => {
  const built = statSync(addon).mtimeMs;
  return readdirSync(native)
    .filter((f) => /\.(c|h|gyp)$/.test(f))
    .every((f) => statSync(join(native, f)).mtimeMs <= built);
};
if (process.argv.includes("--if-missing") && existsSync(addon) && current()) process.exit(0);

/** The install prefix whose include/node holds node_api.h, or undefined. */
export function nodeDir() {
  const candidates = [resolve(dirname(process.execPath), ".."), process.config?.variables?.node_prefix, "/usr", "/usr/local"];
  return candidates.find((p) => typeof p === "string" && existsSync(join(p, "include", "node", "node_api.h")));
}

/** npm's bundled node-gyp (next to the npm running this, or the one beside node). */
function nodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp,
    process.env.npm_execpath && join(dirname(process.env.npm_execpath), "..", "node_modules", "node-gyp", "bin", "node-gyp.js"),
    join(dirname(process.execPath), "..", "lib", "node_modules", "npm", "node_modules", "node-gyp", "bin", "node-gyp.js"),
  ];
  return candidates.find((p) => p && existsSync(p));
}

function main() {
  if (process.platform !== "linux") return say(`not built: recvmmsg/sendmmsg are Linux only (${process.platform}); the server uses the dgram path`);
  const dir = nodeDir();
  if (!dir)
    return say(
      "not built: no Node headers (include/node/node_api.h) beside node; install them (Debian: libnode-dev or nodejs from nodesource); the server uses the dgram path",
    );
  const gyp = nodeGyp();
  if (!gyp) return say("not built: npm's node-gyp not found; the server uses the dgram path");
  const r = spawnSync(process.execPath, [gyp, "rebuild", `--nodedir=${dir}`, "--loglevel=warn"], { cwd: native, encoding: "utf8" });
  if (r.status === 0 && existsSync(addon)) {
    if (!quiet) say(`built ${addon} (headers: ${dir}/include/node)`);
    return;
  }
  say(`not built (exit ${r.status}): the server uses the dgram path. Needs a C compiler, make and python3 (Debian: build-essential python3).`);
  if (!quiet) console.error((r.stderr || r.error?.message || "").split("\n").slice(-15).join("\n"));
}

main();
process.exit(0);
