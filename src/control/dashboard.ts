// The dashboard's files: plain HTML, CSS and JavaScript in the repository's dashboard/
// directory (no bundler, no external resource), served by the control server under
// /dashboard. The page holds no data: everything it shows comes over the control channel's
// WebSocket, authenticated as any other connection (auth.ts), so the files themselves are
// served without a token. Read once at start; a missing file is a start failure, not a 404.
import { readFileSync } from "node:fs";
import type { TemplatedApp } from "uWebSockets.js";

/** The directory holds the same files whether this module runs from src/ or dist/. */
const DIRECTORY = new URL("../../dashboard/", import.meta.url);
export const DASHBOARD_PATH = "/dashboard";

const FILES: Record<string, { file: string; type: string }> = {
  [DASHBOARD_PATH]: { file: "index.html", type: "text/html; charset=utf-8" },
  [`${DASHBOARD_PATH}/`]: { file: "index.html", type: "text/html; charset=utf-8" },
  [`${DASHBOARD_PATH}/dashboard.css`]: { file: "dashboard.css", type: "text/css; charset=utf-8" },
  [`${DASHBOARD_PATH}/dashboard.js`]: { file: "dashboard.js", type: "text/javascript; charset=utf-8" },
};

/** Routes GET for every dashboard file on `app`. */
export function serveDashboard(app: TemplatedApp): void {
  for (const [path, { file, type }] of Object.entries(FILES)) {
    const body = readFileSync(new URL(file, DIRECTORY));
    app.get(path, (res) => {
      res.cork(() =>
        res
          .writeStatus("200 OK")
          .writeHeader("Content-Type", type)
          .writeHeader("Cache-Control", "no-cache")
          // Only this origin's files and its own WebSocket: nothing external can load.
          .writeHeader("Content-Security-Policy", "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:")
          .writeHeader("X-Content-Type-Options", "nosniff")
          .writeHeader("Referrer-Policy", "no-referrer")
          .end(body),
      );
    });
  }
}
