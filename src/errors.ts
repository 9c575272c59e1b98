// Typed errors at the TypeScript edge. Each failure kind has one stable `code`, documented
// in docs/errors.md (meaning, where it is raised, what the operator does); a test keeps
// this list and that page equal. PCP result codes are data (numbers in replies), never
// exceptions. The control channel's JSON-RPC error codes are wire constants
// (`RpcErrors`, src/control/protocol.ts); `RpcError` carries one, and the control
// dispatcher (src/control/dispatch.ts) says which one any other error here becomes.
import type { RpcErrorCode } from "./control/protocol.js";

export const ErrorCodes = {
  // ---- configuration ----
  /** A configuration value is invalid; the message names it (ConfigError). */
  BAD_CONFIG: "BAD_CONFIG",
  /** The configured capacity (mappings, descriptions, requesters, realms) does not fit in WebAssembly memory. */
  CAPACITY_TOO_LARGE: "CAPACITY_TOO_LARGE",
  /** control.tokens names an environment variable that is unset or holds fewer than 16 characters. */
  TOKEN_UNSET: "TOKEN_UNSET",

  // ---- the engine module ----
  /** The compiled module is missing or does not match this host (build first). */
  MODULE_UNAVAILABLE: "MODULE_UNAVAILABLE",
  /** The WebAssembly instance trapped; it must be discarded and rebuilt. */
  ENGINE_TRAPPED: "ENGINE_TRAPPED",
  /** An engine call out of order (initialised twice). */
  ENGINE_STATE: "ENGINE_STATE",
  /** A batch larger than the module's slot count was requested. */
  BATCH_TOO_LARGE: "BATCH_TOO_LARGE",
  /** A datagram given to the engine has an invalid source address or port. */
  BAD_DATAGRAM: "BAD_DATAGRAM",
  /** Mapping records to save or restore do not fit the engine's persistence buffer. */
  RECORDS_TOO_LARGE: "RECORDS_TOO_LARGE",

  // ---- shards and their workers ----
  /** A task reached a worker that does not run the shard it expects (or already runs one). */
  SHARD_WORKER_MISMATCH: "SHARD_WORKER_MISMATCH",
  /** The shard is under an operator's Epoch reset; a second reset waits for the first. */
  SHARD_RESETTING: "SHARD_RESETTING",
  /** The server is stopping; the shard will not come back. */
  SERVER_STOPPING: "SERVER_STOPPING",
  /** A shard could not be restarted after its worker died; its subscribers are not served. */
  SHARD_LOST: "SHARD_LOST",
  /** A shared statistics board of the wrong size (main thread and worker disagree). */
  BAD_STATS_BOARD: "BAD_STATS_BOARD",

  // ---- persistence ----
  /** persistence.directory cannot be created or locked. */
  DIRECTORY_UNUSABLE: "DIRECTORY_UNUSABLE",
  /** persistence.directory is locked by another running server. */
  DIRECTORY_LOCKED: "DIRECTORY_LOCKED",
  /** Journal records could not be written (a flush before a snapshot). */
  JOURNAL_WRITE_FAILED: "JOURNAL_WRITE_FAILED",
  /** The store was closed while a snapshot was being written. */
  STORE_CLOSED: "STORE_CLOSED",
  /** A snapshot read back after writing it is damaged; the previous one stays. */
  SNAPSHOT_DAMAGED: "SNAPSHOT_DAMAGED",

  // ---- high availability (replication through NATS JetStream) ----
  /** A standby could not fence its subject (the takeover message was refused or the stream is unreachable): it stays a standby. */
  HA_FENCE_FAILED: "HA_FENCE_FAILED",
  /** Another node wrote to the subject: this shard's writes are refused, it stopped answering. */
  HA_FENCED: "HA_FENCED",
  /** A standby did not reach the subject's last sequence in time. */
  HA_CATCH_UP_TIMEOUT: "HA_CATCH_UP_TIMEOUT",
  /** An HA task the shard cannot serve in its role (promote an active, hand over a standby), or the shard stopped. */
  HA_WRONG_ROLE: "HA_WRONG_ROLE",
  /** A message on a shard's subject whose body cannot be read (chunks past its end). */
  REPLICATION_MALFORMED: "REPLICATION_MALFORMED",

  // ---- dataplane ----
  /** dataplane.backend "events": no consumer is subscribed, or every one fell behind. */
  DATAPLANE_NO_CONSUMER: "DATAPLANE_NO_CONSUMER",
  /** dataplane.backend "nftables": nft(8) could not be run or refused the transaction. */
  NFT_FAILED: "NFT_FAILED",

  // ---- control channel ----
  /** uWebSockets.js's native addon did not load (the JavaScript fallback is refused). */
  UWS_UNAVAILABLE: "UWS_UNAVAILABLE",
  /** The control channel cannot listen on control.address:control.port. */
  CONTROL_LISTEN_FAILED: "CONTROL_LISTEN_FAILED",
  /** A control method failed with a JSON-RPC error (RpcError; its `rpcCode` is on the wire). */
  RPC_ERROR: "RPC_ERROR",
  /** A token file is empty. */
  TOKEN_FILE_EMPTY: "TOKEN_FILE_EMPTY",
  /** A token file's directory is not a directory, belongs to another user or is writable by others. */
  TOKEN_DIRECTORY_UNSAFE: "TOKEN_DIRECTORY_UNSAFE",

  // ---- high availability ----
  /** An ha.hooks claim or release command failed, timed out or could not be run (HaHookError). */
  HA_HOOK_FAILED: "HA_HOOK_FAILED",
  /** ha.switchover named a group that is not configured. */
  HA_UNKNOWN_GROUP: "HA_UNKNOWN_GROUP",
  /** ha.switchover asked of a node that is not the group's active; the message names the holder. */
  HA_NOT_ACTIVE: "HA_NOT_ACTIVE",
  /** A switchover released the group but no node took it in time (or a step before the release failed). */
  HA_SWITCHOVER_FAILED: "HA_SWITCHOVER_FAILED",

  // ---- authentication: the AAA side (RADIUS) ----
  /** The RADIUS servers or relay settings are invalid (no server, a host that is not an IP address, an empty secret, a bad timeout); the message names each. */
  RADIUS_BAD_CONFIG: "RADIUS_BAD_CONFIG",
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export class PcpdError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "PcpdError";
    this.code = code;
  }
}

