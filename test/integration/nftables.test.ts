// The nftables dataplane proven with real traffic, in network namespaces this test creates:
//
//   pcpdnft-sub (subscriber 10.77.0.2) ── veth ── pcpdnft-nat (10.77.0.1 | 198.51.100.1, pcp-server)
//                                                          ── veth ── pcpdnft-out (198.51.100.2, .3)
//
// The subscriber maps its TCP and UDP services through PCP; the outside host reaches them
// at the external address:port; a FILTER lets only one remote in; outbound packets of a
// mapped endpoint leave from its external address:port; after a delete the port is closed;
// after a server restart the mappings still work. Every address lives inside the
// namespaces. Skipped, saying why, where namespaces or nft are unavailable.
import { execFileSync } from "node:child_process";
import { describe, expect } from "vitest";
import * as W from "../../src/wire.generated.js";
import { filter } from "../helpers/packets.js";
import { waitFor, withTimeout } from "../helpers/wait.js";
import { LabServer, steps, TCP_HELLO, inNs, labConfig, labLayout, labMap, nftKeys, udpExchange, useLab, type PcpPath } from "../helpers/nat-lab.js";

const SUBSCRIBER = "10.77.0.2";
const SERVER = "10.77.0.1";
const EXTERNAL = "198.51.100.1";
const REMOTE = "198.51.100.2";
const ALLOWED_REMOTE = "198.51.100.3";
const LAB = labLayout({ ns: "pcpdnft", links: "pnft", subscriber: SUBSCRIBER, server: SERVER, natOutside: [EXTERNAL], outside: [REMOTE, ALLOWED_REMOTE] });
const { sub: SUB, nat: NAT, out: OUT } = LAB;
const PCP: PcpPath = { ns: SUB, client: SUBSCRIBER, server: SERVER, port: 5351 };

const server = new LabServer(NAT, (dir) => labConfig({ server: SERVER, port: PCP.port, subscribers: "10.77.0.0/24", external: EXTERNAL, table: "pcpd" }, dir));
const startServer = () => server.start();
const stopServer = () => server.stop();
const skip = useLab(LAB, server, { services: SUBSCRIBER });

/** MAP from the subscriber; returns the reply's result and external port. */
const pcpMap = (internalPort: number, protocol: number, o: { lifetime?: number; filters?: ReturnType<typeof filter>[] } = {}) =>
  labMap(PCP, internalPort, protocol, o);

/** What the dataplane has installed now, as nft lists it: "tcp/2048" per inbound element (protocol/external port). */
const installed = () => nftKeys(NAT, "ip", "pcpd", "map", "inbound").map((k) => `${k.split("/")[0]}/${k.split("/")[2]}`);
const key = (protocol: number, port: number) => `${protocol === W.PROTO_TCP ? "tcp" : "udp"}/${port}`;
/** Waits until the dataplane has installed (or removed) these mappings: one transaction installs all of a mapping's elements. */
const settle = (mappings: [protocol: number, port: number][], present = true) =>
  waitFor(
    () => {
      const now = installed();
      return mappings.every(([protocol, port]) => now.includes(key(protocol, port)) === present);
    },
    { message: () => `installed: ${installed().join(" ")}` },
  );
const tcpFrom = (local: string, port: number) => inNs(OUT, TCP_HELLO, [local, EXTERNAL, String(port)]);
const udpFrom = async (port: number) => (await udpExchange(OUT, REMOTE, EXTERNAL, port, Buffer.from("hello")))?.toString() ?? "timeout";

