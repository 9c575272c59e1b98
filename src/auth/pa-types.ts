// What the PCP side of authentication needs from the AAA side (src/auth/eap-relay.ts, the
// RADIUS relay; tests may pass any implementation of the same shape).

import type { AaaVerdict } from "./eap-relay.js";

export type { AaaVerdict };

/** EAP pass-through to an AAA server: one conversation per `session` key. */
export interface EapRelay {
  exchange(session: string, eap: Uint8Array, attrs?: { callingStationId?: string }): Promise<AaaVerdict>;
  forget(session: string): void;
  close(): void | Promise<void>;
}

/** The EAP peer a PCP authentication client drives (src/auth/eap-ttls-peer.ts). */
export interface EapPeer {
  /** The response to an EAP request, or null when none is due (Success/Failure). */
  receive(eap: Uint8Array): Promise<Uint8Array | null>;
  /** The MSK once the method succeeded. */
  readonly msk: Uint8Array | null | undefined;
}

/** One PCP security association as the control channel lists it. */
export interface SaView {
  sessionId: number;
  client: string;
  clientPort: number;
  state: string;
  identity?: string;
  establishedAt?: string;
  expiresAt?: string;
  keyId: number;
  prf: number;
  mac: number;
  commonIn: number;
  commonOut: number;
}

/** Counters of one worker's authenticator (pcpd_auth_* in /metrics). */
export interface AuthCounters {
  sessions: number;
  established: number;
  successes: number;
  reauthentications: number;
  failures: Record<string, number>;
  tagFailures: number;
  replays: number;
  unknownSessions: number;
  terminations: number;
}

/** Counters at zero (a new authenticator; the start of a sum over workers). */
export function zeroCounters(): AuthCounters {
  return { sessions: 0, established: 0, successes: 0, reauthentications: 0, failures: {}, tagFailures: 0, replays: 0, unknownSessions: 0, terminations: 0 };
}
