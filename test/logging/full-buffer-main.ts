// Run inside a network namespace by test/logging/datagrams.test.ts: a UDP sink (syslog or
// IPFIX, argv[2]) through the addon's sendMany towards a collector behind a veth whose
// slow tbf qdisc holds the datagrams, so the socket's send buffer really fills
// (EAGAIN). Prints the sink's counters after two flushes, and for IPFIX the encoder's
// sequence number (it must equal the records sent: untaken messages are encoded again).
import { parseConfig } from "../../src/config/schema.js";
import { type IpfixEncoder, IpfixSink } from "../../src/logging/ipfix.js";
import type { LogRecord } from "../../src/logging/record.js";
import { SyslogSink } from "../../src/logging/syslog.js";
import { ioChoice } from "../../src/io/native.js";
import { logDatagrams } from "../../src/server/log-datagrams.js";

const [kind, collector, port, records, queue] = [process.argv[2], process.argv[3], Number(process.argv[4]), Number(process.argv[5]), Number(process.argv[6])];
const c = parseConfig({
  logging: {
    syslog: { enabled: true, transport: "udp", collector, port, queue },
    ipfix: { enabled: true, collector, port, queue },
  },
}).logging;
const open = logDatagrams();
if (!open) throw new Error(`no addon: ${ioChoice().reason}`);
const sink = kind === "syslog" ? new SyslogSink(c.syslog, open) : new IpfixSink(c.ipfix, open);
for (let i = 0; i < records; i++) {
  const r: LogRecord = {
    event: "create",
    time: 1_796_400_000_000 + i,
    type: "map",
    protocol: 17,
    internalAddress: "10.0.0.7",
    realm: 0,
    internalPort: i % 65536,
    externalAddress: "192.0.2.1",
    externalPort: 1024 + (i % 60000),
    lifetime: 600,
    source: "pcp",
  };
  sink.push(r);
}
sink.flush();
const first = sink.stats();
sink.flush();
const second = sink.stats();
const sequence = kind === "ipfix" ? (sink as unknown as { encoder: IpfixEncoder }).encoder.sequence : null;
console.log(JSON.stringify({ first, second, sequence }));
process.exit(0);
