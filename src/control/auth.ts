// Bearer tokens of the control channel: the configured ones (inline or from the
// environment), else one generated admin token written to a file only its owner can read.
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { Config } from "../config/schema.js";
import { ErrorCodes, PcpdError } from "../errors.js";
import type { Role } from "./protocol.js";

const digest = (s: string) => createHash("sha256").update(s).digest();

/**
 * WebSocket subprotocol of the channel, and the prefix of the one that carries a token:
 * a browser cannot set an Authorization header on a WebSocket, so the dashboard offers
 * `pcpd-bearer.<token, base64url>` with `pcpd-control`; the server answers `pcpd-control`
 * and never echoes the token.
 */
export const SUBPROTOCOL = "pcpd-control";
export const BEARER_SUBPROTOCOL = "pcpd-bearer.";

export interface Auth {
  /** The role an Authorization header grants; undefined: refused (401). */
  roleOf(header: string): Role | undefined;
  /**
   * The role of a WebSocket upgrade: the Authorization header, else a token in the
   * subprotocols, else control.anonymousRole when neither carries one (a wrong token is
   * refused, never taken as anonymous).
   */
  roleOfUpgrade(authorization: string, subprotocols: string): Role | undefined;
  /** The generated admin token, when no token was configured (written to a file once the port is known). */
  generated?: string;
}

export function loadTokens(c: Config["control"]): Auth {
  const tokens: { hash: Buffer; role: Role }[] = [];
  for (const t of c.tokens) {
    const value = t.token ?? process.env[t.tokenEnv!];
    if (!value || value.length < 16)
      throw new PcpdError(ErrorCodes.TOKEN_UNSET, `control.tokens: environment variable ${t.tokenEnv} is unset or shorter than 16 characters`);
    tokens.push({ hash: digest(value), role: t.role });
  }
  let generated: string | undefined;
  if (tokens.length === 0) {
    generated = randomBytes(32).toString("base64url");
    tokens.push({ hash: digest(generated), role: "admin" });
  }
  /** Constant-time: every configured token is compared, by digest (equal lengths). */
  const roleOfToken = (token: string) => {
    const h = digest(token);
    let role: Role | undefined;
    for (const t of tokens) if (timingSafeEqual(h, t.hash) && role !== "admin") role = t.role;
    return role;
  };
  const anonymous = c.anonymousRole === "read" ? ("read" as const) : undefined;
  return {
    generated,
    roleOf(header) {
      const m = /^Bearer (\S+)$/i.exec(header);
      return m ? roleOfToken(m[1]) : undefined;
    },
    roleOfUpgrade(authorization, subprotocols) {
      if (authorization !== "") return this.roleOf(authorization);
      const offered = subprotocols.split(",").map((p) => p.trim());
      const carried = offered.find((p) => p.startsWith(BEARER_SUBPROTOCOL));
      if (carried === undefined) return anonymous;
      const token = Buffer.from(carried.slice(BEARER_SUBPROTOCOL.length), "base64url").toString("utf8");
      return token === "" ? undefined : roleOfToken(token);
    },
  };
}
