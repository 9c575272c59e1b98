// Mapping Update transmission [RFC 6887 §14.2]: each re-homed mapping's messages are sent
// three times — at once, after 250 ms, then after a further 500 ms — each time with the
// current Epoch, and no more once the client has refreshed (or the mapping ended).
import * as W from "../wire.generated.js";
import type { Unsolicited } from "../engine/packet-engine.js";
import { sendRepeatedly } from "./repeat.js";

/** Gaps before the second and third copies (the RFC's minimums). */
export const UPDATE_GAPS_MS = [250, 500];

export class MappingUpdater {
  /** Mapping id → cancel of its remaining copies. */
  private readonly pending = new Map<number, () => void>();

  /** `send` hands a message to a socket (true) with `sent` for its send callback, or finds none (false). */
  constructor(
    private readonly send: (m: Unsolicited, sent: () => void) => boolean,
    private readonly epoch: () => number,
  ) {}

  schedule(mapping: number, messages: Unsolicited[]): void {
    this.cancel(mapping);
    if (messages.length === 0) return;
    const sendAll = (sent: () => void) => {
      const epoch = this.epoch();
      let handed = 0;
      for (const m of messages) {
        new DataView(m.payload.buffer, m.payload.byteOffset).setUint32(W.HDR_EPOCH, epoch >>> 0);
        if (this.send(m, sent)) handed++;
      }
      return handed;
    };
    // The first copy goes now; `done` runs from a send callback, after this entry is set.
    this.pending.set(
      mapping,
      sendRepeatedly(UPDATE_GAPS_MS, sendAll, () => this.pending.delete(mapping)),
    );
  }

  /** The client refreshed the mapping, or it ended: no more copies. */
  cancel(mapping: number): void {
    this.pending.get(mapping)?.();
    this.pending.delete(mapping);
  }

  get size(): number {
    return this.pending.size;
  }

  stop(): void {
    for (const cancel of this.pending.values()) cancel();
    this.pending.clear();
  }
}
