// A THIRD_PARTY client (as an AFTR would be) creating mappings 0, 1, 2, … against a real
// server, 32 outstanding, recording each acknowledgement with its time; and the check,
// over the control channel, that every mapping acknowledged before a given time is there
// with the same external address and port. Used by the persistence crash tests and the
// durability benchmark (bench/durability.bench.ts).
import dgram from "node:dgram";
import * as W from "../../src/wire.generated.js";
import { ControlClient } from "../../src/client/control-client.js";
import { assigned, mapRequest, nonceOf, thirdParty, u16, u32 } from "./packets.js";

export interface Ack {
  port: number;
  address: string;
  /** performance.now() when the reply arrived. */
  at: number;
}

export interface LoadTarget {
  server: string;
  port: number;
  /** The client's address: a configured THIRD_PARTY source. */
  source: string;
}

/** Mapping i: subscriber 10.a.b.1 (50 mappings each), TCP, internal port 1024 + i % 50. */
export const mappingKey = (i: number) => ({ internalAddress: `10.${(i / 50 / 256) & 255}.${Math.floor(i / 50) & 255}.1`, internalPort: 1024 + (i % 50) });

/** A client creating mappings 0, 1, 2, … (32 outstanding) until stopped; acknowledgements with their time. */
export function mappingLoad(t: LoadTarget, from: number) {
  const socket = dgram.createSocket("udp4");
  const acks = new Map<number, Ack>();
  let next = from;
  let running = true;
  let last: { epoch: number; at: number } | undefined;
  const send = () => {
    if (!running) return;
    const i = next++;
    const k = mappingKey(i);
    socket.send(
      mapRequest({ client: t.source, internalPort: k.internalPort, lifetime: 3600, nonce: nonceOf(i) }, [thirdParty(k.internalAddress)]),
      t.port,
      t.server,
    );
  };
  socket.on("message", (reply) => {
    const at = performance.now();
    if (reply[3] === W.RESULT_SUCCESS && reply[1] === (W.R_BIT | W.OP_MAP)) {
      const port = u16(reply, W.MP_INTERNAL_PORT);
      // The THIRD_PARTY option comes back in the reply: its address (10.a.b.1) names the subscriber.
      const option = reply.subarray(W.PCP_HEADER_SIZE + W.MAP_PAYLOAD_SIZE + W.OPT_HEADER_SIZE);
      const subscriber = option[13] * 256 + option[14];
      acks.set(subscriber * 50 + (port - 1024), { ...assigned({ response: reply }), at });
      last = { epoch: u32(reply, W.HDR_EPOCH), at };
    }
    send();
  });
  const ready = new Promise<void>((resolve) =>
    socket.bind(0, t.source, () => {
      for (let k = 0; k < 32; k++) send();
      resolve();
    }),
  );
  return {
    ready,
    acks,
    last: () => last,
    stop: () => {
      running = false;
      socket.close();
    },
  };
}

/** Every acknowledged mapping acknowledged before `until`, looked up over the control channel. */
export async function missingMappings(token: string, url: string, acks: Map<number, Ack>, until: number): Promise<string[]> {
  const client = await ControlClient.connect(url, { token });
  const wrong: string[] = [];
  try {
    const due = [...acks].filter(([, ack]) => ack.at <= until);
    for (let b = 0; b < due.length; b += 200) {
      await Promise.all(
        due.slice(b, b + 200).map(async ([i, ack]) => {
          const { mapping } = await client.call("mappings.get", { ...mappingKey(i), protocol: W.PROTO_TCP });
          if (!mapping || mapping.externalPort !== ack.port || mapping.externalAddress !== ack.address)
            wrong.push(`${i}: acked ${ack.address}:${ack.port}, now ${mapping ? `${mapping.externalAddress}:${mapping.externalPort}` : "missing"}`);
        }),
      );
    }
  } finally {
    await client.close();
  }
  return wrong;
}
