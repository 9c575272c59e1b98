// The package's bins (package.json "bin") executable after tsc writes them: `npm install`
// marks bin targets executable only if they exist then, and in a fresh clone they do not
// yet (dist/ is built later), so `npx pcpctl` would be refused ("Permission denied").
import { chmodSync, readFileSync } from "node:fs";

const { bin } = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
for (const file of Object.values(bin)) chmodSync(new URL(`../${file}`, import.meta.url), 0o755);
