#!/usr/bin/env node
// pcp-server: starts the PCP / NAT-PMP server (HELP below lists every flag).
// FILE (JSON or YAML) may also come from PCPD_CONFIG. With no file the embedded defaults
// serve on loopback with a documentation-range pool. SIGTERM/SIGINT stop it cleanly;
// SIGHUP re-reads FILE and applies what can change without a restart, once the whole file
// has been validated (a complete configuration whose pool the engine can take; else refused).
import { parseArgs } from "node:util";
import { loadFile, loadReload } from "../config/load.js";
import { PcpdError } from "../errors.js";
import { startServer } from "../server/server.js";
import { testClockFromEnv } from "../core/clock.js";
import { startControl } from "../control/server.js";
import { createRequire } from "node:module";
import { logStartSummary } from "./server-log.js";
import { createLogger, resolveLogFormat } from "../core/logger.js";
import { systemdNotifier } from "./sd-notify.js";

// src/cli/ and dist/cli/ are both two levels below the package root.
const { version } = createRequire(import.meta.url)("../../package.json") as { version: string };

const USAGE = "usage: pcp-server [--config FILE] [--listen ADDRESS]... [--port N] [--log-level LEVEL] [--log-format pretty|json]";
const HELP = `${USAGE}

PCP (RFC 6887) and NAT-PMP (RFC 6886) server.

options:
  -c, --config FILE        configuration file, JSON or YAML (default: $PCPD_CONFIG, else the embedded defaults)
  -l, --listen ADDRESS     address to serve PCP and NAT-PMP on; repeat for more (replaces listen.addresses)
  -p, --port N             UDP port to serve on (replaces listen.port; default 5351)
      --log-level LEVEL    fatal, error, warn, info, debug, trace or silent (replaces log.level)
      --log-format FORMAT  pretty (human-readable) or json (replaces log.format; default: pretty on a terminal)
  -h, --help               this text
  -V, --version            the version

signals: SIGTERM, SIGINT stop cleanly; SIGHUP re-reads FILE.
exit codes: 0 stopped cleanly, 1 failed while running, 2 bad command line or configuration.
control: pcpctl (pcpctl --help); configuration reference: README.md, example: packaging/pcpd.example.yaml`;

async function main(): Promise<number> {
  let args;
  try {
    args = parseArgs({
      options: {
        config: { type: "string", short: "c" },
        listen: { type: "string", multiple: true, short: "l" },
        port: { type: "string", short: "p" },
        "log-level": { type: "string" },
        "log-format": { type: "string" },
        help: { type: "boolean", short: "h" },
        version: { type: "boolean", short: "V" },
      },
      strict: true,
    }).values;
  } catch (e) {
    console.error(`${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (args.help) {
    console.log(HELP);
    return 0;
  }
  if (args.version) {
    console.log(`pcp-server ${version}`);
    return 0;
  }
  const logFormat = args["log-format"];
  if (logFormat !== undefined && logFormat !== "pretty" && logFormat !== "json") {
    console.error(`--log-format: pretty or json, not ${logFormat}\n${USAGE}`);
    return 2;
  }
  const port = args.port === undefined ? undefined : Number(args.port);
  if (port !== undefined && !Number.isInteger(port)) {
    console.error(`--port: not a number: ${args.port}\n${USAGE}`);
    return 2;
  }
  let config;
  let sections: string[];
  try {
    ({ config, sections } = loadFile(args.config ?? process.env.PCPD_CONFIG, { listen: args.listen, port, logLevel: args["log-level"] }));
  } catch (e) {
    if (e instanceof PcpdError) {
      console.error(e.message);
      return 2;
    }
    throw e;
  }
  let testClock;
  try {
    testClock = testClockFromEnv(process.env.PCPD_TEST_CLOCK); // tests only (src/core/clock.ts)
  } catch (e) {
    console.error((e as Error).message);
    return 2;
  }
  // Decided here, once, for the shard workers too (a worker's stdout is never a terminal).
  config.log.format = resolveLogFormat(logFormat ?? config.log.format);
  const log = createLogger(config.log.level, config.log.format, { service: "pcp-server" });
  const notifier = systemdNotifier();
  const notify = async (state: string) => {
    const problem = await notifier?.notify(state);
    if (problem) log.warn({ problem }, "systemd notification not sent");
  };
  if (notifier && notifier.via !== "addon") log.warn({ via: notifier.via }, "systemd notifications go through systemd-notify: the unit needs NotifyAccess=all");
  await notify("STATUS=starting");
  if (testClock)
    log.warn(
      { aheadSeconds: testClock.aheadSeconds },
      "test clock on (PCPD_TEST_CLOCK): engine, Epoch and wall-clock times run ahead of the system's; never in production",
    );
  // Signals are taken from the start: a SIGTERM during start-up stops the server once it
  // is up; a SIGHUP before the shards run is ignored (the file is being read anyway).
  let reloadConfig: (() => Promise<string[]>) | undefined;
  const stopped = new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info({ signal }, "stopping");
      resolve();
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
  });
  process.on("SIGHUP", () => {
    // A bad file on reload leaves the running configuration in force.
    const refused = (e: unknown) => log.error({ error: (e as Error).message }, "configuration reload refused");
    if (!reloadConfig) return log.warn("SIGHUP during start-up ignored");
    try {
      reloadConfig().catch(refused);
    } catch (e) {
      refused(e);
    }
  });
  // A shard that cannot be restarted leaves its subscribers unserved: exit so the service
  // manager restarts the whole daemon.
  const server = await startServer(config, log, () => process.exit(1), { testClock });
  const configPath = args.config ?? process.env.PCPD_CONFIG;
  const overrides = { listen: args.listen, port, logLevel: args["log-level"] };
  // Refused unless the file is a complete configuration (loadReload) and its pool can be
  // applied as a whole (server.reload checks before changing anything).
  const reload = async () => {
    const next = loadReload(configPath, overrides, sections);
    const restart = await server.reload(next.config);
    sections = next.sections;
    return restart;
  };
  reloadConfig = reload;
  let control;
  if (config.control.enabled) {
    try {
      control = await startControl({ config: config.control, server, log, version, reloadConfig: reload });
    } catch (e) {
      log.fatal({ error: (e as Error).message }, "control channel not started");
      await server.stop();
      return 1;
    }
  }
  const status = logStartSummary(log, config, {
    configSource: configPath ? `file ${configPath}` : "embedded defaults",
    listen: server.addresses,
    control: control && { port: control.port, tokenFile: control.tokenFile },
  });
  await notify(`READY=1\nSTATUS=${status}`);
  const stopWatchdog = notifier?.watchdog((problem) => log.warn({ problem }, "systemd watchdog notification not sent"));
  await stopped;
  stopWatchdog?.();
  await notify("STOPPING=1\nSTATUS=stopping");
  await control?.stop();
  await server.stop();
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  },
);
