// Where the control channel's admin token lives when none is configured: the server
// writes a generated token there at start (mode 0600, directory 0700) and `pcpctl`
// reads it by default.
import { existsSync, lstatSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { dirname, join } from "node:path";
import { ErrorCodes, PcpdError } from "../errors.js";

/**
 * `$XDG_RUNTIME_DIR/pcpd/control.token` when XDG_RUNTIME_DIR is set (and non-empty),
 * else `<os.tmpdir()>/pcpd-<uid>/control.token`.
 */
export function defaultTokenFile(env: NodeJS.ProcessEnv = process.env): string {
  return defaultTokenFiles(env)[0];
}

/**
 * Where a client looks for the token, in order: `defaultTokenFile()`, then (when
 * XDG_RUNTIME_DIR is set) the tmpdir path, which is where a server started without
 * XDG_RUNTIME_DIR (a system service) writes it, while an interactive shell of the same
 * user usually has XDG_RUNTIME_DIR set.
 */
export function defaultTokenFiles(env: NodeJS.ProcessEnv = process.env): string[] {
  const fallback = join(tmpdir(), `pcpd-${currentUid()}`, "control.token");
  const runtime = env.XDG_RUNTIME_DIR;
  return runtime ? [join(runtime, "pcpd", "control.token"), fallback] : [fallback];
}

/** The first of `defaultTokenFiles()` that exists, else the first. */
export function findTokenFile(env: NodeJS.ProcessEnv = process.env): string {
  const files = defaultTokenFiles(env);
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
