// The PCP security associations of one worker's authenticator (./pa-server.ts) [RFC 7652
// §3]: the SA record, and the table that holds them by session ID with the per-client
// count its capacity limits need, and the control channel's view of them. The protocol
// (messages, timers, the AAA exchange) stays in ./pa-server.ts.
import { randomInt } from "node:crypto";
import { EapReassembly } from "./pa-wire.js";
import type { SaView } from "./pa-types.js";

/**
 * The socket a client's datagrams came in on, opaque here: the listener (src/io) sends the
 * PA-Server messages back through it (a dgram socket, or a batched-path socket).
 */
export type PaSocket = object;

export type State = "authenticating" | "confirming" | "open" | "reauth" | "closing";

/** One PCP security association (one PA session) [RFC 7652 §3]. */
export interface Sa {
  id: number;
  client: string;
  port: number;
  socket: PaSocket;
  state: State;
  /** The client's nonce (0 when it sent none, server-initiated) [7652 §5.3]. */
  nonce: number;
  echoNonce: boolean;
  identity?: string;
  paIn: number;
  paOut: number;
  commonIn: number;
  commonOut: number;
  lastIn?: Buffer;
  lastOut?: Buffer;
  lastResend: number;
  waitingAaa: boolean;
  /** Bumped at every (re-)authentication: AAA answers for an older one are ignored. */
  generation: number;
  prf: number;
  mac: number;
  key?: Buffer;
  keyId: number;
  prevKey?: { key: Buffer; keyId: number };
  established?: number;
  expires: number;
  lifetimeS: number;
  timer?: NodeJS.Timeout;
  tries: number;
  /** Open or re-authenticating once: a failed re-authentication is counted apart. */
  everOpen: boolean;
  /** Sections of an EAP request still to send, each after the client acknowledged the last [7652 §6.6]. */
  outSections: Buffer[];
  /** The client's EAP response being collected from its sections [7652 §6.6]. */
  inSections: EapReassembly;
}

export class SaTable {
  private readonly byId = new Map<number, Sa>();
  private readonly perClient = new Map<string, number>();

  constructor(private readonly limits: { maxSessions: number; sessionsPerClient: number }) {}

  get size(): number {
    return this.byId.size;
  }

  get(id: number): Sa | undefined {
    return this.byId.get(id);
  }

  values(): IterableIterator<Sa> {
    return this.byId.values();
  }

  /** A new SA (state authenticating) for a client endpoint; undefined at capacity (maxSessions, sessionsPerClient). */
  create(address: string, port: number, socket: PaSocket, nonce: number, echoNonce: boolean): Sa | undefined {
    if (this.byId.size >= this.limits.maxSessions || (this.perClient.get(address) ?? 0) >= this.limits.sessionsPerClient) return undefined;
    let id = 0;
    while (id === 0 || this.byId.has(id)) id = randomInt(1, 0xffffffff); // unique, never 0 [7652 §3.1.1]
    const sa: Sa = {
      id,
      client: address,
      port,
      socket,
      state: "authenticating",
      nonce,
      echoNonce,
      paIn: 0,
      paOut: 0,
      commonIn: 0,
      commonOut: 0,
      lastResend: 0,
      waitingAaa: false,
      generation: 0,
      prf: 0,
      mac: 0,
      keyId: 0,
      expires: Number.POSITIVE_INFINITY,
      lifetimeS: 0,
      tries: 0,
      everOpen: false,
      outSections: [],
      inSections: new EapReassembly(),
    };
    this.byId.set(id, sa);
    this.perClient.set(address, (this.perClient.get(address) ?? 0) + 1);
    return sa;
  }

  /** Removes `sa`, if it is still the table's SA of its ID. */
  remove(sa: Sa): void {
    if (this.byId.get(sa.id) !== sa) return;
    this.byId.delete(sa.id);
    const n = (this.perClient.get(sa.client) ?? 1) - 1;
    if (n > 0) this.perClient.set(sa.client, n);
    else this.perClient.delete(sa.client);
  }

  /** SAs open or re-authenticating. */
  established(): number {
    let n = 0;
    for (const sa of this.byId.values()) if (sa.state === "open" || sa.state === "reauth") n++;
    return n;
  }

  /** The control channel's view of every SA; `wall`: wall-clock ms at monotonic time 0. */
  views(wall: number): SaView[] {
    return [...this.byId.values()].map((sa) => ({
      sessionId: sa.id,
      client: sa.client,
      clientPort: sa.port,
      state: sa.state,
      identity: sa.identity,
      establishedAt: sa.established ? new Date(sa.established).toISOString() : undefined,
      expiresAt: Number.isFinite(sa.expires) ? new Date(wall + sa.expires).toISOString() : undefined,
      keyId: sa.keyId,
      prf: sa.prf,
      mac: sa.mac,
      commonIn: sa.commonIn,
      commonOut: sa.commonOut,
    }));
  }

  clear(): void {
    this.byId.clear();
    this.perClient.clear();
  }
}
