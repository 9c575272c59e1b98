// auth.* configuration → one worker's PCP authenticator (PaServer over the RADIUS relay).
import type { PaSocket } from "./pa-server.js";
import type { Config } from "../config/schema.js";
import { ConfigError } from "../errors.js";
import { RadiusEapRelay } from "./eap-relay.js";
import { PaServer } from "./pa-server.js";

/** Whether any source has authentication on (required or optional). */
export function authOn(c: Config): boolean {
  const { auth } = c;
  return [auth.default, auth.thirdPartyDefault, ...auth.subscribers.map((r) => r.mode), ...auth.thirdParty.map((r) => r.mode)].some((m) => m !== "off");
}

export interface AuthHost {
  epoch: () => number;
  send: (socket: PaSocket, msg: Buffer, port: number, address: string) => void;
}

/** The worker's authenticator, or undefined when authentication is off everywhere. */
export function paServerFor(c: Config, host: AuthHost, env: NodeJS.ProcessEnv = process.env): PaServer | undefined {
  if (!authOn(c)) return undefined;
  const { auth } = c;
  const servers = auth.radius.servers.map((s, i) => {
    const secret = s.secret ?? env[s.secretEnv ?? ""];
    if (!secret) throw new ConfigError([`auth.radius.servers.${i}.secretEnv: environment variable ${s.secretEnv} is not set`]);
    return { host: s.host, port: s.port, secret };
  });
  const relay = new RadiusEapRelay({ servers, timeoutMs: auth.radius.timeoutMs, retries: auth.radius.retries, nasIdentifier: auth.radius.nasIdentifier });
  return new PaServer({
    relay,
    epoch: host.epoch,
    send: host.send,
    maxSessions: auth.maxSessions,
    sessionsPerClient: auth.sessionsPerClient,
    sessionLifetimeS: auth.sessionLifetime,
    reauthAt: auth.reauthAtPercent / 100,
    idIndicator: auth.idIndicator,
  });
}
