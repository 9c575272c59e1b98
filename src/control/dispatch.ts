// One request frame in, one response out: envelope checks, role, params validation
// (zod, unknown keys refused), the method's handler, and the JSON-RPC error of whatever
// it throws. Every error code sent is in RpcErrors (protocol.ts) and docs/errors.md.
import type { Logger } from "pino";
import { ErrorCodes, HaError, PcpdError, RpcError, ShardUnavailableError } from "../errors.js";
import type { Handlers } from "./methods/context.js";
import { ADMIN_METHODS, Params, RpcErrors, type Method, type RpcErrorCode, type RpcFailure, type RpcSuccess } from "./protocol.js";
import type { Session } from "./session.js";

export const failure = (id: RpcFailure["id"], code: RpcErrorCode, message: string, data?: unknown): RpcFailure => ({
  jsonrpc: "2.0",
  id,
  error: data === undefined ? { code, message } : { code, message, data },
});

/**
 * The JSON-RPC error a server error becomes when it escapes a method; undefined: an
 * unexpected failure (INTERNAL_ERROR, logged).
 */
export function rpcCodeOf(e: unknown): RpcErrorCode | undefined {
  if (e instanceof RpcError) return e.rpcCode;
  if (!(e instanceof PcpdError)) return undefined;
  switch (e.code) {
    case ErrorCodes.SHARD_RESETTING:
    case ErrorCodes.SERVER_STOPPING:
    case ErrorCodes.SHARD_LOST:
      return RpcErrors.UNAVAILABLE;
    case ErrorCodes.BAD_CONFIG:
      return RpcErrors.CONFIG_REJECTED;
    // ha.switchover: a group not configured (the control layer checks first); the operator
    // asked a node that does not serve the group; or the handover itself failed.
    case ErrorCodes.HA_UNKNOWN_GROUP:
      return RpcErrors.INVALID_PARAMS;
    case ErrorCodes.HA_NOT_ACTIVE:
      return RpcErrors.NOT_ACTIVE;
    case ErrorCodes.HA_SWITCHOVER_FAILED:
      return RpcErrors.SWITCHOVER_FAILED;
    default:
      return undefined;
  }
}

/** An error's `data`: an RpcError's own; else the server's error code (and the shard or HA group it names). */
function errorData(e: PcpdError): unknown {
  if (e instanceof RpcError) return e.data;
  if (e instanceof HaError) return { error: e.code, group: e.group };
  return e instanceof ShardUnavailableError ? { error: e.code, shard: e.shard } : { error: e.code };
}

/** The id of a request frame, when it has a usable one (for errors found before parsing it whole). */
export function requestId(text: string): RpcFailure["id"] {
  try {
    const r = JSON.parse(text);
    if (typeof r?.id === "number" || typeof r?.id === "string") return r.id;
  } catch {
    // answered with a null id
  }
  return null;
}

export function dispatcher(handlers: Handlers, log: Logger) {
  /** Calls one method with params already validated against its schema. */
  const call = <M extends Method>(method: M, params: unknown, session: Session) => handlers[method](params as Parameters<Handlers[M]>[0], session);

  return async function dispatch(text: string, session: Session): Promise<RpcSuccess | RpcFailure> {
    let request: { jsonrpc?: unknown; id?: unknown; method?: unknown; params?: unknown };
    try {
      request = JSON.parse(text);
    } catch (e) {
      return failure(null, RpcErrors.PARSE_ERROR, `not JSON: ${(e as Error).message}`);
    }
    if (typeof request !== "object" || request === null || Array.isArray(request))
      return failure(null, RpcErrors.INVALID_REQUEST, "a request is one JSON object (batches are not supported)");
    const id = typeof request.id === "number" || typeof request.id === "string" ? request.id : null;
    if (request.jsonrpc !== "2.0" || id === null || typeof request.method !== "string") {
      return failure(id, RpcErrors.INVALID_REQUEST, 'a request needs "jsonrpc": "2.0", an "id" (number or string) and a "method" (string)');
    }
    const method = request.method as Method;
    if (!Object.hasOwn(Params, method)) return failure(id, RpcErrors.METHOD_NOT_FOUND, `unknown method ${JSON.stringify(request.method)}`);
    if (ADMIN_METHODS.has(method) && session.role !== "admin") return failure(id, RpcErrors.FORBIDDEN, `${method} needs the admin role`);
    const parsed = Params[method].safeParse(request.params ?? {});
    if (!parsed.success) {
      return failure(id, RpcErrors.INVALID_PARAMS, parsed.error.issues.map((i) => `${i.path.length ? i.path.join(".") : "params"}: ${i.message}`).join("; "));
    }
    try {
      return { jsonrpc: "2.0", id, result: await call(method, parsed.data, session) };
    } catch (e) {
      const code = rpcCodeOf(e);
      if (code !== undefined) return failure(id, code, (e as Error).message, errorData(e as PcpdError));
      log.error({ method, error: (e as Error).message }, "control method failed");
      return failure(id, RpcErrors.INTERNAL_ERROR, (e as Error).message);
    }
  };
}
