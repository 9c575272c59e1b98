// EAP messages longer than fit, end to end: a real pcp-server process on loopback, a real
// FreeRADIUS behind it and the project's client with its EAP-TTLS peer.
//
// 1. EAP-TTLS fragmentation (RFC 5281 §9.2.2) through PCP: FreeRADIUS sends a server
//    certificate chain of three certificates and asks for a client certificate (require_
//    client_cert), whose chain is as long; its fragment_size (1000) fits a PA message, the
//    peer's is 300. Both TLS flights go in fragments, each acknowledged by an empty EAP-TTLS
//    message from the other side: the ACK fragments cross PCP both ways.
// 2. EAP messages longer than a PA message (RFC 7652 §6.6): FreeRADIUS's fragment_size and the
//    peer's are 2000, so each fragment is an EAP packet of about 2 KB; the server and the
//    client cut them into sections, each acknowledged with a PA-Acknowledgement (RECEIVED_PAK)
//    asking for the next.
// In both, the session must come up and a tagged MAP must be served.
import { type ChildProcess, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import { PcpAuthClient } from "../../src/auth/pa-client.js";
import { EapTtlsPeer } from "../../src/auth/eap-ttls-peer.js";
import type { EapPeer } from "../../src/auth/pa-types.js";
import { mapRequest, nonceOf } from "../helpers/packets.js";
import { waitForLine } from "../helpers/wait.js";
import { tempDir } from "../helpers/temp.js";
import { type FreeRadius, freeRadiusMissing, startFreeRadius } from "../helpers/freeradius.js";

const SERVER = new URL("../../dist/cli/pcp-server.js", import.meta.url).pathname;
const HOST = "127.0.0.1";
const USER = { name: "carol", password: "carol-secret-4" };
const dir = tempDir("pcpd-auth-fragments");
const started: { radius: FreeRadius; server: ChildProcess }[] = [];
const clients: PcpAuthClient[] = [];

/** FreeRADIUS and a pcp-server relaying to it, with authentication required for 127.0.0.0/8. */
async function setup(name: string, pcpPort: number, radiusPort: number, fragmentSize: number) {
  const radius = await startFreeRadius({ port: radiusPort, users: [USER], fragmentSize, intermediates: 2, requireClientCert: true });
  const config = join(dir, `${name}.json`);
  writeFileSync(
    config,
    JSON.stringify({
      listen: { addresses: [HOST], port: pcpPort },
      subscribers: ["127.0.0.0/8"],
      control: { port: 0, tokenFile: join(dir, `${name}.token`) },
      persistence: { enabled: false },
      auth: { default: "required", radius: { servers: [{ host: radius.host, port: radius.port, secret: radius.secret }], timeoutMs: 2000, retries: 2 } },
    }),
  );
  const server = spawn(process.execPath, [SERVER, "--config", config], { stdio: ["ignore", "pipe", "inherit"] });
  started.push({ radius, server });
  await waitForLine(server.stdout!, /pcp server listening/, { timeout: 20_000 });
  server.stdout!.resume();
  return radius;
}

/** What crossed PCP inside EAP-TTLS (RFC 5281 §9.1 flags: L 0x80, M 0x40), as the peer saw it. */
interface TtlsTraffic {
  /** Requests with M: fragments of the server's flight; empty requests: the server's ACKs of ours. */
  serverFragments: number;
  serverAcks: number;
  /** Responses with M: fragments of our flight; empty responses: our ACKs of the server's. */
  peerFragments: number;
  peerAcks: number;
  largestRequest: number;
  largestResponse: number;
}

const EAP_TYPE_TTLS = 21;
const ttlsFlags = (eap: Uint8Array) => (eap.length >= 6 && eap[4] === EAP_TYPE_TTLS ? eap[5] : undefined);
const ttlsEmpty = (eap: Uint8Array) => eap.length === 6 && eap[4] === EAP_TYPE_TTLS;

function observed(peer: EapTtlsPeer, t: TtlsTraffic): EapPeer {
  return {
    async receive(eap) {
      const flags = ttlsFlags(eap);
      if (flags !== undefined && flags & 0x40) t.serverFragments++;
      if (ttlsEmpty(eap)) t.serverAcks++;
      t.largestRequest = Math.max(t.largestRequest, eap.length);
      const response = await peer.receive(eap);
      if (response) {
        const rflags = ttlsFlags(response);
        if (rflags !== undefined && rflags & 0x40) t.peerFragments++;
        if (ttlsEmpty(response)) t.peerAcks++;
        t.largestResponse = Math.max(t.largestResponse, response.length);
      }
      return response;
    },
    get msk() {
      return peer.msk;
    },
  };
}

async function authenticateThrough(radius: FreeRadius, pcpPort: number, bind: string, fragmentSize: number) {
  const traffic: TtlsTraffic = { serverFragments: 0, serverAcks: 0, peerFragments: 0, peerAcks: 0, largestRequest: 0, largestResponse: 0 };
  const c = new PcpAuthClient({
    server: { address: HOST, port: pcpPort },
    bind,
    newPeer: () =>
      observed(
        new EapTtlsPeer({
          identity: USER.name,
          password: USER.password,
          ca: radius.caPem,
          serverName: radius.serverName,
          fragmentSize,
          clientCert: radius.clientCert,
        }),
        traffic,
      ),
    timeoutMs: 30_000,
    retransmitMs: 2000,
  });
  clients.push(c);
  await c.open();
  await c.authenticate();
  const reply = await c.request(mapRequest({ client: bind, internalPort: 7000, nonce: nonceOf(70), lifetime: 300 }));
  return { c, traffic, reply };
}

afterAll(async () => {
  for (const c of clients) c.close();
  for (const s of started) {
    if (s.server.exitCode === null) s.server.kill("SIGKILL");
    await s.radius.stop();
  }
});

describe.skipIf(freeRadiusMissing)("EAP messages longer than fit, through FreeRADIUS", () => {
  it("EAP-TTLS fragments both ways (a 3-certificate chain each side), ACKed both ways, every EAP packet in one PA message", { timeout: 90_000 }, async () => {
    const radius = await setup("ttls", 25170, 25180, 1000);
    const { c, traffic, reply } = await authenticateThrough(radius, 25170, "127.0.5.1", 300);
    expect(c.established).toBe(true);
    expect(reply).toMatchObject({ tagged: true, result: W.RESULT_SUCCESS });
    // The server's flight (three certificates) came in several fragments, each ACKed by us ...
    expect(traffic.serverFragments).toBeGreaterThanOrEqual(2);
    expect(traffic.peerAcks).toBeGreaterThanOrEqual(traffic.serverFragments);
    // ... and ours (three certificates, CertificateVerify) went in fragments of 300, each ACKed by FreeRADIUS.
    expect(traffic.peerFragments).toBeGreaterThanOrEqual(5);
    expect(traffic.serverAcks).toBeGreaterThanOrEqual(traffic.peerFragments);
    expect(traffic.largestRequest).toBeLessThanOrEqual(1020);
    // Nothing needed PCP's own sections.
    expect(c.sections).toEqual({ sent: 0, received: 0 });
    // FreeRADIUS logged the login (the inner PAP went through the tunnel).
    expect(radius.authLines().some((l) => l.includes("Login OK") && l.includes(USER.name))).toBe(true);
  });

  it("EAP packets of 2 KB: cut into sections across PA messages, a PA-Acknowledgement for each, both ways [7652 §6.6]", { timeout: 90_000 }, async () => {
    const radius = await setup("sections", 25171, 25181, 2000);
    const { c, traffic, reply } = await authenticateThrough(radius, 25171, "127.0.5.2", 2000);
    expect(c.established).toBe(true);
    expect(reply).toMatchObject({ tagged: true, result: W.RESULT_SUCCESS });
    // EAP packets no PA message can carry (1100 octets at most) crossed in both directions.
    expect(traffic.largestRequest).toBeGreaterThan(W.PCP_MAX_MESSAGE);
    expect(traffic.largestResponse).toBeGreaterThan(W.PCP_MAX_MESSAGE);
    expect(c.sections.received).toBeGreaterThanOrEqual(2);
    expect(c.sections.sent).toBeGreaterThanOrEqual(2);
    expect(radius.authLines().some((l) => l.includes("Login OK") && l.includes(USER.name))).toBe(true);
  });
});