/** Invalid configuration: one line per problem, each naming its field. */
export class ConfigError extends PcpdError {
  constructor(readonly issues: string[]) {
    super(ErrorCodes.BAD_CONFIG, `invalid configuration:\n  ${issues.join("\n  ")}`);
    this.name = "ConfigError";
  }
}

/** A shard that cannot take a task now (SHARD_RESETTING, SERVER_STOPPING, SHARD_LOST). */
export class ShardUnavailableError extends PcpdError {
  constructor(
    code: typeof ErrorCodes.SHARD_RESETTING | typeof ErrorCodes.SERVER_STOPPING | typeof ErrorCodes.SHARD_LOST,
    readonly shard: number,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
    this.name = "ShardUnavailableError";
  }
}

/** persistence.directory is locked by another process (DIRECTORY_LOCKED). */
export class DirectoryLockedError extends PcpdError {
  constructor(message: string) {
    super(ErrorCodes.DIRECTORY_LOCKED, message);
    this.name = "DirectoryLockedError";
  }
}

/** A control method's failure, answered with JSON-RPC error `rpcCode` (and `data`). */
export class RpcError extends PcpdError {
  constructor(
    readonly rpcCode: RpcErrorCode,
    message: string,
    readonly data?: unknown,
  ) {
    super(ErrorCodes.RPC_ERROR, message);
    this.name = "RpcError";
  }
}

/** A claim or release hook (ha.hooks) that failed: its argv, exit status and stderr. */
export class HaHookError extends PcpdError {
  constructor(
    readonly argv: string[],
    readonly stderr: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(ErrorCodes.HA_HOOK_FAILED, message, options);
    this.name = "HaHookError";
  }
}

/** A refused or failed HA operation on a group (HA_UNKNOWN_GROUP, HA_NOT_ACTIVE, HA_SWITCHOVER_FAILED). */
export class HaError extends PcpdError {
  constructor(
    code: typeof ErrorCodes.HA_UNKNOWN_GROUP | typeof ErrorCodes.HA_NOT_ACTIVE | typeof ErrorCodes.HA_SWITCHOVER_FAILED,
    readonly group: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
    this.name = "HaError";
  }
}
