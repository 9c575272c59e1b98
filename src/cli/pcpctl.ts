#!/usr/bin/env node
// pcpctl: the control channel's command line (one subcommand per method of
// pcpd-control/1, src/control/protocol.ts), built on the client SDK (src/client/).
// Exit codes: 0 ok, 1 server error / connection failure / no such mapping, 2 usage error.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { parseArgs } from "node:util";
import { ControlClient, ControlClientError, ControlError, rpcErrorName } from "../client/control-client.js";
import { defaultTokenFile, defaultTokenFiles, findTokenFile, readTokenFile } from "../client/token-file.js";
import * as W from "../wire.generated.js";
import { CONTROL_PATH, RpcErrors } from "../control/protocol.js";
import { check, GLOBAL_OPTIONS, integer, OPTIONS, UsageError, type Values } from "./pcpctl/args.js";
import { COMMANDS, type Command, type Context } from "./pcpctl/commands.js";
import { out } from "./pcpctl/output.js";

// src/cli/ and dist/cli/ are both two levels below the package root.
const { version } = createRequire(import.meta.url)("../../package.json") as { version: string };
const DEFAULT_PORT = 5380;
const DEFAULT_URL = `ws://127.0.0.1:${DEFAULT_PORT}${CONTROL_PATH}`;

const GLOBAL_USAGE = `global options:
  --url URL            control channel (default ${DEFAULT_URL}; wss:// for TLS)
  --token TOKEN        bearer token (else $PCPCTL_TOKEN, else --token-file)
  --token-file FILE    file holding the token (default: the generated token of the
                       server on the URL's port, ${defaultTokenFile(DEFAULT_PORT)}${
                         process.env.XDG_RUNTIME_DIR ? `,\n                       else ${defaultTokenFiles(DEFAULT_PORT)[1]}` : ""
                       })
  --ca FILE            CA certificate (PEM) for a wss:// server
  --insecure           accept any server certificate (testing only)
  --timeout MS         connect and per-call timeout, ms (default 10000)
  --json               raw JSON output (JSON lines for events)
  -h, --help           this text
  --version            pcpctl's version`;

function fullUsage(): string {
  const commands = COMMANDS.map((c) => `${c.synopsis.map((s) => `  ${s}`).join("\n")}\n      ${c.describe}`).join("\n");
  return `usage: pcpctl [global options] <command> [options]

${GLOBAL_USAGE}

commands:
${commands}

A is an IP address; P is a protocol number or tcp, udp, dccp, sctp.
exit codes: 0 ok, 1 server error or connection failure, 2 usage error`;
}

function commandUsage(commands: Command[]): string {
  const prefix = "pcpctl [global options] ";
  const lines = commands.flatMap((c) => c.synopsis.map((s) => (s.startsWith(" ") ? " ".repeat(prefix.length) : prefix) + s));
  return `usage: ${lines.join("\n       ")}\n(pcpctl --help for everything)`;
}

function findCommand(positionals: string[]): Command | undefined {
  let best: Command | undefined;
  for (const c of COMMANDS) {
    if (c.path.every((p, i) => positionals[i] === p) && (!best || c.path.length > best.path.length)) best = c;
  }
  return best;
}

// ---- main ----

/** The token and where it came from (named when the server refuses it). */
function resolveToken(values: Values, url: string): { token: string; source: string } {
  if (values.token !== undefined) {
    if (values.token.trim() === "") throw new UsageError("--token is empty");
    return { token: values.token.trim(), source: "--token" };
  }
  const fromEnv = process.env.PCPCTL_TOKEN?.trim();
  if (fromEnv) return { token: fromEnv, source: "$PCPCTL_TOKEN" };
  const file = values["token-file"] ?? findTokenFile(urlPort(url));
  try {
    return { token: readTokenFile(file), source: `token file ${file}` };
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why = err.code === "ENOENT" ? "not found" : err.code === "EACCES" ? "permission denied" : err.message;
    throw new UsageError(`no token: give --token, PCPCTL_TOKEN or --token-file (${file}: ${why})`);
  }
}

