// The nftables backend's IPv6 half (src/dataplane/nftables6.ts) with real IPv6 traffic, in
// namespaces this test creates:
//
//   pdp6-sub (2001:db8:78::2) ── veth ── pdp6-nat (2001:db8:78::1 | 2001:db8:79::1, ::100 pool; pcp-server)
//                                                  ── veth ── pdp6-out (2001:db8:79::2, ::3)
//
// The NAT namespace firewalls the subscriber prefix: nothing from outside reaches the
// subscriber until a MAP opens a pinhole for its internal address, protocol and port —
// reached at the internal address itself (no translation) and at the external address:port
// the server assigned (translated to the same pinhole). FILTER admits only its remote;
// delete and expiry close the pinhole; a restart reconciles it from disk. The server runs as
// on a host without netbase (no /etc/protocols, /etc/services: the ruleset names no protocol).
// Skipped, saying why, where namespaces or nft are unavailable.
import { describe, expect } from "vitest";
import * as W from "../../src/wire.generated.js";
import { filter } from "../helpers/packets.js";
import { waitFor } from "../helpers/wait.js";
import { LabServer, steps, TCP_HELLO, inNs, labConfig, labLayout, labMap, nftKeys, udpExchange, useLab, type PcpPath } from "../helpers/nat-lab.js";

const SUBSCRIBER = "2001:db8:78::2";
const SERVER = "2001:db8:78::1";
const OUTSIDE_NAT = "2001:db8:79::1";
const EXTERNAL = "2001:db8:79::100";
const REMOTE = "2001:db8:79::2";
const ALLOWED_REMOTE = "2001:db8:79::3";
const LAB = labLayout({
  ns: "pdp6",
  subscriber: SUBSCRIBER,
  server: SERVER,
  natOutside: [OUTSIDE_NAT, EXTERNAL],
  outside: [REMOTE, ALLOWED_REMOTE],
  outRoutes: [["2001:db8:78::/64", OUTSIDE_NAT]],
});
const PCP: PcpPath = { ns: LAB.sub, client: SUBSCRIBER, server: SERVER, port: 25601 };

const server = new LabServer(
  LAB.nat,
  (dir) => labConfig({ server: SERVER, port: PCP.port, subscribers: "2001:db8:78::/64", external: EXTERNAL, table: "pcpd6t" }, dir),
  { withoutNetbase: true }, // its ICMPv6 rule once named ipv6-icmp, which nft resolves through /etc/protocols
);
const skip = useLab(LAB, server, { services: SUBSCRIBER });

const pcpMap = (internalPort: number, protocol: number, o: { lifetime?: number; filters?: ReturnType<typeof filter>[] } = {}) =>
  labMap(PCP, internalPort, protocol, o);
const name = (protocol: number) => (protocol === W.PROTO_TCP ? "tcp" : "udp");
const pinholes = () => nftKeys(LAB.nat, "ip6", "pcpd6t", "set", "pinholes");
const settle = (mappings: [protocol: number, port: number][], present = true) =>
  waitFor(() => mappings.every(([p, port]) => pinholes().includes(`${name(p)}/${SUBSCRIBER}/${port}`) === present), {
    message: () => `pinholes: ${pinholes().join(" ")}`,
  });
const tcpTo = (from: string, host: string, port: number) => inNs(LAB.out, TCP_HELLO, [from, host, String(port)]);
const udpTo = async (host: string, port: number) => (await udpExchange(LAB.out, REMOTE, host, port, Buffer.from("hello")))?.toString() ?? "timeout";

describe("nftables IPv6 pinholes with real traffic", () => {
  let tcp: { port: number };
  let udp: { port: number };
  let filtered: { port: number; result: number };
  const step = steps(skip, 25_000);
  const FIRST = "the firewall drops unsolicited inbound IPv6 to the subscriber; MAP opens a pinhole reached untranslated and at the external address:port";

  step(FIRST, async () => {
    expect(await tcpTo(REMOTE, SUBSCRIBER, 8080)).toBe("timeout"); // no pinhole yet: dropped
    tcp = await pcpMap(8080, W.PROTO_TCP);
    udp = await pcpMap(8081, W.PROTO_UDP);
    for (const r of [tcp, udp]) expect(r).toMatchObject({ result: W.RESULT_SUCCESS, address: EXTERNAL });
    await settle([
      [W.PROTO_TCP, 8080],
      [W.PROTO_UDP, 8081],
    ]);
    expect(await tcpTo(REMOTE, SUBSCRIBER, 8080)).toBe("tcp-8080"); // the pinhole, untranslated
    expect(await tcpTo(REMOTE, EXTERNAL, tcp.port)).toBe("tcp-8080"); // the assigned external endpoint
    expect(await udpTo(EXTERNAL, udp.port)).toBe("udp-8081");
    expect(await tcpTo(REMOTE, SUBSCRIBER, 8082)).toBe("timeout"); // only what was mapped
  });

  step("FILTER admits only its remote prefix", async () => {
    filtered = await pcpMap(8082, W.PROTO_TCP, { filters: [filter(128, ALLOWED_REMOTE, 0)] });
    expect(filtered.result).toBe(W.RESULT_SUCCESS);
    await settle([[W.PROTO_TCP, 8082]]);
    expect(await tcpTo(REMOTE, SUBSCRIBER, 8082)).toBe("timeout");
    expect(await tcpTo(ALLOWED_REMOTE, SUBSCRIBER, 8082)).toBe("tcp-8082");
    expect(await tcpTo(ALLOWED_REMOTE, EXTERNAL, filtered.port)).toBe("tcp-8082");
  });

  step("delete and expiry close the pinhole", async () => {
    expect((await pcpMap(8080, W.PROTO_TCP, { lifetime: 0 })).result).toBe(W.RESULT_SUCCESS);
    await settle([[W.PROTO_TCP, 8080]], false);
    expect(await tcpTo(REMOTE, SUBSCRIBER, 8080)).toBe("timeout");
    expect(await tcpTo(REMOTE, EXTERNAL, tcp.port)).not.toBe("tcp-8080");
    expect((await pcpMap(8084, W.PROTO_TCP, { lifetime: 2 })).result).toBe(W.RESULT_SUCCESS);
    await settle([[W.PROTO_TCP, 8084]]);
    expect(await tcpTo(REMOTE, SUBSCRIBER, 8084)).toBe("tcp-8084");
    await settle([[W.PROTO_TCP, 8084]], false); // its 2 s lifetime ran out
    expect(await tcpTo(REMOTE, SUBSCRIBER, 8084)).toBe("timeout");
  });

  step(
    "after a server restart the pinholes are reconciled from disk",
    async () => {
      await server.stop();
      await server.start();
      expect(await udpTo(EXTERNAL, udp.port)).toBe("udp-8081");
      expect(await tcpTo(ALLOWED_REMOTE, SUBSCRIBER, 8082)).toBe("tcp-8082");
      expect(await tcpTo(REMOTE, SUBSCRIBER, 8082)).toBe("timeout");
      expect(await tcpTo(REMOTE, SUBSCRIBER, 8080)).toBe("timeout");
    },
    40_000,
  );
});
