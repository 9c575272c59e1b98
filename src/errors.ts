// Typed errors at the TypeScript edge. Each has a stable `code`; PCP result codes are
// data (numbers in replies), never exceptions.

export const ErrorCodes = {
  /** The WebAssembly instance trapped; it must be discarded and rebuilt. */
  ENGINE_TRAPPED: "ENGINE_TRAPPED",
  /** A batch larger than the module's slot count was requested. */
  BATCH_TOO_LARGE: "BATCH_TOO_LARGE",
  /** A datagram given to the engine has an invalid source address or port. */
  BAD_DATAGRAM: "BAD_DATAGRAM",
  /** A configuration value is invalid; the message names it. */
  BAD_CONFIG: "BAD_CONFIG",
  /** The compiled module is missing or does not match this host (build first). */
  MODULE_UNAVAILABLE: "MODULE_UNAVAILABLE",
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