describe("nftables dataplane with real traffic", () => {
  // The steps run in order on one server; each needs the ones before.
  let tcp: { port: number };
  let udp: { port: number };
  let filtered: { port: number };
  const step = steps(skip);
  const FIRST = "MAP opens a TCP and a UDP service to the outside at the external address:port";

  step(FIRST, async () => {
    tcp = await pcpMap(8080, W.PROTO_TCP);
    udp = await pcpMap(8081, W.PROTO_UDP);
    for (const r of [tcp, udp]) expect(r).toMatchObject({ result: W.RESULT_SUCCESS, address: EXTERNAL });
    await settle([
      [W.PROTO_TCP, tcp.port],
      [W.PROTO_UDP, udp.port],
    ]);
    expect(await tcpFrom(REMOTE, tcp.port)).toBe("tcp-8080");
    expect(await udpFrom(udp.port)).toBe("udp-8081");
  });

  step("item 79: a TCP connection's FIN does not end the MAP mapping", async () => {
    expect(await tcpFrom(REMOTE, tcp.port)).toBe("tcp-8080"); // the first connection was closed (FIN both ways)
  });

  step("FILTER admits only its remote prefix", async () => {
    filtered = await pcpMap(8082, W.PROTO_TCP, { filters: [filter(128, ALLOWED_REMOTE, 0)] });
    expect(filtered).toMatchObject({ result: W.RESULT_SUCCESS, address: EXTERNAL });
    await settle([[W.PROTO_TCP, filtered.port]]);
    expect(await tcpFrom(REMOTE, filtered.port)).toBe("timeout");
    expect(await tcpFrom(ALLOWED_REMOTE, filtered.port)).toBe("tcp-8082");
  });

  step("outbound packets of a mapped endpoint leave from its external address:port; item 64: an ICMP error for them reaches the internal host", async () => {
    const mapped = await pcpMap(8083, W.PROTO_UDP);
    await settle([[W.PROTO_UDP, mapped.port]]);
    let listening!: () => void;
    const ready = new Promise<void>((resolve) => (listening = resolve));
    const seen = inNs(
      OUT,
      `const s = require("node:dgram").createSocket("udp4"); s.on("message", (m, r) => { console.log(JSON.stringify({ from: r.address, port: r.port })); s.close(); }); s.bind(9999, "${REMOTE}", () => console.log("ready"));`,
      [],
      4000,
      listening,
    );
    await withTimeout(ready, 4000, "the remote's listener");
    await inNs(
      SUB,
      `const s = require("node:dgram").createSocket("udp4"); s.bind(8083, "${SUBSCRIBER}", () => s.send("out", 9999, "${REMOTE}", () => s.close()));`,
    );
    expect(
      (await seen)
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l))[0],
    ).toEqual({ from: EXTERNAL, port: mapped.port });
    // Nothing listens on the remote's port 9998: its ICMP port unreachable must come back
    // through the NAT to the subscriber's connected socket (as ECONNREFUSED).
    const icmp = await inNs(
      SUB,
      `const s = require("node:dgram").createSocket("udp4");
      let done = false;
      const end = (what) => { if (done) return; done = true; console.log(what); s.close(); };
      s.on("error", (e) => end(e.code));
      setTimeout(() => end("nothing"), 1500);
      s.bind(8083, "${SUBSCRIBER}", () => s.connect(9998, "${REMOTE}", () => { s.send("x"); setTimeout(() => done || s.send("y"), 200); }));`,
    );
    expect(icmp.split("\n")[0]).toBe("ECONNREFUSED");
  });

  step("delete and expiry close the port", async () => {
    expect((await pcpMap(8080, W.PROTO_TCP, { lifetime: 0 })).result).toBe(W.RESULT_SUCCESS);
    await settle([[W.PROTO_TCP, tcp.port]], false);
    expect(await tcpFrom(REMOTE, tcp.port)).not.toBe("tcp-8080");
    const short = await pcpMap(8084, W.PROTO_TCP, { lifetime: 2 });
    await settle([[W.PROTO_TCP, short.port]]);
    expect(await tcpFrom(REMOTE, short.port)).toBe("tcp-8084");
    await settle([[W.PROTO_TCP, short.port]], false); // its 2 s lifetime ran out: expired, removed
    expect(await tcpFrom(REMOTE, short.port)).not.toBe("tcp-8084");
  });

  step("after a server restart the mappings still work (restored from disk, dataplane reconciled)", async () => {
    await stopServer();
    await startServer();
    expect(server.log).toContain("epoch continued");
    expect(await udpFrom(udp.port)).toBe("udp-8081");
    expect(await tcpFrom(ALLOWED_REMOTE, filtered.port)).toBe("tcp-8082");
    expect(await tcpFrom(REMOTE, filtered.port)).toBe("timeout");
    expect(await tcpFrom(REMOTE, tcp.port)).not.toBe("tcp-8080");
  });

  step(
    "a table removed behind pcpd's back: transactions fail, the dataplane goes down, a reconciliation rebuilds it",
    async () => {
      execFileSync("ip", ["netns", "exec", NAT, "nft", "delete", "table", "ip", "pcpd"]);
      expect(await udpFrom(udp.port)).toBe("timeout");
      const count = (line: string) => server.count(line);
      const serverLog = () => server.log;
      const reconciled = count("dataplane reconciled");
      for (let i = 0; i < 4 && !serverLog().includes("dataplane down"); i++) {
        const failed = count("dataplane transaction failed");
        await pcpMap(9000 + i, W.PROTO_TCP); // each answer's change is a transaction that fails
        await waitFor(() => count("dataplane transaction failed") > failed || serverLog().includes("dataplane down"), { message: serverLog });
      }
      expect(serverLog()).toContain("dataplane transaction failed");
      expect(serverLog()).toContain("dataplane down");
      await waitFor(() => count("dataplane reconciled") > reconciled, { message: serverLog });
      expect(count("dataplane reconciled")).toBe(reconciled + 1);
      expect(await udpFrom(udp.port)).toBe("udp-8081");
      await stopServer();
    },
    30_000,
  );
});