/** The port of a control URL (the default token file is keyed by it); undefined if it is no URL. */
function urlPort(url: string): number | undefined {
  try {
    const u = new URL(url);
    return u.port ? Number(u.port) : u.protocol === "wss:" ? 443 : u.protocol === "ws:" ? 80 : undefined;
  } catch {
    return undefined;
  }
}

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (e) {
    const { positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: false });
    return usage((e as Error).message, commandsFor(positionals));
  }
  const { values, positionals } = parsed;
  const command = findCommand(positionals);
  if (values.version) {
    out(`pcpctl ${version}`);
    return 0;
  }
  if (values.help) {
    const commands = commandsFor(positionals);
    out(commands ? commandUsage(commands) : fullUsage());
    return 0;
  }
  if (positionals.length === 0) return usage("no command");
  if (!command) {
    const group = commandsFor(positionals);
    if (group && positionals.length === 1) return usage(`${positionals[0]}: which one? (${group.map((c) => c.path[1]).join(", ")})`, group);
    return usage(`unknown command: ${positionals.join(" ")}`, group);
  }
  const args = positionals.slice(command.path.length);
  if (args.length !== command.args.length) {
    const name = command.path.join(" ");
    const group = COMMANDS.filter((c) => c.path[0] === command.path[0]);
    if (args.length > 0 && command.args.length === 0 && group.length > 1) return usage(`unknown command: ${positionals.join(" ")}`, group);
    return usage(command.args.length === 0 ? `${name} takes no arguments (got ${args.join(" ")})` : `${name} needs ${command.args.join(" ")}`, [command]);
  }
  const allowed = new Set<string>([...GLOBAL_OPTIONS, ...command.options]);
  const stray = Object.keys(values).filter((k) => !allowed.has(k));
  if (stray.length > 0) return usage(`${command.path.join(" ")} does not take ${stray.map((k) => `--${k}`).join(", ")}`, [command]);

  let client: ControlClient | undefined;
  let tokenSource = "";
  const url = values.url ?? DEFAULT_URL;
  const ctx: Context = {
    values,
    args,
    json: values.json ?? false,
    async client() {
      if (client) return client;
      const { token, source } = resolveToken(values, url);
      tokenSource = source;
      let ca: Buffer | undefined;
      if (values.ca !== undefined) {
        try {
          ca = readFileSync(values.ca);
        } catch (e) {
          throw new UsageError(`--ca: cannot read ${values.ca}: ${(e as Error).message}`);
        }
      }
      const timeoutMs = integer("timeout", values.timeout);
      if (timeoutMs === 0) throw new UsageError("--timeout: must be at least 1");
      client = await ControlClient.connect(url, {
        token,
        ca,
        rejectUnauthorized: !values.insecure,
        timeoutMs,
      });
      return client;
    },
    async call(method, params, fieldFlags) {
      check(method, params, fieldFlags);
      const c = await this.client();
      return c.call(method, params);
    },
  };
  try {
    return await command.run(ctx);
  } catch (e) {
    if (e instanceof UsageError) return usage(e.message, [command]);
    if (e instanceof ControlError) {
      const name = e.codeName ?? rpcErrorName(e.code);
      const data = e.data === undefined ? "" : ` (${describeData(e)})`;
      // A role too weak for the method: say whose token it was.
      const whose = e.code === RpcErrors.FORBIDDEN && tokenSource ? ` (the token from ${tokenSource})` : "";
      process.stderr.write(`pcpctl: server error ${e.code}${name ? ` ${name}` : ""}: ${e.message}${data}${whose}\n`);
      return 1;
    }
    if (e instanceof ControlClientError) {
      // A refused token: name where it came from (a stale file of another instance, say).
      const whose = e.code === "UNAUTHORIZED" && tokenSource ? `; the token came from ${tokenSource}` : "";
      process.stderr.write(`pcpctl: ${e.message}${whose}\n`);
      return 1;
    }
    throw e;
  } finally {
    await client?.close();
  }
}

/** An error's data; a REFUSED error's PCP result code also by name. */
function describeData(e: ControlError): string {
  const result = typeof e.data === "number" ? e.data : (e.data as { result?: unknown } | null)?.result;
  if (e.code === RpcErrors.REFUSED && typeof result === "number") {
    const name = Object.entries(W).find(([k, v]) => k.startsWith("RESULT_") && k !== "RESULT_CODE_LIMIT" && v === result)?.[0];
    return `PCP result ${result}${name ? ` ${name.slice("RESULT_".length)}` : ""}`;
  }
  return `data: ${JSON.stringify(e.data)}`;
}

/** Prints the problem and the usage of `commands` (all of them when none is known); exit code 2. */
function usage(message: string, commands?: Command[]): number {
  process.stderr.write(`pcpctl: ${message}\n${commands ? commandUsage(commands) : fullUsage()}\n`);
  return 2;
}

/** The command named by `positionals`, else the commands of the group its first word names. */
function commandsFor(positionals: string[]): Command[] | undefined {
  const command = findCommand(positionals);
  if (command) return [command];
  const group = COMMANDS.filter((c) => c.path[0] === positionals[0]);
  return group.length > 0 ? group : undefined;
}

// A closed stdout (`pcpctl events | head`) ends the command quietly.
process.stdout.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code === "EPIPE") process.exit(0);
  throw e;
});

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // Everything is closed by now; this only guards against a handle left open.
    setTimeout(() => process.exit(code), 2000).unref();
  },
  (e) => {
    // Not an expected failure (those are reported above): the message, and the stack
    // only when asked for (PCPCTL_DEBUG=1).
    const debug = process.env.PCPCTL_DEBUG === "1" && e instanceof Error;
    process.stderr.write(`pcpctl: ${e instanceof Error ? (debug ? e.stack : e.message) : String(e)}\n`);
    process.exit(1);
  },
);
