// A fake external dataplane (a hardware CGN's agent), run as its own process by
// test/control/dataplane-activity.test.ts (`node --import tsx fake-dataplane-main.ts URL TOKEN`):
// it speaks the event-stream protocol over the control channel — dataplane.subscribe, then
// dataplane.reset / dataplane.ops applied to its own table — and answers dataplane.activity
// queries from a "last packet seen" clock it keeps per internal endpoint, as hardware does.
//
// stdin, JSON lines: { "packet": { "protocol": 17, "address": "…", "port": 7101 } } records
// a packet now (a real dataplane sees it on the wire). stdout, JSON lines: "ready" once
// subscribed and reset, each query it answered with its answers, each ops batch applied.
import { createInterface } from "node:readline";
import { ControlClient } from "../../src/client/control-client.js";

const [url, token, idleArg] = process.argv.slice(2);
const IDLE = Number(idleArg ?? 120);
const key = (protocol: number, address: string, port: number) => `${protocol}/${address}/${port}`;
/** Installed mappings: internal endpoint key → external endpoint. */
const table = new Map<string, { address: string; port: number }>();
/** Last packet seen per internal endpoint (ms, this process's clock). */
const lastPacket = new Map<string, number>();
const say = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);

type Endpoint = { address: string; port: number };
type Query = { protocol: number; family: number; internal: Endpoint; external: Endpoint };

const client = await ControlClient.connect(url, { token });
client.on("notification", (method: string, params: any) => {
  if (method === "dataplane.reset") {
    table.clear();
    say({ reset: params.seq });
  } else if (method === "dataplane.ops") {
    for (const o of params.ops) {
      const k = key(o.mapping.protocol, o.mapping.internal.address, o.mapping.internal.port);
      if (o.op === "map") table.set(k, o.mapping.external);
      else table.delete(k);
    }
    say({ ops: params.ops.length, installed: table.size, ports: params.ops.map((o: { mapping: { internal: Endpoint } }) => o.mapping.internal.port) });
  } else if (method === "dataplane.activity") {
    const now = Date.now();
    const remaining = (params.queries as Query[]).map((q) => {
      const k = key(q.protocol, q.internal.address, q.internal.port);
      const seen = lastPacket.get(k);
      // Only traffic through an installed mapping counts; it keeps the mapping IDLE s after the last packet.
      if (seen === undefined || !table.has(k)) return 0;
      return Math.max(0, IDLE - Math.floor((now - seen) / 1000));
    });
    say({ activity: params.id, queries: params.queries, remaining });
    void client.call("dataplane.activityAnswer", { id: params.id, remaining }).then((r: any) => say({ answered: params.id, accepted: r.accepted }));
  }
});
await client.call("dataplane.subscribe", {});
say("ready");
for await (const line of createInterface({ input: process.stdin })) {
  const m = JSON.parse(line);
  if (m.packet) lastPacket.set(key(m.packet.protocol, m.packet.address, m.packet.port), Date.now());
  say({ packet: m.packet });
}
await client.close();
