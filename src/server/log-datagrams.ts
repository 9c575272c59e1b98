// The mapping log's UDP sends (syslog over UDP, IPFIX: src/logging/) through the batched
// I/O addon when it is loaded (src/io/native.ts): a flush's datagrams, packed in one reused
// buffer, go out in one synchronous sendmmsg per up to 1024 (sendMany), with no callback,
// request object or Buffer per datagram. Without the addon the sinks use node:dgram.
import { isIPv6 } from "node:net";
import { ioChoice } from "../io/native.js";
import type { DatagramOpener } from "../logging/sink.js";

export function logDatagrams(): DatagramOpener | undefined {
  const { addon } = ioChoice();
  if (!addon) return undefined;
  return (collector, port) => {
    // An ephemeral port on the wildcard address of the collector's family.
    const socket = addon.open(isIPv6(collector) ? "::" : "0.0.0.0", 0, 0, false);
    const result = new Int32Array(2); // [refused, the errno that stopped the send]: reused
    return {
      sendMany: (p) => addon.sendMany(socket, p.bytes, p.lengths, p.count, collector, port, result),
      close: () => addon.close(socket),
    };
  };
}
