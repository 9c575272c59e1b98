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

/**
 * Sends `requests` back to back from one socket bound to `from` and collects the replies:
 * done when one came per request, when none came for `idleMs` (the rest are lost), or at
 * `deadlineMs`. `receiveBuffer`: SO_RCVBUF of the client (it must hold a burst of replies).
 */
export function burst(
  from: string,
  to: string,
  port: number,
  requests: Uint8Array[],
  o: { idleMs?: number; deadlineMs?: number; receiveBuffer?: number } = {},
): Promise<Buffer[]> {
  const socket = dgram.createSocket(isIPv6(to) ? "udp6" : "udp4");
  const replies: Buffer[] = [];
  const idleMs = o.idleMs ?? 1000;
  return new Promise((resolve) => {
    let idle: NodeJS.Timeout;
    const done = () => {
      clearTimeout(idle);
      clearTimeout(deadline);
      socket.close();
      resolve(replies);
    };
    const deadline = setTimeout(done, o.deadlineMs ?? 30_000);
    socket.on("message", (m) => {
      replies.push(m);
      clearTimeout(idle);
      if (replies.length === requests.length) done();
      else idle = setTimeout(done, idleMs);
    });
    socket.bind(0, from, () => {
      if (o.receiveBuffer) socket.setRecvBufferSize(o.receiveBuffer);
      for (const r of requests) socket.send(r, port, to);
      idle = setTimeout(done, idleMs);
    });
  });
}
