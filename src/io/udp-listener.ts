// The shard's UDP front end, on the path this process chose (src/io/native.ts ioChoice():
// the batched addon when it loads, else Node's dgram; docs/io.md). Both paths serve the
// same batches through the engine, keep the HA gate, hold check-pointed replies until
// durable, and send every reply from the address its request was sent to.
import { BatchedListener } from "./batched-listener.js";
import { DgramListener } from "./dgram-listener.js";
import type { ListenerBase, ListenerOptions } from "./listener-base.js";
import { ioChoice } from "./native.js";

export { literalLookup } from "./dgram-listener.js";
export type { Endpoint, ListenerOptions, ReceiveBuffer, UnsolicitedSocket } from "./listener-base.js";

/** A listener on either path (`path` says which). */
export type UdpListener = ListenerBase;

/** The listener for `o`'s endpoints on `o.io` (default: this process's choice). */
export function createListener(o: ListenerOptions): UdpListener {
  const io = o.io ?? ioChoice();
  return io.path === "batched" && io.addon ? new BatchedListener(o, io.addon) : new DgramListener(o);
}

/** `new UdpListener(o)`: createListener(o) (a constructor returning the chosen path's listener). */
export const UdpListener = function UdpListener(o: ListenerOptions): UdpListener {
  return createListener(o);
} as unknown as new (
  o: ListenerOptions,
) => UdpListener;
