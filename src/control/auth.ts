// Bearer tokens of the control channel: the configured ones (inline or from the
// environment), else one generated admin token written to a file only its owner can read.
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { Config } from "../config/schema.js";
import { ErrorCodes, PcpdError } from "../errors.js";
import type { Role } from "./protocol.js";

const digest = (s: string) => createHash("sha256").update(s).digest();

export interface Auth {
  /** The role an Authorization header grants; undefined: refused (401). */
  roleOf(header: string): Role | undefined;
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
  return {
    generated,
    /** Constant-time: every configured token is compared, by digest (equal lengths). */
    roleOf(header) {
      const m = /^Bearer (\S+)$/i.exec(header);
      if (!m) return undefined;
      const h = digest(m[1]);
      let role: Role | undefined;
      for (const t of tokens) if (timingSafeEqual(h, t.hash) && role !== "admin") role = t.role;
      return role;
    },
  };
}
