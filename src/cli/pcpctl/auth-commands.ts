// pcpctl's PCP authentication commands (RFC 7652, docs/auth.md): the security associations
// of the server (auth list, auth terminate) over the control channel, and auth-test, a PCP
// authentication client that runs a full EAP-TTLS exchange with a PCP server, then sends
// tagged MAP and PEER requests and checks the tagged replies.
import { readFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { isIP } from "node:net";
import * as W from "../../wire.generated.js";
import { toAddress16 } from "../../net/address.js";
import { EapTtlsPeer } from "../../auth/eap-ttls-peer.js";
import { PcpAuthClient } from "../../auth/pa-client.js";
import { integer, required, UsageError } from "./args.js";
import type { Command } from "./commands.js";
import { out, printJson, printPairs, printTable } from "./output.js";

/** HOST or HOST:PORT or [V6]:PORT (default port 5351). */
function serverEndpoint(text: string): { address: string; port: number } {
  const m = /^\[(.+)\]:(\d+)$/.exec(text) ?? /^([^:]+):(\d+)$/.exec(text);
  const address = m ? m[1] : text;
  const port = m ? Number(m[2]) : W.PCP_SERVER_PORT;
  if (isIP(address) === 0 || port < 1 || port > 65535) throw new UsageError(`--server: an address[:port], not ${text}`);
  return { address, port };
}

/** A MAP or PEER request from `client` (RFC 6887 §11.1, §12.1). */
function request(opcode: number, client: string, internalPort: number, lifetime: number, remote?: { address: string; port: number }): Buffer {
  const out = Buffer.alloc(opcode === W.OP_PEER ? W.PEER_MIN_SIZE : W.MAP_MIN_SIZE);
  out[0] = W.PCP_VERSION;
  out[1] = opcode;
  out.writeUInt32BE(lifetime, W.HDR_LIFETIME);
  out.set(toAddress16(client), W.HDR_CLIENT_ADDR);
  randomBytes(W.MP_NONCE_SIZE).copy(out, W.MP_NONCE);
  out[W.MP_PROTOCOL] = W.PROTO_TCP;
  out.writeUInt16BE(internalPort, W.MP_INTERNAL_PORT);
  out.set(toAddress16(isIP(client) === 6 ? "::" : "0.0.0.0"), W.MP_EXTERNAL_ADDR);
  if (remote) {
    out.writeUInt16BE(remote.port, W.PEER_REMOTE_PORT);
    out.set(toAddress16(remote.address), W.PEER_REMOTE_ADDR);
  }
  return out;
}

export const AUTH_COMMANDS: Command[] = [
  {
    path: ["auth", "list"],
    synopsis: ["auth list"],
    describe: "auth.list: PCP security associations (RFC 7652) of every worker, and the authentication counters",
    args: [],
    options: [],
    async run(ctx) {
      const r = await ctx.call("auth.list", {});
      if (ctx.json) return (printJson(r), 0);
      printTable(
        ["SESSION", "SHARD", "CLIENT", "STATE", "IDENTITY", "KEY", "EXPIRES", "IN", "OUT"],
        r.sessions.map((s) => [
          s.sessionId,
          s.shard,
          `${s.client}:${s.clientPort}`,
          s.state,
          s.identity ?? "-",
          s.keyId,
          s.expiresAt ?? "-",
          s.commonIn,
          s.commonOut,
        ]),
      );
      out();
      const c = r.counters;
      printPairs([
        ["sessions", c.sessions],
        ["established", c.established],
        ["successes", c.successes],
        ["reauthentications", c.reauthentications],
        [
          "failures",
          Object.entries(c.failures)
            .map(([k, v]) => `${k}=${v}`)
            .join(" ") || "0",
        ],
        ["tag failures", c.tagFailures],
        ["replays", c.replays],
        ["unknown sessions", c.unknownSessions],
        ["terminations", c.terminations],
      ]);
      return 0;
    },
  },
  {
    path: ["auth", "terminate"],
    synopsis: ["auth terminate SESSION"],
    describe: "auth.terminate (admin): ends a PCP security association; the server sends SESSION_TERMINATED to its client",
    args: ["SESSION"],
    options: [],
    async run(ctx) {
      const sessionId = integer("SESSION", ctx.args[0]);
      const r = await ctx.call("auth.terminate", { sessionId: required("SESSION", sessionId) });
      if (ctx.json) return (printJson(r), 0);
      out(r.terminated ? `session ${sessionId} terminated` : `no session ${sessionId}`);
      return r.terminated ? 0 : 1;
    },
  },
  {
    path: ["auth-test"],
    synopsis: ["auth-test --server ADDR[:PORT] --user NAME --password SECRET --ca FILE [--server-name NAME] [--bind ADDR] [--port N]"],
    describe:
      "PCP authentication client: EAP-TTLS through the PCP server to its AAA server (--ca: the AAA server's CA), then a tagged MAP and PEER; exit 0 when both come back tagged and successful",
    args: [],
    options: ["server", "user", "password", "ca", "server-name", "bind", "port"],
    async run(ctx) {
      const server = serverEndpoint(required("server", ctx.values.server));
      const identity = required("user", ctx.values.user);
      const password = required("password", ctx.values.password);
      const ca = readFileSync(required("ca", ctx.values.ca));
      const internalPort = integer("port", ctx.values.port) ?? 40_000;
      const client = new PcpAuthClient({
        server,
        bind: ctx.values.bind,
        newPeer: () => new EapTtlsPeer({ identity, password, ca, serverName: ctx.values["server-name"] }),
        timeoutMs: 20_000,
      });
      await client.open();
      const started = performance.now();
      try {
        await client.authenticate();
        const authMs = performance.now() - started;
        const map = await client.request(request(W.OP_MAP, client.localAddress, internalPort, 120));
        const peer = await client.request(
          request(W.OP_PEER, client.localAddress, internalPort + 1, 120, { address: isIP(server.address) === 6 ? "2001:db8::1" : "192.0.2.1", port: 443 }),
        );
        const ok = (r: typeof map) => r?.tagged === true && r.result === W.RESULT_SUCCESS;
        const report = {
          sessionId: client.sessionId,
          lifetimeS: client.lifetimeS,
          authenticationMs: Math.round(authMs),
          map: map ? { result: map.result, tagged: map.tagged } : null,
          peer: peer ? { result: peer.result, tagged: peer.tagged } : null,
        };
        await client.terminate().catch(() => undefined);
        if (ctx.json) printJson(report);
        else
          printPairs([
            ["session", report.sessionId],
            ["lifetime", `${report.lifetimeS}s`],
            ["authentication", `${report.authenticationMs} ms`],
            ["MAP", map ? `result ${map.result}${map.tagged ? ", tag verified" : ", untagged"}` : "no answer"],
            ["PEER", peer ? `result ${peer.result}${peer.tagged ? ", tag verified" : ", untagged"}` : "no answer"],
          ]);
        return ok(map) && ok(peer) ? 0 : 1;
      } catch (e) {
        if (ctx.json) printJson({ error: (e as Error).message, result: (e as { result?: number }).result ?? null });
        else out(`authentication failed: ${(e as Error).message}`);
        return 1;
      } finally {
        client.close();
      }
    },
  },
];
