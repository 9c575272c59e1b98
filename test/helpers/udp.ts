// One request/reply exchange over a real UDP socket bound to `from` (loopback only).
import dgram from "node:dgram";
import { isIPv6 } from "node:net";

export interface Reply {
  reply: Buffer;
  source: string;
  port: number;
}

export function exchange(from: string, to: string, port: number, payload: Uint8Array, timeoutMs = 2000): Promise<Reply> {
  const socket = dgram.createSocket(isIPv6(to) ? "udp6" : "udp4");
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.close();
      reject(new Error(`no reply from ${to}:${port}`));
    }, timeoutMs);
    socket.on("message", (reply, rinfo) => {
      clearTimeout(timer);
      socket.close();
      resolve({ reply, source: rinfo.address, port: rinfo.port });
    });
    socket.bind(0, from, () => socket.send(payload, port, to));
  });
}
