// pcp-server's start-up summary: the one line an operator reads first.
import { isIPv6 } from "node:net";
import type { Logger } from "pino";
import type { Config } from "../config/schema.js";
import { CONTROL_PATH } from "../control/protocol.js";

export interface StartSummary {
  configSource: string;
  listen: { address: string; port: number }[];
  control?: { port: number; tokenFile?: string };
}

/**
 * One line with what an operator checks first; a warning when nothing programs the NAT.
 * Returns its short form for systemd's STATUS= (`systemctl status`).
 */
export function logStartSummary(log: Logger, config: Config, s: StartSummary): string {
  const c = config.control;
  const host = isIPv6(c.address) ? `[${c.address}]` : c.address;
  const summary = {
    config: s.configSource,
    listen: s.listen.map((l) => (isIPv6(l.address) ? `[${l.address}]:${l.port}` : `${l.address}:${l.port}`)),
    pool: config.pool.addresses,
    dataplane: config.dataplane.backend,
    persistence: config.persistence.enabled ? config.persistence.directory : "off",
    control: s.control ? `${c.tls ? "wss" : "ws"}://${host}:${s.control.port}${CONTROL_PATH}` : "off",
    tokenFile: s.control?.tokenFile ?? (s.control ? "(configured tokens)" : "-"),
  };
  log.info(summary, "pcp-server ready");
  if (config.dataplane.backend === "none")
    log.warn('dataplane.backend is "none": no NAT is programmed; mappings are granted but no traffic is forwarded by this host');
  return `serving PCP on ${summary.listen.join(" ")}; dataplane ${summary.dataplane}; control ${summary.control}`;
}
