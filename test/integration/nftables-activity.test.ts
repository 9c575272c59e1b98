// Traffic-driven lifetimes (checklist items 77, 78, 91; RFC 6887 §15, §12.3) with real
// traffic through the nftables dataplane, in namespaces this test creates:
//
//   pdp-sub (subscriber 10.78.0.2) ── veth ── pdp-nat (10.78.0.1 | 198.51.100.11, pcp-server)
//                                                      ── veth ── pdp-out (198.51.100.12)
//
// The server tracks activity with an 8 s idle timeout: the kernel's `active` set learns the
// subscriber's packets, and pcpd reads it only when an expiry, a delete or a short renewal
// needs it (each queried endpoint over netlink, native/nft_elements.c). The server runs as
// on a host without netbase (no /etc/protocols, /etc/services): its ruleset loads and its
// activity reads work without protocol names. Skipped, saying why, where namespaces or nft
// are unavailable.
import { describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import { mapRequest, nonceOf, peerRequest } from "../helpers/packets.js";
import { waitFor } from "../helpers/wait.js";
import { LabServer, UDP_SEND, inNs, labConfig, labLayout, nftKeys, pcpExchange, useLab } from "../helpers/nat-lab.js";

const SUBSCRIBER = "10.78.0.2";
const SERVER = "10.78.0.1";
const EXTERNAL = "198.51.100.11";
const REMOTE = "198.51.100.12";
const PCP_PORT = 25600;
const IDLE = 8;
const LAB = labLayout({ ns: "pdp", subscriber: SUBSCRIBER, server: SERVER, natOutside: [EXTERNAL], outside: [REMOTE] });

const server = new LabServer(
  LAB.nat,
  (dir) =>
    labConfig(
      {
        server: SERVER,
        port: PCP_PORT,
        subscribers: "10.78.0.0/24",
        external: EXTERNAL,
        table: "pcpdact",
        dataplane: { activity: { enabled: true, udpIdle: IDLE, tcpIdle: IDLE, waitSeconds: 2 } },
      },
      dir,
      { lifetimes: { min: 2, peerMin: 2 }, persistence: { enabled: false } },
    ),
  { withoutNetbase: true }, // nft prints the active set's protocols as numbers there
);
const skip = useLab(LAB, server);

/** One PCP request from the subscriber: result and lifetime of the reply. */
async function pcp(request: Uint8Array): Promise<{ result: number; lifetime: number }> {
  const reply = await pcpExchange(LAB.sub, SUBSCRIBER, SERVER, PCP_PORT, request);
  return { result: reply[3], lifetime: reply.readUInt32BE(4) };
}
const map = (internalPort: number, lifetime: number) =>
  pcp(mapRequest({ client: SUBSCRIBER, internalPort, protocol: W.PROTO_UDP, lifetime, nonce: nonceOf(internalPort) }));
/** `count` UDP datagrams from the subscriber's internal port to the outside host, `gapMs` apart. */
const traffic = (internalPort: number, count: number, gapMs: number) =>
  inNs(LAB.sub, UDP_SEND, [`${SUBSCRIBER}:${internalPort}`, `${REMOTE}:9999`, String(count), String(gapMs)], count * gapMs + 5000);
/** Whether the mapping of this internal UDP port is installed (its outbound element). */
const installed = (internalPort: number) => nftKeys(LAB.nat, "ip", "pcpdact", "map", "outbound").includes(`udp/${SUBSCRIBER}/${internalPort}`);
/** Whether the kernel has seen the subscriber's traffic from this port (its activity element). */
const active = (internalPort: number) => nftKeys(LAB.nat, "ip", "pcpdact", "set", "active").includes(`udp/${SUBSCRIBER}/${internalPort}`);
const reads = () => server.count("dataplane activity not read");

describe("traffic-driven lifetimes through nftables (real traffic)", () => {
  const test = (name: string, body: () => Promise<void>, timeout = 40_000) =>
    it(
      name,
      async (ctx) => {
        const why = skip();
        if (why) return ctx.skip(why);
        await body();
      },
      timeout,
    );

  test("item 77: a delete right after the host sent traffic → SUCCESS with the remaining idle time; the mapping stays until then", async () => {
    expect(await map(8090, 600)).toMatchObject({ result: W.RESULT_SUCCESS, lifetime: 600 });
    await waitFor(() => installed(8090));
    await traffic(8090, 1, 0);
    await waitFor(() => active(8090));
    const sent = performance.now();
    const del = await map(8090, 0);
    expect(del.result).toBe(W.RESULT_SUCCESS);
    expect(del.lifetime).toBeGreaterThan(0);
    expect(del.lifetime).toBeLessThanOrEqual(IDLE);
    expect(installed(8090)).toBe(true); // kept
    await waitFor(() => !installed(8090), { timeout: (IDLE + 6) * 1000 }); // its idle end: asked again, idle, ended
    expect(performance.now() - sent).toBeGreaterThan((del.lifetime - 1) * 1000);
    expect(reads()).toBe(0);
  });

  test("item 77 (idle host): the delete ends the mapping at once, lifetime 0", async () => {
    expect((await map(8091, 600)).result).toBe(W.RESULT_SUCCESS);
    await waitFor(() => installed(8091));
    expect(await map(8091, 0)).toEqual({ result: W.RESULT_SUCCESS, lifetime: 0 });
    await waitFor(() => !installed(8091));
  });

  test("item 78: a renewal asking 2 s right after traffic gets the natural remaining time; without traffic, 2 s", async () => {
    expect((await map(8092, 600)).result).toBe(W.RESULT_SUCCESS);
    await waitFor(() => installed(8092));
    await traffic(8092, 1, 0);
    await waitFor(() => active(8092));
    const renewed = await map(8092, 2);
    expect(renewed.result).toBe(W.RESULT_SUCCESS);
    expect(renewed.lifetime).toBeGreaterThan(2);
    expect(renewed.lifetime).toBeLessThanOrEqual(IDLE);
    // A mapping whose host sent nothing is renewed as asked.
    expect((await map(8093, 600)).result).toBe(W.RESULT_SUCCESS);
    expect(await map(8093, 2)).toEqual({ result: W.RESULT_SUCCESS, lifetime: 2 });
  });

  test("item 91: a PEER mapping left unrenewed survives while its flow carries traffic, and ends once idle", async () => {
    const peer = await pcp(
      peerRequest({
        client: SUBSCRIBER,
        internalPort: 7000,
        protocol: W.PROTO_UDP,
        lifetime: 2,
        remoteAddress: REMOTE,
        remotePort: 9999,
        nonce: nonceOf(7000),
      }),
    );
    expect(peer).toEqual({ result: W.RESULT_SUCCESS, lifetime: 2 });
    await waitFor(() => installed(7000));
    const started = performance.now();
    // Traffic for 3 × IDLE/2 s after its 2 s lifetime: kept all along (each expiry asks, traffic answers).
    const sending = traffic(7000, 12, 1000);
    let kept = true;
    await waitFor(
      () => {
        kept &&= installed(7000);
        return !kept || performance.now() - started > 11_000;
      },
      { timeout: 20_000, interval: 200 },
    );
    expect(kept).toBe(true);
    expect(await sending).toBe("done");
    const stopped = performance.now();
    await waitFor(() => !installed(7000), { timeout: (IDLE + 8) * 1000 });
    expect(performance.now() - stopped).toBeGreaterThan((IDLE - 2) * 1000); // it lasted the idle timeout after the last packet
  });

  test("without traffic, an unrenewed PEER mapping ends at its lifetime (plus the answer's wait)", async () => {
    expect(
      (
        await pcp(
          peerRequest({
            client: SUBSCRIBER,
            internalPort: 7001,
            protocol: W.PROTO_UDP,
            lifetime: 2,
            remoteAddress: REMOTE,
            remotePort: 9999,
            nonce: nonceOf(7001),
          }),
        )
      ).result,
    ).toBe(W.RESULT_SUCCESS);
    await waitFor(() => installed(7001));
    const created = performance.now();
    await waitFor(() => !installed(7001), { timeout: 12_000 });
    expect(performance.now() - created).toBeLessThan(IDLE * 1000); // idle: not kept for an idle timeout
  });

  test("the reads above looked up each endpoint over netlink (the addon is built here), not by listing the set", async () => {
    expect(server.log).toContain('"msg":"dataplane reconciled"');
    expect(server.count("nft lists the whole active set")).toBe(0);
  });
});
