// A headless Chromium (Debian's `chromium`) driven over the DevTools protocol with the
// `ws` package: start it on a given debugging port, open one page, navigate, evaluate
// expressions in the page, take screenshots. No browser download, no puppeteer.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import WebSocket from "ws";
import { tempDir } from "./temp.js";
import { waitFor } from "./wait.js";

/** The chromium binary, or undefined (the tests that need it skip, saying why). */
export function chromiumPath(): string | undefined {
  const r = spawnSync("sh", ["-c", "command -v chromium"], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

export interface Browser {
  /** Navigates and resolves once the page's load event has fired. */
  goto(url: string): Promise<void>;
  /** Evaluates `expression` in the page (a promise is awaited); its value, JSON-copied. */
  evaluate<T = unknown>(expression: string): Promise<T>;
  /** Polls `expression` in the page until it is truthy (its value) or the deadline. */
  waitFor<T = unknown>(expression: string, timeoutMs?: number): Promise<T>;
  /** A PNG of the viewport written to `file`. */
  screenshot(file: string): Promise<void>;
  /** Console messages and uncaught exceptions the page reported. */
  readonly console: string[];
  close(): Promise<void>;
}

export async function launchChromium(debugPort: number): Promise<Browser> {
  const binary = chromiumPath();
  if (!binary) throw new Error("chromium is not installed (scripts/test-deps.sh installs it)");
  const profile = tempDir("pcpd-chromium");
  const child: ChildProcess = spawn(
    binary,
    [
      "--headless",
      "--no-sandbox", // the tests run as root
      "--disable-gpu",
      "--no-first-run",
      "--no-default-browser-check",
      "--disable-background-networking",
      "--disable-extensions",
      "--remote-debugging-address=127.0.0.1",
      `--remote-debugging-port=${debugPort}`,
      `--user-data-dir=${profile}`,
      "--window-size=1400,1100",
      "about:blank",
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr = (stderr + d).slice(-4000)));
  let exited = false;
  child.once("exit", () => (exited = true));
  const target = await waitFor(
    async () => {
      if (exited) throw new Error(`chromium exited: ${stderr}`);
      const list = (await fetch(`http://127.0.0.1:${debugPort}/json/list`)
        .then((r) => r.json())
        .catch(() => [])) as { type: string; webSocketDebuggerUrl: string }[];
      return list.find((t) => t.type === "page");
    },
    { timeout: 30_000, interval: 100, message: () => `no page target on port ${debugPort}: ${stderr}` },
  );
  const ws = new WebSocket(target.webSocketDebuggerUrl, { perMessageDeflate: false, maxPayload: 256 * 1024 * 1024 });
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });
  let nextId = 1;
  const pending = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void }>();
  const listeners = new Set<(method: string, params: any) => void>();
  const logged: string[] = [];
  ws.on("message", (data: Buffer) => {
    const m = JSON.parse(data.toString("utf8"));
    if (m.id !== undefined) {
      const p = pending.get(m.id);
      pending.delete(m.id);
      if (m.error) p?.reject(new Error(`CDP ${m.error.message}`));
      else p?.resolve(m.result);
    } else {
      if (m.method === "Runtime.consoleAPICalled") logged.push(m.params.args.map((a: any) => a.value ?? a.description).join(" "));
      if (m.method === "Runtime.exceptionThrown")
        logged.push(`exception: ${m.params.exceptionDetails.exception?.description ?? m.params.exceptionDetails.text}`);
      for (const l of listeners) l(m.method, m.params);
    }
  });
  const send = (method: string, params: unknown = {}): Promise<any> =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve, reject });
      ws.send(JSON.stringify({ id, method, params }));
    });
  await send("Page.enable");
  await send("Runtime.enable");

  const evaluate = async <T>(expression: string): Promise<T> => {
    const r = await send("Runtime.evaluate", { expression, awaitPromise: true, returnByValue: true });
    if (r.exceptionDetails) throw new Error(`in the page: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text}`);
    return r.result.value as T;
  };
  return {
    console: logged,
    async goto(url) {
      const loaded = new Promise<void>((resolve) => {
        const l = (method: string) => {
          if (method === "Page.loadEventFired") {
            listeners.delete(l);
            resolve();
          }
        };
        listeners.add(l);
      });
      const r = await send("Page.navigate", { url });
      if (r.errorText) throw new Error(`navigating to ${url}: ${r.errorText}`);
      await loaded;
    },
    evaluate,
    waitFor: <T>(expression: string, timeoutMs = 15_000) =>
      waitFor(() => evaluate<T>(expression), {
        timeout: timeoutMs,
        interval: 100,
        message: () => `${expression}; page console: ${logged.slice(-5).join(" | ")}`,
      }),
    async screenshot(file) {
      const r = await send("Page.captureScreenshot", { format: "png" });
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file, Buffer.from(r.data, "base64"));
    },
    async close() {
      ws.close();
      if (!exited) {
        const gone = new Promise((resolve) => child.once("exit", resolve));
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
        await gone;
        clearTimeout(timer);
      }
    },
  };
}
