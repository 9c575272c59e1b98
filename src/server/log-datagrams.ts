// The mapping log's UDP sends (syslog over UDP, IPFIX: src/logging/) through the batched
// I/O addon when it is loaded (src/io/native.ts): a synchronous sendto per datagram, no
// callback, request object or Buffer per send, so a sink's flush is one send loop on the
// main thread. Without the addon the sinks use node:dgram.
import { isIPv6 } from "node:net";
import { ioChoice } from "../io/native.js";
import type { DatagramOpener } from "../logging/sink.js";

export function logDatagrams(): DatagramOpener | undefined {
  const { addon } = ioChoice();
  if (!addon) return undefined;
  return (collector, port) => {
    // An ephemeral port on the wildcard address of the collector's family.
    const socket = addon.open(isIPv6(collector) ? "::" : "0.0.0.0", 0, 0, false);
    return { send: (bytes) => addon.sendTo(socket, bytes, collector, port), close: () => addon.close(socket) };
  };
}
