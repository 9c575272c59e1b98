// Rapid recovery after an Epoch reset: gratuitous ANNOUNCE responses [RFC 6887 §14.1.3]
// and NAT-PMP external-address announcements [RFC 6886 §3.2.1], multicast from each listen
// address on the interfaces the operator named, to 224.0.0.1:5350 and [ff02::1]:5350.
// The first copy leaves at once, the gap to the second is firstGap (≥ 250 ms) and each
// later gap doubles, every gap counted from when the previous copy left (./repeat.ts); at most 10 copies, each with the Epoch of the moment it is sent.
import { networkInterfaces } from "node:os";
import { isIPv6 } from "node:net";
import * as W from "../wire.generated.js";
import { ConfigError } from "../errors.js";
import { sendRepeatedly } from "./repeat.js";

export interface AnnounceTarget {
  /** Listen address whose socket sends (the unicast source the RFC requires). */
  source: string;
  /** Multicast group, IPv6 with its zone: "224.0.0.1" or "ff02::1%eth1". */
  group: string;
  interface: string;
}

/** Gaps in ms before copies 2..count: g, 2g, 4g, … */
export function announceGaps(count: number, firstGapMs: number): number[] {
  return Array.from({ length: Math.max(0, count - 1) }, (_, k) => firstGapMs * 2 ** k);
}

/**
 * Targets for the named interfaces: every listen address configured on one of them sends
 * to its family's all-nodes group. An interface that is missing or carries none of the
 * listen addresses is a configuration error (nothing would be announced there).
 */
export function announceTargets(interfaces: string[], listen: string[], system = networkInterfaces()): AnnounceTarget[] {
  const out: AnnounceTarget[] = [];
  const problems: string[] = [];
  for (const name of interfaces) {
    const held = (system[name] ?? []).map((a) => a.address);
    if (!system[name]) problems.push(`announce.multicast: no interface named ${name}`);
    const sources = listen.filter((a) => held.includes(a));
    if (system[name] && sources.length === 0) problems.push(`announce.multicast: interface ${name} carries none of the listen addresses`);
    for (const source of sources) out.push({ source, group: isIPv6(source) ? `ff02::1%${name}` : "224.0.0.1", interface: name });
  }
  if (problems.length) throw new ConfigError(problems);
  return out;
}

export interface AnnouncerOptions {
  targets: AnnounceTarget[];
  count: number;
  firstGapMs: number;
  /** Messages to multicast now (PCP ANNOUNCE; NAT-PMP's only on IPv4 and when NAT-PMP is on). */
  messages: (ipv6: boolean) => Uint8Array[];
  /**
   * Hands one datagram to the target's socket and returns true, with `sent` called from the
   * socket's send callback; false when there is no socket to send from (`sent` never called).
   */
  send: (target: AnnounceTarget, payload: Uint8Array, port: number, sent: () => void) => boolean;
}

export class Announcer {
  private cancel: (() => void) | undefined;

  constructor(private readonly o: AnnouncerOptions) {}

  /** Starts a schedule (replacing any running one): the first copy now. */
  start(): void {
    this.stop();
    if (this.o.targets.length === 0) return;
    this.cancel = sendRepeatedly(announceGaps(this.o.count, this.o.firstGapMs), (sent) => this.sendAll(sent));
  }

  stop(): void {
    this.cancel?.();
    this.cancel = undefined;
  }

  /** One copy to every target; how many datagrams were handed to sockets (see sendRepeatedly). */
  private sendAll(sent: () => void): number {
    let handed = 0;
    for (const target of this.o.targets) {
      for (const m of this.o.messages(isIPv6(target.source))) if (this.o.send(target, m, W.PCP_CLIENT_PORT, sent)) handed++;
    }
    return handed;
  }
}
