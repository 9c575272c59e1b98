// Baseline of the end-to-end benchmark (bench/e2e.bench.ts): a bare Node dgram echo with
// the server's socket layout. The server's shard workers each create and read their own
// UDP socket(s) inside a worker_thread and reply from the same socket; this does the same
// and nothing else: one worker per address, every datagram sent straight back.
//   node bench/e2e/echo-worker.mjs --listen 127.0.0.20[,ADDRESS...] --port 5351
// Prints `ready` on stdout once every socket is bound; SIGTERM/SIGINT stop it.
import dgram from "node:dgram";
import { isIPv6 } from "node:net";
import { parseArgs } from "node:util";
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";

if (isMainThread) {
  const { values } = parseArgs({ options: { listen: { type: "string", default: "127.0.0.20" }, port: { type: "string", default: "5351" } } });
  const workers = values.listen.split(",").map((address) => new Worker(new URL(import.meta.url), { workerData: { address, port: Number(values.port) } }));
  await Promise.all(
    workers.map(
      (w) =>
        new Promise((resolve, reject) => {
          w.once("message", resolve);
          w.once("error", reject);
          w.once("exit", (code) => reject(new Error(`echo worker exited with code ${code}`)));
        }),
    ),
  );
  console.log("ready");
  const stop = () => Promise.all(workers.map((w) => w.terminate())).then(() => process.exit(0));
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
} else {
  const { address, port } = workerData;
  const socket = dgram.createSocket({ type: isIPv6(address) ? "udp6" : "udp4", ipv6Only: isIPv6(address) });
  socket.on("message", (payload, rinfo) => socket.send(payload, rinfo.port, rinfo.address));
  socket.bind(port, address, () => parentPort.postMessage("bound"));
}
