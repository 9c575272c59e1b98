// Where the control channel's admin token lives when none is configured: the server
// writes a generated token there once its control channel listens (mode 0600, directory
// 0700), removes it on a clean stop, and `pcpctl` reads it by default.
import { existsSync, lstatSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { dirname, join } from "node:path";
import { ErrorCodes, PcpdError } from "../errors.js";

/**
 * The generated token's file of the instance whose control channel listens on `port`:
 * `$XDG_RUNTIME_DIR/pcpd/control-<port>.token` when XDG_RUNTIME_DIR is set (and
 * non-empty), else `<os.tmpdir()>/pcpd-<uid>/control-<port>.token`. Keyed by the port, so
 * two servers of one user on one host (each on its own control port) keep their own token,
 * and a client finds it from the URL it is given. No port: the unkeyed `control.token` of
 * servers before 0.2.
 */
export function defaultTokenFile(port?: number, env: NodeJS.ProcessEnv = process.env): string {
  return defaultTokenFiles(port, env)[0];
}

/**
 * Where a client looks for the token, in order: `defaultTokenFile(port)`, then (when
 * XDG_RUNTIME_DIR is set) the tmpdir path, which is where a server started without
 * XDG_RUNTIME_DIR (a system service) writes it, while an interactive shell of the same
 * user usually has XDG_RUNTIME_DIR set.
 */
export function defaultTokenFiles(port?: number, env: NodeJS.ProcessEnv = process.env): string[] {
  const name = port === undefined ? "control.token" : `control-${port}.token`;
  const fallback = join(tmpdir(), `pcpd-${currentUid()}`, name);
  const runtime = env.XDG_RUNTIME_DIR;
  return runtime ? [join(runtime, "pcpd", name), fallback] : [fallback];
}

/**
 * The first of `defaultTokenFiles(port)` that exists, then the first unkeyed
 * `control.token` that exists (a server before 0.2); else `defaultTokenFile(port)`.
 */
export function findTokenFile(port?: number, env: NodeJS.ProcessEnv = process.env): string {
  const files = [...defaultTokenFiles(port, env), ...(port === undefined ? [] : defaultTokenFiles(undefined, env))];
  return files.find((f) => existsSync(f)) ?? files[0];
}

function currentUid(): string | number {
  if (typeof process.getuid === "function") return process.getuid();
  return userInfo().username; // no numeric uid (Windows)
}

/** The token in `path`, surrounding whitespace removed. Throws if unreadable or empty. */
export function readTokenFile(path: string): string {
  const token = readFileSync(path, "utf8").trim();
  if (token === "") throw new PcpdError(ErrorCodes.TOKEN_FILE_EMPTY, `token file ${path} is empty`);
  return token;
}

/**
 * Writes `token` to `path` (with a trailing newline), creating the directory with mode
 * 0700; the file is written beside it and renamed into place with mode 0600, so a reader
 * never sees a partial token. Refuses a directory that is a symbolic link, belongs to
 * another user (root excepted) or that group or others may write to (in a shared /tmp
 * someone else may have made it first).
 */
export function writeTokenFile(path: string, token: string): void {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = lstatSync(dir);
  const uid = typeof process.getuid === "function" ? process.getuid() : undefined;
  if (!st.isDirectory()) throw new PcpdError(ErrorCodes.TOKEN_DIRECTORY_UNSAFE, `token directory ${dir} is not a directory`);
  if (uid !== undefined && st.uid !== uid && st.uid !== 0)
    throw new PcpdError(ErrorCodes.TOKEN_DIRECTORY_UNSAFE, `token directory ${dir} belongs to uid ${st.uid}, not ${uid}`);
  if (uid !== undefined && (st.mode & 0o022) !== 0) {
    throw new PcpdError(ErrorCodes.TOKEN_DIRECTORY_UNSAFE, `token directory ${dir} is writable by other users (mode ${(st.mode & 0o777).toString(8)})`);
  }
  const temp = `${path}.${process.pid}.tmp`;
  rmSync(temp, { force: true });
  writeFileSync(temp, `${token}\n`, { mode: 0o600, flag: "wx" });
  renameSync(temp, path);
}

/**
 * Removes the token file at `path` if it still holds `token` (another instance may have
 * written its own there since); false when it was left alone.
 */
export function removeTokenFile(path: string, token: string): boolean {
  let held: string;
  try {
    held = readFileSync(path, "utf8").trim();
  } catch {
    return false;
  }
  if (held !== token) return false;
  rmSync(path, { force: true });
  return true;
}
